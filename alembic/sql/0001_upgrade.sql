-- Frozen by `prebuilds freeze 0001` from db/manifest.txt.
-- Never edit: write a new revision instead.

-- >>> db/schema/prebuilds.sql
-- The schema that holds the platform model, the reconciler's views and its write functions.
-- Everything the project owns lives here; `alembic downgrade base` drops it whole.

create schema prebuilds;

comment on schema prebuilds is
'Prebuilt workspace pools: platform model, reconciliation views and write functions.';

-- >>> db/functions/system_user_id.sql
-- The fixed id of the system user that owns unclaimed prebuilds (Coder's id, so tooling ports
-- over).
-- Used in every query and partial index that picks prebuilds out of all workspaces; it is
-- immutable and inlined, so `owner_id = prebuilds.system_user_id()` matches the partial indexes.

create function prebuilds.system_user_id()
returns uuid
language sql
immutable
parallel safe
return 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid;

comment on function prebuilds.system_user_id() is
'Id of the system user prebuilds, owner of every unclaimed prebuild.';

-- >>> db/types/planned_work.sql
-- One cancel or delete planned for a preset; preset_plan_at returns them as an ordered array
-- so that reconciliation_actions_at can unnest them without reading the live prebuilds again.

create type prebuilds.planned_work as (
    action text,
    workspace_id uuid,
    reason text
);

comment on type prebuilds.planned_work is
'A planned cancel or delete: action, target workspace and the reason an operator reads.';
comment on column prebuilds.planned_work.action is 'cancel or delete.';
comment on column prebuilds.planned_work.workspace_id is 'The workspace to cancel or delete.';
comment on column prebuilds.planned_work.reason is 'Why, in words (reconciliation_actions.reason).';

-- >>> db/tables/organizations.sql
-- Organizations own templates and workspaces.
-- Written by the platform; read by preset_plan_at for display names.

create table prebuilds.organizations (
    id uuid primary key default gen_random_uuid(),
    name text not null unique check (name <> '')
);

comment on table prebuilds.organizations is
'Tenants of the platform; templates and workspaces belong to one.';
comment on column prebuilds.organizations.id is 'Primary key.';
comment on column prebuilds.organizations.name is 'Unique, human-readable name.';

-- >>> db/tables/users.sql
-- Users own workspaces. The system user `prebuilds` owns every unclaimed prebuild.
-- Written by the platform (and the migration, for the system user).

create table prebuilds.users (
    id uuid primary key default gen_random_uuid(),
    username text not null unique check (username <> ''),
    is_system bool not null default false
);

comment on table prebuilds.users is
'People and system accounts that own workspaces.';
comment on column prebuilds.users.id is
'Primary key. The system user prebuilds has the fixed id c42fdf75-3097-471c-8c33-fb52454d81c0.';
comment on column prebuilds.users.username is 'Unique login name.';
comment on column prebuilds.users.is_system is
'True for accounts that are not people, such as the prebuilds owner.';

-- >>> db/tables/templates.sql
-- Templates describe a kind of workspace; each has versions and one active version.
-- Written by the platform; read by preset_plan_at to decide which presets are active.

create table prebuilds.templates (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references prebuilds.organizations (id),
    name text not null check (name <> ''),
    active_version_id uuid,
    deleted bool not null default false,
    deprecated bool not null default false
);

-- Names are unique per organization among live templates only, so a deleted
-- template's name can be reused.
create unique index templates_organization_name_key
on prebuilds.templates (organization_id, name) where not deleted;

comment on table prebuilds.templates is
'Workspace templates. Only the active version of a live, non-deprecated template gets prebuilds.';
comment on column prebuilds.templates.id is 'Primary key.';
comment on column prebuilds.templates.organization_id is 'Owning organization.';
comment on column prebuilds.templates.name is
'Name, unique per organization among non-deleted templates.';
comment on column prebuilds.templates.active_version_id is
'The version new workspaces use; null until one is promoted. Presets of other versions are '
'inactive.';
comment on column prebuilds.templates.deleted is
'Soft delete: every preset of a deleted template is inactive.';
comment on column prebuilds.templates.deprecated is
'Deprecated templates keep their workspaces but get no new prebuilds.';
comment on index prebuilds.templates_organization_name_key is
'Template names are unique per organization among non-deleted templates.';

-- >>> db/tables/template_versions.sql
-- Versions of a template. Old versions pile up for years; the reconciler must not pay for them.
-- Written by the platform.

create table prebuilds.template_versions (
    id uuid primary key default gen_random_uuid(),
    template_id uuid not null references prebuilds.templates (id),
    name text not null check (name <> ''),
    created_at timestamptz not null default now(),
    unique (template_id, name)
);

alter table prebuilds.templates
add constraint templates_active_version_id_fkey
foreign key (active_version_id) references prebuilds.template_versions (id);

comment on table prebuilds.template_versions is
'Immutable versions of a template; presets belong to one version.';
comment on column prebuilds.template_versions.id is 'Primary key.';
comment on column prebuilds.template_versions.template_id is 'The template this is a version of.';
comment on column prebuilds.template_versions.name is 'Version name, unique per template.';
comment on column prebuilds.template_versions.created_at is 'When the version was pushed.';

-- >>> db/tables/presets.sql
-- Presets: named parameter sets of one template version, each with an optional pool size.
-- Written by the platform (pool settings) and by resume_preset / invalidation; read by the plan.

create table prebuilds.presets (
    id uuid primary key default gen_random_uuid(),
    template_version_id uuid not null references prebuilds.template_versions (id),
    name text not null check (name <> ''),
    desired_instances int check (desired_instances >= 0),
    ttl_seconds int check (ttl_seconds = 0 or ttl_seconds >= 60),
    scheduling_timezone text not null default '',
    last_invalidated_at timestamptz,
    failures_reset_at timestamptz,
    created_at timestamptz not null default now(),
    unique (template_version_id, name)
);

comment on table prebuilds.presets is
'Named parameter sets of a template version. A preset with desired_instances (or schedules) has a'
' pool of prebuilds.';
comment on column prebuilds.presets.id is 'Primary key.';
comment on column prebuilds.presets.template_version_id is
'The template version; the preset is active only while this is its template''s active version.';
comment on column prebuilds.presets.name is 'Preset name, unique per template version.';
comment on column prebuilds.presets.desired_instances is
'Pool size when no schedule is in force; null means no pool (existing prebuilds are deleted).';
comment on column prebuilds.presets.ttl_seconds is
'Prebuilds older than this many seconds expire and are replaced; null or 0 disables, otherwise at'
' least 60.';
comment on column prebuilds.presets.scheduling_timezone is
'IANA time zone in which schedules are read; empty string means no schedules apply.';
comment on column prebuilds.presets.last_invalidated_at is
'Prebuilds created before this instant are expired (set by invalidation).';
comment on column prebuilds.presets.failures_reset_at is
'Builds created before this instant are ignored by backoff and the hard limit (set by '
'resume_preset).';
comment on column prebuilds.presets.created_at is 'When the preset was created.';

