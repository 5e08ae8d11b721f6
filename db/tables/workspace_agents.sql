-- Agents report a workspace's lifecycle once its build's resources exist.
-- Written by report_agent_lifecycle (the simulated provisioner) or the platform.

create table prebuilds.workspace_agents (
    id uuid primary key default gen_random_uuid(),
    job_id uuid not null references prebuilds.provisioner_jobs (id),
    name text not null default 'main' check (name <> ''),
    lifecycle_state text not null default 'created' check (
        lifecycle_state in (
            'created', 'starting', 'start_timeout', 'start_error', 'ready',
            'shutting_down', 'shutdown_timeout', 'shutdown_error', 'off'
        )
    ),
    deleted bool not null default false,
    created_at timestamptz not null default now(),
    unique (job_id, name)
);

comment on table prebuilds.workspace_agents is
'Agents of a build''s resources. A prebuild is ready when it has an agent and all live ones are '
'ready.';
comment on column prebuilds.workspace_agents.id is 'Primary key.';
comment on column prebuilds.workspace_agents.job_id is
'The provisioner job whose resources run the agent.';
comment on column prebuilds.workspace_agents.name is 'Agent name, unique per job.';
comment on column prebuilds.workspace_agents.lifecycle_state is
'created, starting, start_timeout, start_error, ready, shutting_down, shutdown_timeout, '
'shutdown_error or off.';
comment on column prebuilds.workspace_agents.deleted is
'Deleted agents do not count for readiness.';
comment on column prebuilds.workspace_agents.created_at is 'When the agent was registered.';
