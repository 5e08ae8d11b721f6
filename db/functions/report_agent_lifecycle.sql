-- Provisioner side: an agent of a build's resources reports its lifecycle state (SPEC 2).
-- Creates the agent on first report. Used by the simulated provisioner and tests.

create function prebuilds.report_agent_lifecycle(
    p_job_id uuid,
    p_agent_name text,
    p_lifecycle_state text
)
returns uuid
language sql
volatile
begin atomic
    insert into prebuilds.workspace_agents as a (job_id, name, lifecycle_state)
    values (p_job_id, p_agent_name, p_lifecycle_state)
    on conflict (job_id, name) do update
        set lifecycle_state = excluded.lifecycle_state
    returning a.id;
end;

comment on function prebuilds.report_agent_lifecycle(uuid, text, text) is
'Records the lifecycle state of agent p_agent_name of job p_job_id (created on first report); '
'returns the agent id.';