-- >>> db/tables/preset_schedules.sql
-- Time-of-day pool sizes for a preset (`* HOUR DOM MONTH DOW` in the preset's time zone).
-- Written by the platform; evaluated by preset_plan_at.

create table prebuilds.preset_schedules (
    id uuid primary key default gen_random_uuid(),
    preset_id uuid not null references prebuilds.presets (id) on delete cascade,
    cron_expression text not null check (cron_expression <> ''),
    desired_instances int not null check (desired_instances >= 0)
);

create index preset_schedules_preset_id_idx on prebuilds.preset_schedules (preset_id);

comment on table prebuilds.preset_schedules is
'Schedules that override a preset''s desired_instances while their cron expression matches.';
comment on column prebuilds.preset_schedules.id is 'Primary key.';
comment on column prebuilds.preset_schedules.preset_id is 'The preset whose pool size this sets.';
comment on column prebuilds.preset_schedules.cron_expression is
'Cron expression `* HOUR DOM MONTH DOW`, read in the preset''s scheduling_timezone.';
comment on column prebuilds.preset_schedules.desired_instances is
'Pool size while the expression matches.';
comment on index prebuilds.preset_schedules_preset_id_idx is
'Finds the schedules of one preset.';

-- >>> db/tables/provisioner_jobs.sql
-- Provisioner jobs: the unit of work a provisioner picks up to run a build.
-- Written by the write functions (insert), acquire_job and complete_job (progress).

create table prebuilds.provisioner_jobs (
    id uuid primary key default gen_random_uuid(),
    initiator_id uuid not null references prebuilds.users (id),
    created_at timestamptz not null default now(),
    started_at timestamptz,
    completed_at timestamptz,
    canceled_at timestamptz,
    error text,
    worker_id text,
    status text not null generated always as (
        case
            when completed_at is not null and canceled_at is not null then 'canceled'
            when completed_at is not null and error is not null then 'failed'
            when completed_at is not null then 'succeeded'
            when canceled_at is not null then 'canceling'
            when started_at is not null then 'running'
            else 'pending'
        end
    ) stored,
    constraint provisioner_jobs_error_needs_completion
    check (error is null or completed_at is not null)
);

-- The queue: only jobs nobody has picked up, so the index stays as small as the backlog.
create index provisioner_jobs_queue_idx
on prebuilds.provisioner_jobs (created_at) where started_at is null and canceled_at is null;

comment on table prebuilds.provisioner_jobs is
'Build jobs run by provisioners; status is derived from the timestamps.';
comment on column prebuilds.provisioner_jobs.id is 'Primary key.';
comment on column prebuilds.provisioner_jobs.initiator_id is
'Who asked for the job; jobs of people are served before jobs of the system user.';
comment on column prebuilds.provisioner_jobs.created_at is 'When the job was queued.';
comment on column prebuilds.provisioner_jobs.started_at is 'When a provisioner picked it up.';
comment on column prebuilds.provisioner_jobs.completed_at is
'When it finished (success, failure or cancel).';
comment on column prebuilds.provisioner_jobs.canceled_at is 'When cancellation was requested.';
comment on column prebuilds.provisioner_jobs.error is
'Failure message; set only on completed jobs.';
comment on column prebuilds.provisioner_jobs.worker_id is 'The provisioner that acquired the job.';
comment on column prebuilds.provisioner_jobs.status is
'Derived: pending, running, succeeded, failed, canceling or canceled.';
comment on index prebuilds.provisioner_jobs_queue_idx is
'Jobs waiting for a provisioner, oldest first (acquire_job).';

-- >>> db/tables/workspaces.sql
-- Workspaces; a prebuild is a non-deleted workspace owned by the system user.
-- latest_build_* and current_preset_id are maintained by the trigger workspace_builds_track_latest,
-- so the plan reaches a prebuild's state without reading its build history.

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
    current_preset_id uuid references prebuilds.presets (id)
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
comment on index prebuilds.workspaces_live_prebuilds_idx is
'Live prebuilds by preset and age: the only workspace rows the plan reads.';
comment on index prebuilds.workspaces_owner_id_idx is 'Live workspaces of one owner.';

-- >>> db/tables/workspace_builds.sql
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

-- >>> db/tables/workspace_agents.sql
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

-- >>> db/tables/settings.sql
-- Deployment-wide reconciler settings: exactly one row, created by the migration.
-- Written by operators (prebuilds pause/resume, or plain update); read by the plan.

create table prebuilds.settings (
    singleton bool primary key default true check (singleton),
    reconciliation_paused bool not null default false,
    backoff_interval interval not null default '1 minute'
    check (backoff_interval > interval '0'),
    backoff_lookback interval not null default '1 hour'
    check (backoff_lookback > interval '0'),
    failure_hard_limit int not null default 3 check (failure_hard_limit >= 0),
    max_pending_creates int check (max_pending_creates > 0)
);

comment on table prebuilds.settings is 'Reconciler settings; a single row.';
comment on column prebuilds.settings.singleton is 'Always true: keeps the table at one row.';
comment on column prebuilds.settings.reconciliation_paused is
'When true the reconciler plans and applies nothing.';
comment on column prebuilds.settings.backoff_interval is
'Each recent failure delays the next create of its preset by this much (linear backoff).';
comment on column prebuilds.settings.backoff_lookback is
'Failures older than this no longer count for backoff.';
comment on column prebuilds.settings.failure_hard_limit is
'A preset whose this-many most recent builds all failed stops creating until resumed; 0 disables.';
comment on column prebuilds.settings.max_pending_creates is
'Cap on prebuild start jobs pending or running in the whole deployment; null means no cap.';

-- >>> db/tables/reconciliation_runs.sql
-- One row per reconciliation cycle that held the lock and applied its plan.
-- Written by the driver through its write pool; read by operators in psql.

create table prebuilds.reconciliation_runs (
    id bigint generated always as identity primary key,
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    status text not null default 'running'
    check (status in ('running', 'succeeded', 'failed', 'paused')),
    hostname text not null default '',
    pid int,
    actions_planned int not null default 0 check (actions_planned >= 0),
    actions_applied int not null default 0 check (actions_applied >= 0),
    actions_skipped int not null default 0 check (actions_skipped >= 0),
    actions_failed int not null default 0 check (actions_failed >= 0),
    plan_ms double precision,
    error text
);

create index reconciliation_runs_started_at_idx on prebuilds.reconciliation_runs (started_at);

comment on table prebuilds.reconciliation_runs is
'Reconciliation cycles, one row each; a row left in status running means the driver died mid-'
'cycle.';
comment on column prebuilds.reconciliation_runs.id is 'Primary key, increasing.';
comment on column prebuilds.reconciliation_runs.started_at is 'When the cycle started applying.';
comment on column prebuilds.reconciliation_runs.finished_at is 'When the cycle finished.';
comment on column prebuilds.reconciliation_runs.status is
'running, succeeded (every action applied or skipped), failed (an action or the cycle failed) or '
'paused (nothing planned: reconciliation is paused).';
comment on column prebuilds.reconciliation_runs.hostname is 'Host the driver ran on.';
comment on column prebuilds.reconciliation_runs.pid is 'Process id of the driver.';
comment on column prebuilds.reconciliation_runs.actions_planned is
'Rows read from reconciliation_actions, backoff rows included.';
comment on column prebuilds.reconciliation_runs.actions_applied is
'Actions whose function did the work.';
comment on column prebuilds.reconciliation_runs.actions_skipped is
'Actions whose function found nothing to do any more (null or false), e.g. a prebuild claimed '
'meanwhile.';
comment on column prebuilds.reconciliation_runs.actions_failed is 'Actions that raised an error.';
comment on column prebuilds.reconciliation_runs.plan_ms is
'Milliseconds spent taking the lock and reading the plan.';
comment on column prebuilds.reconciliation_runs.error is 'Why the cycle failed, when it did.';
comment on index prebuilds.reconciliation_runs_started_at_idx is 'Recent cycles first; pruning.';

-- >>> db/tables/reconciliation_action_log.sql
-- The outcome of every action of every recorded cycle.
-- Written by the driver in the same transaction as the action (or right after it, on failure).

create table prebuilds.reconciliation_action_log (
    run_id bigint not null references prebuilds.reconciliation_runs (id) on delete cascade,
    seq int not null,
    preset_id uuid not null,
    action text not null check (action in ('cancel', 'delete', 'create', 'backoff')),
    workspace_id uuid,
    reason text not null,
    outcome text not null check (outcome in ('applied', 'skipped', 'failed', 'noted')),
    error text,
    finished_at timestamptz not null default clock_timestamp(),
    primary key (run_id, seq)
);

comment on table prebuilds.reconciliation_action_log is
'What each planned action did. No foreign keys to presets or workspaces: the log outlives them.';
comment on column prebuilds.reconciliation_action_log.run_id is 'The cycle.';
comment on column prebuilds.reconciliation_action_log.seq is
'Position in the plan (reconciliation_actions.seq).';
comment on column prebuilds.reconciliation_action_log.preset_id is 'Preset the action was for.';
comment on column prebuilds.reconciliation_action_log.action is
'cancel, delete, create or backoff.';
comment on column prebuilds.reconciliation_action_log.workspace_id is
'Workspace acted on; for an applied create, the workspace created.';
comment on column prebuilds.reconciliation_action_log.reason is 'Why the plan asked for it.';
comment on column prebuilds.reconciliation_action_log.outcome is
'applied, skipped (nothing to do any more), failed (error) or noted (backoff rows).';
comment on column prebuilds.reconciliation_action_log.error is 'Error message of a failed action.';
comment on column prebuilds.reconciliation_action_log.finished_at is 'When the action finished.';

-- >>> db/functions/track_latest_build.sql
-- Trigger function: keeps workspaces.latest_build_* and current_preset_id in step with the builds,
-- so readers find a workspace's state in one primary-key lookup instead of scanning its history.
-- Called by the trigger workspace_builds_track_latest after every build insert.

create function prebuilds.track_latest_build()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    -- The comparison runs on the row version this update locks, so two builds inserted
    -- concurrently for one workspace still leave the higher number in place.
    update prebuilds.workspaces as w
    set latest_build_id = new.id,
        latest_build_number = new.build_number,
        current_preset_id = coalesce(new.preset_id, w.current_preset_id)
    where w.id = new.workspace_id
      and (w.latest_build_number is null or w.latest_build_number < new.build_number);
    return null;
end;
$$;

comment on function prebuilds.track_latest_build() is
'Trigger: points workspaces.latest_build_id and current_preset_id at the newest build.';

-- >>> db/triggers/workspace_builds_track_latest.sql
-- Maintains the latest-build pointer on workspaces for every writer, not only our functions.
-- Builds are append-only: updating a build's number, workspace or preset is not supported.

create trigger workspace_builds_track_latest
after insert on prebuilds.workspace_builds
for each row execute function prebuilds.track_latest_build();

comment on trigger workspace_builds_track_latest on prebuilds.workspace_builds is
'Keeps workspaces.latest_build_id, latest_build_number and current_preset_id current.';

-- >>> db/functions/is_expired.sql
-- The expiry rule (SPEC 4.2), shared by the plan and by create_prebuild's re-check.
-- A prebuild expires when created before the preset's last invalidation, or older than its TTL.

create function prebuilds.is_expired(
    p_created_at timestamptz,
    p_ttl_seconds int,
    p_last_invalidated_at timestamptz,
    p_now timestamptz
)
returns bool
language sql
immutable
parallel safe
return coalesce(p_created_at < p_last_invalidated_at, false)
or coalesce(
    p_ttl_seconds > 0
    and extract(epoch from p_now - p_created_at) > p_ttl_seconds,
    false
);

comment on function prebuilds.is_expired(timestamptz, int, timestamptz, timestamptz) is
'True when a prebuild created at p_created_at is expired at p_now: created before the last '
'invalidation, or older than ttl_seconds (> 0).';

-- >>> db/functions/agents_ready.sql
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

-- >>> db/functions/preset_plan_at.sql
-- The whole reconciliation calculation (SPEC 4.1, 4.2, 4.4) as one query: state and work per
-- preset.
-- preset_state_at shows its state columns; reconciliation_actions_at unnests its work. Both read
-- the live prebuilds exactly once, through this function; nothing else computes a rule.
--
-- Cost follows the live fleet: the live prebuilds come from a partial index holding only them,
-- each joined by primary key to its latest build and job; active presets come from the live
-- templates through presets' (template_version_id, name) key. Old presets and build history are
-- never scanned.

create function prebuilds.preset_plan_at(p_now timestamptz)
returns table (
    preset_id uuid,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    is_active bool,
    desired int,
    actual int,
    eligible int,
    expired int,
    extraneous int,
    starting int,
    stopping int,
    deleting int,
    pending_cancelable int,
    failures int,
    backoff_until timestamptz,
    hard_limited bool,
    blocked_reason text,
    creates_wanted int,
    creates int,
    creates_reason text,
    backoff_reason text,
    work prebuilds.planned_work []
)
language sql
stable
-- JIT compilation of this plan costs far more than running it (SPEC 3).
set jit = off
rows 200
begin atomic
    with
    cfg as (
        select
            s.reconciliation_paused as paused,
            s.backoff_interval,
            s.backoff_lookback,
            s.failure_hard_limit,
            s.max_pending_creates
        from prebuilds.settings as s
    ),

    -- Every live prebuild with the state of its latest build: the only read of fleet data.
    live as materialized (
        select
            w.id as workspace_id,
            w.created_at,
            w.current_preset_id as preset_id,
            b.build_number,
            b.transition,
            b.created_at as build_created_at,
            b.job_id,
            j.status as job_status,
            b.initiator_id = prebuilds.system_user_id() as by_system,
            b.initiator_id = prebuilds.system_user_id()
            and j.status in ('pending', 'running') as in_flight
        from prebuilds.workspaces as w
        inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
        inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
        where w.owner_id = prebuilds.system_user_id() and not w.deleted
    ),

    -- Presets of active template versions that have a pool (SPEC 4.1, first half).
    pooled as (
        select p.id as preset_id
        from prebuilds.templates as t
        inner join prebuilds.presets as p on t.active_version_id = p.template_version_id
        where
            not t.deleted
            and not t.deprecated
            and (
                p.desired_instances is not null
                or exists (
                    select from prebuilds.preset_schedules as ps
                    where ps.preset_id = p.id
                )
            )
        union
        -- Presets holding live prebuilds; the filter below keeps those with cleanup to do.
        select distinct l.preset_id
        from live as l
        where l.preset_id is not null
    ),

    candidate as (
        select
            p.id as preset_id,
            o.name as organization_name,
            t.name as template_name,
            v.name as template_version_name,
            p.name as preset_name,
            p.ttl_seconds,
            p.last_invalidated_at,
            p.failures_reset_at,
            act.is_active,
            act.is_active and (
                p.desired_instances is not null
                or exists (
                    select from prebuilds.preset_schedules as ps
                    where ps.preset_id = p.id
                )
            ) as has_pool,
            case when act.is_active then coalesce(p.desired_instances, 0) else 0 end as desired,
            case
                when t.deleted then 'template ' || t.name || ' deleted'
                when t.deprecated then 'template ' || t.name || ' deprecated'
                when av.id is null then 'template ' || t.name || ' has no active version'
                else 'outdated version ' || v.name || ' (active: ' || av.name || ')'
            end as inactive_reason
        from pooled
        inner join prebuilds.presets as p on pooled.preset_id = p.id
        inner join prebuilds.template_versions as v on p.template_version_id = v.id
        inner join prebuilds.templates as t on v.template_id = t.id
        inner join prebuilds.organizations as o on t.organization_id = o.id
        left join prebuilds.template_versions as av on t.active_version_id = av.id
        cross join lateral (
            select
                coalesce(
                    t.active_version_id = p.template_version_id
                    and not t.deleted
                    and not t.deprecated,
                    false
                ) as is_active
        ) as act
    ),

    -- Each live prebuild of a candidate, classified by the rules of SPEC 4.2.
    classified as (
        select
            l.*,
            c.is_active,
            c.desired,
            l.transition = 'start' and l.job_status = 'succeeded' as running,
            l.transition = 'start' and l.job_status = 'succeeded'
            and prebuilds.is_expired(
                l.created_at, c.ttl_seconds, c.last_invalidated_at, p_now
            ) as expired,
            l.build_number = 1 and l.transition = 'start' and l.by_system
            and l.job_status = 'pending' as queued_initial,
            -- Failure history: latest builds that are starts, since the last reset.
            l.transition = 'start'
            and (c.failures_reset_at is null or l.build_created_at >= c.failures_reset_at)
            as in_history
        from live as l
        inner join candidate as c on l.preset_id = c.preset_id
    ),

    ranked as (
        select
            cl.*,
            cl.running and not cl.expired and cl.is_active
            and prebuilds.agents_ready(cl.job_id) as eligible,
            cl.job_status = 'failed'
            and cl.build_created_at >= p_now - cfg.backoff_lookback as recent_failure,
            -- Oldest first among the unexpired running prebuilds: surplus deletion order.
            row_number() over (
                partition by cl.preset_id, cl.running and not cl.expired
                order by cl.created_at, cl.workspace_id
            ) as age_rank,
            -- Most recent first among the failure history: backoff and hard-limit windows.
            row_number() over (
                partition by cl.preset_id, cl.in_history
                order by cl.build_created_at desc, cl.workspace_id
            ) as history_rank
        from classified as cl
        cross join cfg
    ),

    tally as (
        select
            r.preset_id,
            count(*) filter (where r.running) as actual,
            count(*) filter (where r.expired) as expired,
            count(*) filter (where r.eligible) as eligible,
            count(*) filter (where r.in_flight and r.transition = 'start') as starting,
            count(*) filter (where r.in_flight and r.transition = 'stop') as stopping,
            count(*) filter (where r.in_flight and r.transition = 'delete') as deleting,
            count(*) filter (where r.queued_initial and not r.is_active) as pending_cancelable,
            count(*) filter (where r.in_history and r.recent_failure) as failures,
            max(r.build_created_at) filter (
                where r.in_history and r.recent_failure
            ) as last_failure_at,
            -- Backoff looks at the `desired` most recent builds only (SPEC 4.2).
            bool_or(
                r.in_history and r.recent_failure and r.history_rank <= r.desired
            ) as failed_recently,
            count(*) filter (
                where r.in_history and r.job_status = 'failed'
                and r.history_rank <= cfg.failure_hard_limit
            ) as hard_limit_failures
        from ranked as r
        cross join cfg
        group by r.preset_id
    ),

    state as (
        select
            c.*,
            coalesce(tl.actual, 0)::int as actual,
            coalesce(tl.expired, 0)::int as expired,
            coalesce(tl.eligible, 0)::int as eligible,
            coalesce(tl.starting, 0)::int as starting,
            coalesce(tl.stopping, 0)::int as stopping,
            coalesce(tl.deleting, 0)::int as deleting,
            coalesce(tl.pending_cancelable, 0)::int as pending_cancelable,
            coalesce(tl.failures, 0)::int as failures,
            c.is_active
            and cfg.failure_hard_limit > 0
            and coalesce(tl.hard_limit_failures, 0) = cfg.failure_hard_limit as hard_limited,
            case
                when
                    c.is_active and tl.failed_recently
                    and tl.last_failure_at + tl.failures * cfg.backoff_interval > p_now
                    then tl.last_failure_at + tl.failures * cfg.backoff_interval
            end as backoff_until,
            cfg.paused
        from candidate as c
        cross join cfg
        left join tally as tl on c.preset_id = tl.preset_id
        -- SPEC 4.1: a pool on an active version, or something left to clean up.
        where c.has_pool or tl.actual > 0 or tl.pending_cancelable > 0
    ),

    wanted as (
        select
            st.*,
            case
                when st.is_active then greatest(st.actual - st.expired - st.desired, 0)
                else 0
            end as extraneous,
            case
                when st.is_active
                    then greatest(st.desired - (st.actual - st.expired) - st.starting, 0)
                else 0
            end as creates_wanted
        from state as st
    ),

    -- Creates interleaved across presets (every preset's first, then every preset's second, …)
    -- so that a deployment-wide cap never starves a preset.
    create_slots as (
        select
            wn.preset_id,
            row_number() over (
                order by
                    slot.n, wn.organization_name, wn.template_name, wn.template_version_name,
                    wn.preset_name, wn.preset_id
            ) as global_rank
        from wanted as wn
        cross join lateral generate_series(1, wn.creates_wanted) as slot (n)
        where not wn.paused and not wn.hard_limited and wn.backoff_until is null
    ),

    -- How many more prebuild start jobs may be queued; null when there is no cap.
    create_budget as (
        select
            cfg.max_pending_creates - (
                select count(*)
                from live as l
                where l.in_flight and l.transition = 'start'
            ) as budget
        from cfg
    ),

    allowed as (
        select
            cs.preset_id,
            count(*) filter (
                where cb.budget is null or cs.global_rank <= cb.budget
            )::int as creates
        from create_slots as cs
        cross join create_budget as cb
        group by cs.preset_id
    ),

    work as (
        select
            r.preset_id,
            array_agg(
                row(
                    case when r.queued_initial then 'cancel' else 'delete' end,
                    r.workspace_id,
                    case
                        when r.queued_initial
                            then wn.inactive_reason || ': initial build still queued'
                        when not wn.is_active then wn.inactive_reason
                        when r.created_at < wn.last_invalidated_at
                            then 'expired: created before invalidation at '
                            || to_char(wn.last_invalidated_at, 'YYYY-MM-DD HH24:MI:SSOF')
                        when r.expired
                            then 'expired: older than ttl ' || wn.ttl_seconds || 's'
                        else
                            'surplus: ' || (wn.actual - wn.expired) || ' running, '
                            || wn.desired || ' desired'
                    end
                )::prebuilds.planned_work
                order by r.queued_initial desc, r.expired desc, r.created_at, r.workspace_id
            ) as work
        from ranked as r
        inner join wanted as wn on r.preset_id = wn.preset_id
        where
            not wn.paused
            and (
                (not wn.is_active and (r.running or r.queued_initial))
                or (wn.is_active and r.expired)
                or (
                    wn.is_active and r.running and not r.expired
                    and r.age_rank <= wn.extraneous
                )
            )
        group by r.preset_id
    )

    select
        wn.preset_id,
        wn.organization_name,
        wn.template_name,
        wn.template_version_name,
        wn.preset_name,
        wn.is_active,
        wn.desired,
        wn.actual,
        wn.eligible,
        wn.expired,
        wn.extraneous,
        wn.starting,
        wn.stopping,
        wn.deleting,
        wn.pending_cancelable,
        wn.failures,
        wn.backoff_until,
        wn.hard_limited,
        case
            when wn.paused then 'paused'
            when wn.creates_wanted = 0 then null
            when wn.hard_limited then 'hard_limited'
            when wn.backoff_until is not null then 'backoff'
            when coalesce(a.creates, 0) < wn.creates_wanted then 'capped'
        end,
        wn.creates_wanted,
        coalesce(a.creates, 0),
        'missing: ' || (wn.actual - wn.expired) || ' running, ' || wn.starting
        || ' starting, ' || wn.desired || ' desired',
        case
            when wn.backoff_until is not null
                then 'backoff: ' || wn.failures || ' failed build(s) in the last '
                || (select cfg.backoff_lookback from cfg)::text || ', creates wait until '
                || to_char(wn.backoff_until, 'YYYY-MM-DD HH24:MI:SSOF')
        end,
        coalesce(wk.work, '{}')
    from wanted as wn
    left join allowed as a on wn.preset_id = a.preset_id
    left join work as wk on wn.preset_id = wk.preset_id;
end;

comment on function prebuilds.preset_plan_at(timestamptz) is
'Internal: the reconciliation state and planned work of every preset under consideration at '
'p_now. Read it through preset_state_at and reconciliation_actions_at.';

-- >>> db/functions/preset_state_at.sql
-- "Why is my pool not being filled?": one row per preset under consideration at p_now (SPEC 3).
-- Operators read it through the view preset_state; tests call it with fixed instants.

create function prebuilds.preset_state_at(p_now timestamptz)
returns table (
    preset_id uuid,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    is_active bool,
    desired int,
    actual int,
    eligible int,
    expired int,
    extraneous int,
    starting int,
    stopping int,
    deleting int,
    pending_cancelable int,
    failures int,
    backoff_until timestamptz,
    hard_limited bool,
    blocked_reason text,
    creates_planned int
)
language sql
stable
set jit = off
rows 200
begin atomic
    select
        pp.preset_id,
        pp.organization_name,
        pp.template_name,
        pp.template_version_name,
        pp.preset_name,
        pp.is_active,
        pp.desired,
        pp.actual,
        pp.eligible,
        pp.expired,
        pp.extraneous,
        pp.starting,
        pp.stopping,
        pp.deleting,
        pp.pending_cancelable,
        pp.failures,
        pp.backoff_until,
        pp.hard_limited,
        pp.blocked_reason,
        pp.creates
    from prebuilds.preset_plan_at(p_now) as pp
    order by
        pp.organization_name, pp.template_name, pp.template_version_name, pp.preset_name,
        pp.preset_id;
end;

comment on function prebuilds.preset_state_at(timestamptz) is
'Reconciliation state of every preset under consideration at p_now: counts, backoff, hard limit '
'and why creates are blocked.';

-- >>> db/functions/reconciliation_actions_at.sql
-- The plan: every unit of work at p_now, in the order to apply it (SPEC 3, 4.4).
-- Cancels and deletes first, then creates interleaved across presets, then informational backoff
-- rows. The driver reads it through the view reconciliation_actions; tests call it directly.

create function prebuilds.reconciliation_actions_at(p_now timestamptz)
returns table (
    seq int,
    preset_id uuid,
    action text,
    workspace_id uuid,
    reason text,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    backoff_until timestamptz
)
language sql
stable
set jit = off
rows 100
begin atomic
    with
    plan as materialized (
        select pp.* from prebuilds.preset_plan_at(p_now) as pp
    ),

    items as (
        select
            1 as phase,
            w.ordinality as n,
            pl.preset_id,
            w.action,
            w.workspace_id,
            w.reason,
            pl.organization_name,
            pl.template_name,
            pl.template_version_name,
            pl.preset_name,
            null::timestamptz as backoff_until
        from plan as pl
        cross join lateral unnest(pl.work) with ordinality as w (action, workspace_id, reason)
        union all
        select
            2 as phase,
            slot.n,
            pl.preset_id,
            'create' as action,
            null as workspace_id,
            pl.creates_reason as reason,
            pl.organization_name,
            pl.template_name,
            pl.template_version_name,
            pl.preset_name,
            null as backoff_until
        from plan as pl
        cross join lateral generate_series(1, pl.creates) as slot (n)
        union all
        select
            3 as phase,
            1 as n,
            pl.preset_id,
            'backoff' as action,
            null as workspace_id,
            pl.backoff_reason as reason,
            pl.organization_name,
            pl.template_name,
            pl.template_version_name,
            pl.preset_name,
            pl.backoff_until
        from plan as pl
        where pl.blocked_reason = 'backoff'
    )

    select
        (
            row_number() over (
                order by
                    it.phase,
                    -- Creates are interleaved: every preset's first, then every second, …
                    case when it.phase = 2 then it.n end,
                    it.organization_name, it.template_name, it.template_version_name,
                    it.preset_name, it.preset_id, it.n
            )
        )::int as seq,
        it.preset_id,
        it.action,
        it.workspace_id,
        it.reason,
        it.organization_name,
        it.template_name,
        it.template_version_name,
        it.preset_name,
        it.backoff_until
    from items as it
    order by seq;
end;

comment on function prebuilds.reconciliation_actions_at(timestamptz) is
'Every action the reconciler would take at p_now, in order: cancel, delete, create (interleaved '
'across presets) and informational backoff rows.';

-- >>> db/views/preset_state.sql
-- The state of every preset under consideration, now. For operators in psql and `prebuilds status`.

create view prebuilds.preset_state as
select
    ps.preset_id,
    ps.organization_name,
    ps.template_name,
    ps.template_version_name,
    ps.preset_name,
    ps.is_active,
    ps.desired,
    ps.actual,
    ps.eligible,
    ps.expired,
    ps.extraneous,
    ps.starting,
    ps.stopping,
    ps.deleting,
    ps.pending_cancelable,
    ps.failures,
    ps.backoff_until,
    ps.hard_limited,
    ps.blocked_reason,
    ps.creates_planned
from prebuilds.preset_state_at(now()) as ps;

comment on view prebuilds.preset_state is
'One row per preset under consideration now (active with a pool, or with prebuilds to clean up). '
'blocked_reason says why a pool is not being filled: paused, hard_limited, backoff or capped.';
comment on column prebuilds.preset_state.preset_id is 'The preset.';
comment on column prebuilds.preset_state.organization_name is 'Organization of the template.';
comment on column prebuilds.preset_state.template_name is 'Template name.';
comment on column prebuilds.preset_state.template_version_name is 'Version the preset belongs to.';
comment on column prebuilds.preset_state.preset_name is 'Preset name.';
comment on column prebuilds.preset_state.is_active is
'Version is the template''s active one and the template is neither deleted nor deprecated.';
comment on column prebuilds.preset_state.desired is 'Pool size wanted now; 0 when inactive.';
comment on column prebuilds.preset_state.actual is
'Running prebuilds: latest build a succeeded start, counted in this preset.';
comment on column prebuilds.preset_state.eligible is
'Running, unexpired and ready prebuilds: what a claim can take now (active presets only).';
comment on column prebuilds.preset_state.expired is
'Running prebuilds past the TTL or created before the last invalidation.';
comment on column prebuilds.preset_state.extraneous is
'Unexpired running prebuilds beyond desired; deleted oldest first (active presets only).';
comment on column prebuilds.preset_state.starting is 'Prebuild start builds pending or running.';
comment on column prebuilds.preset_state.stopping is 'Prebuild stop builds pending or running.';
comment on column prebuilds.preset_state.deleting is 'Prebuild delete builds pending or running.';
comment on column prebuilds.preset_state.pending_cancelable is
'Queued initial builds of an inactive preset that the next cycle cancels.';
comment on column prebuilds.preset_state.failures is
'Failed latest start builds within the backoff lookback (since the last resume).';
comment on column prebuilds.preset_state.backoff_until is
'Creates wait until this instant because of recent failures; null when not backing off.';
comment on column prebuilds.preset_state.hard_limited is
'The failure_hard_limit most recent builds all failed; creates stop until prebuilds resume-preset.';
comment on column prebuilds.preset_state.blocked_reason is
'Why wanted creates are held back: paused, hard_limited, backoff or capped; null otherwise.';
comment on column prebuilds.preset_state.creates_planned is 'Creates the next cycle will apply.';

-- >>> db/views/reconciliation_actions.sql
-- What the next reconciliation cycle will do, now, and why. The driver's one read goes here.

create view prebuilds.reconciliation_actions as
select
    ra.seq,
    ra.preset_id,
    ra.action,
    ra.workspace_id,
    ra.reason,
    ra.organization_name,
    ra.template_name,
    ra.template_version_name,
    ra.preset_name,
    ra.backoff_until
from prebuilds.reconciliation_actions_at(now()) as ra;

comment on view prebuilds.reconciliation_actions is
'The plan of the next reconciliation cycle: one row per unit of work in the order the driver '
'applies it. Empty while paused.';
comment on column prebuilds.reconciliation_actions.seq is 'Position in the plan, from 1.';
comment on column prebuilds.reconciliation_actions.preset_id is 'Preset the action is for.';
comment on column prebuilds.reconciliation_actions.action is
'cancel (queued build of an inactive preset), delete (running prebuild), create (one new '
'prebuild) or backoff (informational: creates held back).';
comment on column prebuilds.reconciliation_actions.workspace_id is
'Workspace to cancel or delete; null for create and backoff.';
comment on column prebuilds.reconciliation_actions.reason is 'Why, in words.';
comment on column prebuilds.reconciliation_actions.organization_name is
'Organization of the template.';
comment on column prebuilds.reconciliation_actions.template_name is 'Template name.';
comment on column prebuilds.reconciliation_actions.template_version_name is
'Version of the preset.';
comment on column prebuilds.reconciliation_actions.preset_name is 'Preset name.';
comment on column prebuilds.reconciliation_actions.backoff_until is
'For backoff rows: when creates may resume.';

-- >>> db/functions/queue_build.sql
-- Internal: queue the next build of a workspace with a fresh pending job; returns the job id.
-- Callers (create, delete, claim) hold the workspace row lock, so the build number is stable.

create function prebuilds.queue_build(
    p_workspace_id uuid,
    p_template_version_id uuid,
    p_preset_id uuid,
    p_transition text,
    p_initiator_id uuid
)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
    v_job_id uuid;
begin
    insert into prebuilds.provisioner_jobs (initiator_id)
    values (p_initiator_id)
    returning id into v_job_id;

    insert into prebuilds.workspace_builds (
        workspace_id, build_number, template_version_id, preset_id, transition,
        initiator_id, job_id
    )
    select w.id, coalesce(w.latest_build_number, 0) + 1, p_template_version_id, p_preset_id,
           p_transition, p_initiator_id, v_job_id
    from prebuilds.workspaces as w
    where w.id = p_workspace_id;

    return v_job_id;
end;
$$;

comment on function prebuilds.queue_build(uuid, uuid, uuid, text, uuid) is
'Internal: appends the next build of a workspace with a pending job and returns the job id. The '
'caller must hold the workspace row lock.';

-- >>> db/functions/create_prebuild.sql
-- Apply a `create` action: one new prebuild for a preset (SPEC 4.5). Called by the driver.
-- Re-checks, under a lock on the preset row, that the preset is still active and still short;
-- the check reads only this preset's live prebuilds, so a create costs about its inserts.

create function prebuilds.create_prebuild(p_preset_id uuid)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
    v_preset prebuilds.presets;
    v_template prebuilds.templates;
    v_have int;
    v_workspace_id uuid;
begin
    -- `no key update` serialises creates for one preset without blocking foreign-key checks
    -- (claims and builds that reference the preset).
    select p.* into v_preset
    from prebuilds.presets as p
    where p.id = p_preset_id
    for no key update;
    if not found then
        return null;
    end if;

    select t.* into v_template
    from prebuilds.template_versions as v
    join prebuilds.templates as t on t.id = v.template_id
    where v.id = v_preset.template_version_id;
    if v_template.deleted or v_template.deprecated
       or v_template.active_version_id is distinct from v_preset.template_version_id then
        return null;
    end if;

    -- Running unexpired prebuilds plus those starting: what the pool will hold.
    select count(*) into v_have
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where w.current_preset_id = p_preset_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
      and b.transition = 'start'
      and (
          (j.status = 'succeeded' and not prebuilds.is_expired(
              w.created_at, v_preset.ttl_seconds, v_preset.last_invalidated_at, now()))
          or (j.status in ('pending', 'running') and b.initiator_id = prebuilds.system_user_id())
      );
    if v_have >= coalesce(v_preset.desired_instances, 0) then
        return null;
    end if;

    insert into prebuilds.workspaces (organization_id, template_id, owner_id, name)
    values (
        v_template.organization_id,
        v_template.id,
        prebuilds.system_user_id(),
        'prebuild-' || left(replace(gen_random_uuid()::text, '-', ''), 12)
    )
    returning id into v_workspace_id;

    perform prebuilds.queue_build(
        v_workspace_id, v_preset.template_version_id, p_preset_id, 'start',
        prebuilds.system_user_id()
    );
    return v_workspace_id;
end;
$$;

comment on function prebuilds.create_prebuild(uuid) is
'Creates one prebuild (workspace, start build 1, pending job) for an active preset that is still '
'short of its desired size; returns the workspace id, or null when there is nothing to do any '
'more.';

-- >>> db/functions/delete_prebuild.sql
-- Apply a `delete` action: queue a delete build for a running prebuild (SPEC 4.5).
-- Called by the driver. Locks the workspace row, so it serialises with claim_prebuild: a
-- workspace claimed first is no longer a prebuild and is left alone.

create function prebuilds.delete_prebuild(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_transition text;
    v_version_id uuid;
    v_status text;
begin
    select w.* into v_workspace
    from prebuilds.workspaces as w
    where w.id = p_workspace_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
    for no key update;
    if not found then
        return false;
    end if;

    select b.transition, b.template_version_id, j.status
    into v_transition, v_version_id, v_status
    from prebuilds.workspace_builds as b
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where b.id = v_workspace.latest_build_id;
    -- Only a running prebuild: never one in flight, failed, canceled or stopped.
    if v_transition is distinct from 'start' or v_status is distinct from 'succeeded' then
        return false;
    end if;

    perform prebuilds.queue_build(
        p_workspace_id, v_version_id, v_workspace.current_preset_id, 'delete',
        prebuilds.system_user_id()
    );
    return true;
end;
$$;

comment on function prebuilds.delete_prebuild(uuid) is
'Queues a delete build for a workspace that is still a running prebuild; returns false (and does '
'nothing) when it was claimed, deleted, is in flight, failed or stopped.';

-- >>> db/functions/cancel_prebuild.sql
-- Apply a `cancel` action: a queued initial build of an inactive preset (SPEC 4.5).
-- Called by the driver. Cancels the job only if no provisioner has picked it up (acquire_job
-- locks jobs with skip locked, so exactly one of the two wins), records an orphan delete build
-- completed at once and marks the workspace deleted.

create function prebuilds.cancel_prebuild(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_build prebuilds.workspace_builds;
    v_active bool;
    v_orphan_job uuid;
begin
    select w.* into v_workspace
    from prebuilds.workspaces as w
    where w.id = p_workspace_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
    for no key update;
    if not found then
        return false;
    end if;

    select b.* into v_build
    from prebuilds.workspace_builds as b
    where b.id = v_workspace.latest_build_id;
    if v_build.build_number is distinct from 1 or v_build.transition <> 'start'
       or v_build.initiator_id <> prebuilds.system_user_id() then
        return false;
    end if;

    -- The preset must still be inactive: a version promoted back keeps its queued builds.
    select coalesce(t.active_version_id = v.id and not t.deleted and not t.deprecated, false)
    into v_active
    from prebuilds.presets as p
    join prebuilds.template_versions as v on v.id = p.template_version_id
    join prebuilds.templates as t on t.id = v.template_id
    where p.id = v_workspace.current_preset_id;
    if v_active is distinct from false then
        return false;
    end if;

    update prebuilds.provisioner_jobs as j
    set canceled_at = now(), completed_at = now()
    where j.id = v_build.job_id
      and j.started_at is null and j.canceled_at is null and j.completed_at is null;
    if not found then
        return false;
    end if;

    -- The orphan delete: nothing was provisioned, so there is nothing for a provisioner to do.
    v_orphan_job := prebuilds.queue_build(
        p_workspace_id, v_build.template_version_id, v_build.preset_id, 'delete',
        prebuilds.system_user_id()
    );
    update prebuilds.provisioner_jobs
    set started_at = now(), completed_at = now()
    where id = v_orphan_job;

    update prebuilds.workspaces set deleted = true where id = p_workspace_id;
    return true;
end;
$$;

comment on function prebuilds.cancel_prebuild(uuid) is
'Cancels the still-unpicked initial build of a prebuild whose preset is inactive, records an '
'orphan delete build and marks the workspace deleted; false when a provisioner already took the '
'job or the preset is active again.';

-- >>> db/functions/claim_prebuild.sql
-- Hand an eligible prebuild to a person (SPEC 4.5). Called by the platform when a user creates a
-- workspace from a preset. Takes the oldest eligible prebuild with `skip locked`: a prebuild
-- being deleted is locked by delete_prebuild and skipped, so a claimed workspace is never deleted.

create function prebuilds.claim_prebuild(p_preset_id uuid, p_owner_id uuid, p_name text)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
    v_workspace_id uuid;
    v_version_id uuid;
begin
    if p_owner_id = prebuilds.system_user_id() then
        raise exception 'claim_prebuild: the system user cannot claim a prebuild'
            using errcode = 'invalid_parameter_value';
    end if;
    if coalesce(p_name, '') = '' then
        raise exception 'claim_prebuild: workspace name must not be empty'
            using errcode = 'invalid_parameter_value';
    end if;
    if not exists (select from prebuilds.users as u where u.id = p_owner_id) then
        raise exception 'claim_prebuild: no user with id %', p_owner_id
            using errcode = 'foreign_key_violation';
    end if;

    select w.id, b.template_version_id into v_workspace_id, v_version_id
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    join prebuilds.presets as p on p.id = w.current_preset_id
    join prebuilds.templates as t on t.active_version_id = p.template_version_id
    where w.current_preset_id = p_preset_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
      and not t.deleted
      and not t.deprecated
      and b.transition = 'start'
      and j.status = 'succeeded'
      and not prebuilds.is_expired(w.created_at, p.ttl_seconds, p.last_invalidated_at, now())
      and prebuilds.agents_ready(b.job_id)
    order by w.created_at, w.id
    limit 1
    for update of w skip locked;
    if not found then
        return null;
    end if;

    update prebuilds.workspaces
    set owner_id = p_owner_id, name = p_name
    where id = v_workspace_id;

    -- Initiated by the new owner: provisioners serve it first, and it never counts as a
    -- prebuild starting.
    perform prebuilds.queue_build(v_workspace_id, v_version_id, p_preset_id, 'start', p_owner_id);
    return v_workspace_id;
end;
$$;

comment on function prebuilds.claim_prebuild(uuid, uuid, text) is
'Gives the oldest eligible prebuild of a preset to p_owner_id under the name p_name and queues '
'its start build; returns the workspace id, or null when none is eligible.';

-- >>> db/functions/resume_preset.sql
-- Clear a preset's hard limit (and its backoff) by ignoring the builds before now (SPEC 4.2).
-- Called by operators, through `prebuilds resume-preset` or psql.

create function prebuilds.resume_preset(p_preset_id uuid)
returns bool
language sql
volatile
begin atomic
    with reset as (
        update prebuilds.presets as p
        set failures_reset_at = now()
        where p.id = p_preset_id
        returning p.id
    )

    select exists(select from reset);
end;

comment on function prebuilds.resume_preset(uuid) is
'Sets failures_reset_at to now, so earlier failures no longer count for the hard limit or '
'backoff; false when there is no such preset.';

-- >>> db/functions/acquire_job.sql
-- Provisioner side: take the next queued job (SPEC 4.5). Jobs initiated by people come before
-- the system user's prebuild jobs; `skip locked` lets many provisioners poll at once and makes a
-- job being canceled invisible. Used by the simulated provisioner and by tests.

create function prebuilds.acquire_job(p_worker_id text)
returns table (
    job_id uuid,
    workspace_id uuid,
    build_number int,
    transition text,
    preset_id uuid,
    initiator_id uuid
)
language sql
volatile
begin atomic
    with next_job as (
        select j.id
        from prebuilds.provisioner_jobs as j
        where j.started_at is null and j.canceled_at is null and j.completed_at is null
        order by j.initiator_id = prebuilds.system_user_id(), j.created_at, j.id
        limit 1
        for update skip locked
    ),

    taken as (
        update prebuilds.provisioner_jobs as j
        set started_at = now(), worker_id = p_worker_id
        from next_job
        where j.id = next_job.id
        returning j.id, j.initiator_id
    )

    select
        taken.id,
        b.workspace_id,
        b.build_number,
        b.transition,
        b.preset_id,
        taken.initiator_id
    from taken
    inner join prebuilds.workspace_builds as b on taken.id = b.job_id;
end;

comment on function prebuilds.acquire_job(text) is
'Marks the next queued job (people''s first, then oldest) as started by p_worker_id and returns '
'it; no row when the queue is empty.';

-- >>> db/functions/complete_job.sql
-- Provisioner side: finish a job (SPEC 4.5). A successful delete build marks its workspace
-- deleted, which removes it from the live prebuilds. Used by the simulated provisioner and tests.

create function prebuilds.complete_job(p_job_id uuid, p_error text default null)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_status text;
    v_workspace_id uuid;
    v_transition text;
begin
    update prebuilds.provisioner_jobs as j
    set completed_at = now(), error = nullif(p_error, '')
    where j.id = p_job_id and j.completed_at is null and j.started_at is not null
    returning j.status into v_status;
    if not found then
        if not exists (select from prebuilds.provisioner_jobs as j where j.id = p_job_id) then
            raise exception 'complete_job: no provisioner job with id %', p_job_id
                using errcode = 'no_data_found';
        end if;
        return false;  -- already completed, or never started
    end if;

    select b.workspace_id, b.transition into v_workspace_id, v_transition
    from prebuilds.workspace_builds as b
    where b.job_id = p_job_id;
    if v_status = 'succeeded' and v_transition = 'delete' then
        update prebuilds.workspaces set deleted = true where id = v_workspace_id;
    end if;
    return true;
end;
$$;

comment on function prebuilds.complete_job(uuid, text) is
'Completes a started job, failed when p_error is given; a successful delete marks the workspace '
'deleted. False when the job was already completed or never started.';

-- >>> db/functions/report_agent_lifecycle.sql
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

-- >>> db/data/system_user.sql
-- The system user that owns every unclaimed prebuild, with Coder's fixed id so tooling ports over.

insert into prebuilds.users (id, username, is_system)
values (prebuilds.system_user_id(), 'prebuilds', true);

-- >>> db/data/settings_row.sql
-- The single settings row, with the defaults of SPEC 2.

insert into prebuilds.settings (singleton) values (true);
