-- The readiness rule (SPEC 2): at least one agent, and every non-deleted agent ready.
-- Used by the plan (eligible count) and by claim_prebuild.

create function prebuilds.agents_ready(p_job_id uuid)
returns bool
language sql
stable
parallel safe
begin atomic
    select count(*) > 0 and coalesce(bool_and(a.lifecycle_state = 'ready'), false)
    from prebuilds.workspace_agents as a
    where a.job_id = p_job_id and not a.deleted;
end;

comment on function prebuilds.agents_ready(uuid) is
'True when the build job has at least one non-deleted agent and all of them are ready.';
