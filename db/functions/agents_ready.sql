-- The readiness rule as a boolean, for claim_prebuild; the rule itself is agent_readiness.

create function prebuilds.agents_ready(p_job_id uuid)
returns bool
language sql
stable
parallel safe
begin atomic
    select r.ready from prebuilds.agent_readiness(p_job_id) as r;
end;

comment on function prebuilds.agents_ready(uuid) is
'True when the build job has at least one non-deleted agent and all of them are ready.';
