-- Builds of a workspace (start, stop, delete), numbered from 1; the latest is the highest number.
-- Inserted by the write functions and the platform; each build has exactly one provisioner job.

create table prebuilds.workspace_builds (
    id uuid primary key default gen_random_uuid(),
    workspace_id uuid not null references prebuilds.workspaces (id),
    build_number int not null check (build_number > 0),
    template_version_id uuid not null references prebuilds.template_versions (id),
    preset_id uuid references prebuilds.presets (id),
    transition text not null check (transition in ('start', 'stop', 'delete')),
    initiator_id uuid not null references prebuilds.users (id),
    job_id uuid not null unique references prebuilds.provisioner_jobs (id),
    created_at timestamptz not null default now(),
    unique (workspace_id, build_number)
);

-- A preset's prebuild starts by time: demand sizing (SPEC 6.3) takes the median build time of the
-- last 24 hours from a range of this index, never from the history of other presets.
create index workspace_builds_prebuild_starts_idx
on prebuilds.workspace_builds (preset_id, created_at)
where transition = 'start' and initiator_id = prebuilds.system_user_id();

alter table prebuilds.workspaces
add constraint workspaces_latest_build_id_fkey
foreign key (latest_build_id) references prebuilds.workspace_builds (id);

comment on table prebuilds.workspace_builds is
'Builds of workspaces; the latest build (highest build_number) gives a workspace''s state.';
comment on column prebuilds.workspace_builds.id is 'Primary key.';
comment on column prebuilds.workspace_builds.workspace_id is 'The workspace built.';
comment on column prebuilds.workspace_builds.build_number is
'1, 2, 3, … per workspace; unique per workspace.';
comment on column prebuilds.workspace_builds.template_version_id is 'Template version built.';
comment on column prebuilds.workspace_builds.preset_id is
'Preset whose parameters the build used, if any.';
comment on column prebuilds.workspace_builds.transition is 'start, stop or delete.';
comment on column prebuilds.workspace_builds.initiator_id is
'Who asked for the build (the system user for reconciler builds).';
comment on column prebuilds.workspace_builds.job_id is 'The provisioner job that runs the build.';
comment on column prebuilds.workspace_builds.created_at is 'When the build was queued.';
comment on index prebuilds.workspace_builds_prebuild_starts_idx is
'Prebuild starts (initiated by the system user) per preset and time: the recent build times of '
'demand sizing.';
