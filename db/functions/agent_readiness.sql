-- The readiness rule (SPEC 2): a prebuild is ready when its build job has at least one agent and
-- every non-deleted agent is ready. A single query the planner inlines into the plan (one index
-- lookup per running prebuild); agents_ready wraps it for claim_prebuild.

create function prebuilds.agent_readiness(p_job_id uuid)
returns table (ready bool)
language sql
stable
parallel safe
rows 1
begin atomic
    select count(*) > 0 and coalesce(bool_and(a.lifecycle_state = 'ready'), false) as ready
    from prebuilds.workspace_agents as a
    where a.job_id = p_job_id and not a.deleted;
end;

comment on function prebuilds.agent_readiness(uuid) is
'One row: whether the build job has at least one non-deleted agent and all of them are ready.';
