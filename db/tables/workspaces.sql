-- Workspaces; a prebuild is a non-deleted workspace owned by the system user.
-- latest_build_*, current_preset_id and delete_failures are maintained by the trigger
-- workspace_builds_track_latest (and delete_failures by the functions that fail a job), so the
-- plan reaches a prebuild's state without reading its build history: the latest build's facts
-- (which never change once written) are copied here, and only its job is looked up.

create table prebuilds.workspaces (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references prebuilds.organizations (id),
    template_id uuid not null references prebuilds.templates (id),
    owner_id uuid not null references prebuilds.users (id),
    name text not null check (name <> ''),
    created_at timestamptz not null default now(),
    deleted bool not null default false,
    latest_build_id uuid,
    latest_build_number int,
    current_preset_id uuid references prebuilds.presets (id),
    delete_failures int not null default 0 check (delete_failures >= 0),
    latest_build_transition text,
    latest_build_created_at timestamptz,
    latest_build_initiator_id uuid,
    latest_build_job_id uuid
);

-- Every live prebuild, and nothing else: the plan and the per-preset re-checks read this index,
-- so their cost follows the live prebuilds, not deleted or claimed workspaces.
create index workspaces_live_prebuilds_idx
on prebuilds.workspaces (current_preset_id, created_at)
where owner_id = prebuilds.system_user_id() and not deleted;

create index workspaces_owner_id_idx on prebuilds.workspaces (owner_id) where not deleted;

comment on table prebuilds.workspaces is
'Workspaces. Non-deleted ones owned by the system user are prebuilds.';
comment on column prebuilds.workspaces.id is 'Primary key.';
comment on column prebuilds.workspaces.organization_id is 'Owning organization.';
comment on column prebuilds.workspaces.template_id is 'Template the workspace was built from.';
comment on column prebuilds.workspaces.owner_id is
'Owner; the system user while the workspace is an unclaimed prebuild.';
comment on column prebuilds.workspaces.name is 'Workspace name.';
comment on column prebuilds.workspaces.created_at is
'Creation time; TTL expiry and oldest-first deletion use it.';
comment on column prebuilds.workspaces.deleted is
'Set once a delete build succeeds (or a cancel orphans it).';
comment on column prebuilds.workspaces.latest_build_id is
'The build with the highest build_number (maintained by trigger).';
comment on column prebuilds.workspaces.latest_build_number is
'build_number of latest_build_id (maintained by trigger).';
comment on column prebuilds.workspaces.current_preset_id is
'Preset of the latest build that names one: the pool this prebuild counts in (maintained by '
'trigger).';
comment on column prebuilds.workspaces.delete_failures is
'Consecutive failed delete builds that end the workspace''s history: counted by complete_job and '
'fail_job when a delete fails, reset when a build other than a delete is added (maintained by '
'trigger). The delete retry backoff and quarantine read it instead of the build history.';
comment on column prebuilds.workspaces.latest_build_transition is
'transition of latest_build_id (maintained by trigger).';
comment on column prebuilds.workspaces.latest_build_created_at is
'created_at of latest_build_id (maintained by trigger).';
comment on column prebuilds.workspaces.latest_build_initiator_id is
'initiator_id of latest_build_id (maintained by trigger).';
comment on column prebuilds.workspaces.latest_build_job_id is
'job_id of latest_build_id (maintained by trigger): the plan looks up only this job.';
comment on index prebuilds.workspaces_live_prebuilds_idx is
'Live prebuilds by preset and age: the only workspace rows the plan reads.';
comment on index prebuilds.workspaces_owner_id_idx is 'Live workspaces of one owner.';
