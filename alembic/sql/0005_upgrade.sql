-- Revision 0005. Written by hand above the marker, in sections (one per piece of work).

-- >>> platform contract and roles (issue 8, items 2 and 3; SPEC 7) -------------------------------
-- The four group roles, cluster-wide: created when missing (as db/roles/ does), never dropped by
-- the downgrade (other databases of the cluster may use them).
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'prebuilds_reader') then
        create role prebuilds_reader nologin;
        comment on role prebuilds_reader is
        'prebuilds: reads the pools, the plan and the run history.';
    end if;
exception
    when duplicate_object or unique_violation then null;
end;
$$;
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'prebuilds_reconciler') then
        create role prebuilds_reconciler nologin;
        comment on role prebuilds_reconciler is
        'prebuilds: the reconciler; reads the plan, applies actions, records runs.';
    end if;
exception
    when duplicate_object or unique_violation then null;
end;
$$;
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'prebuilds_platform') then
        create role prebuilds_platform nologin;
        comment on role prebuilds_platform is
        'prebuilds: the platform; publishes versions, configures pools, claims prebuilds.';
    end if;
exception
    when duplicate_object or unique_violation then null;
end;
$$;
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'prebuilds_provisioner') then
        create role prebuilds_provisioner nologin;
        comment on role prebuilds_provisioner is
        'prebuilds: provisioners; acquire, heartbeat and complete jobs, report agents.';
    end if;
exception
    when duplicate_object or unique_violation then null;
end;
$$;

alter table prebuilds.presets
add column parameters jsonb not null default '{}' check (jsonb_typeof(parameters) = 'object');
comment on table prebuilds.presets is
'Named parameter sets of a template version. A preset with desired_instances (or schedules) has a'
' pool of prebuilds.';
comment on column prebuilds.presets.parameters is
'What the provisioner builds: the preset''s parameter values, a JSON object (SPEC 7). Immutable '
'once published, like the version.';

grant usage on schema prebuilds
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform, prebuilds_provisioner;
grant select on
prebuilds.organizations,
prebuilds.templates,
prebuilds.template_versions,
prebuilds.presets,
prebuilds.preset_schedules,
prebuilds.settings,
prebuilds.reconciliation_runs,
prebuilds.reconciliation_action_log,
prebuilds.preset_counters
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
-- Not in db/ (Alembic owns it): every driver command checks the revision first.
grant select on public.alembic_version
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform, prebuilds_provisioner;

-- Re-created below as security definer, with their grants.
drop view prebuilds.reconciliation_actions;
drop view prebuilds.preset_state;
drop function prebuilds.reconciliation_actions_at(timestamptz);
drop function prebuilds.preset_state_at(timestamptz);
drop function prebuilds.take_reconcile_lock(bigint);
drop function prebuilds.start_run(bigint, int, int, text, int, int, int, double precision);
drop function prebuilds.apply_action(bigint, int, text, uuid, uuid, text);
drop function prebuilds.finish_run(bigint, text, int, text);
drop function prebuilds.claim_prebuild(uuid, uuid, text);
drop function prebuilds.resume_preset(uuid);
-- <<< platform contract and roles ------------------------------------------------------------------

-- >>> provisioner: heartbeats and job details (issue 8, item 4; SPEC 5.2) ---------------------
-- A running job's heartbeat: acquire_job sets it, heartbeat_job advances it. Jobs already picked
-- up get their pick-up time, their last sign of life.
alter table prebuilds.provisioner_jobs add column updated_at timestamptz;
update prebuilds.provisioner_jobs set updated_at = started_at where started_at is not null;
comment on column prebuilds.provisioner_jobs.updated_at is
'Heartbeat: when the provisioner running the job last said it is alive (set by acquire_job and '
'heartbeat_job); null until picked up. A running job whose heartbeat is too old is hung.';

-- Re-created below: its result gains the names and parameters of what to build (and it becomes
-- security definer through db/grants/provisioner.sql, frozen after it).
drop function prebuilds.acquire_job(text);
-- <<< provisioner ---------------------------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

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
    creates_planned int,
    schedule_note text
)
language sql
stable
security definer
set search_path = ''
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
        pp.creates,
        pp.schedule_note
    from prebuilds.preset_plan_at(p_now) as pp
    order by
        pp.organization_name, pp.template_name, pp.template_version_name, pp.preset_name,
        pp.preset_id;
end;

comment on function prebuilds.preset_state_at(timestamptz) is
'Reconciliation state of every preset under consideration at p_now: counts, backoff, hard limit '
'and why creates are blocked.';

-- The views call it with the privileges of whoever reads them; it reads the tables as its owner.
revoke execute on function prebuilds.preset_state_at(timestamptz) from public;
grant execute on function prebuilds.preset_state_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/functions/reconciliation_actions_at.sql
-- The plan: every unit of work at p_now, in the order to apply it (SPEC 3, 4.4).
-- Cancels and deletes first, then creates interleaved across presets, then informational backoff
-- rows. Actions past settings.max_actions_per_cycle are `deferred`: the next cycles take them.
-- The driver reads it through the view reconciliation_actions; tests call it directly.

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
    backoff_until timestamptz,
    deferred bool
)
language sql
stable
security definer
set search_path = ''
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
    ),

    numbered as (
        select
            it.*,
            (
                row_number() over (
                    order by
                        it.phase,
                        -- Creates are interleaved: every preset's first, then every second, …
                        case when it.phase = 2 then it.n end,
                        it.organization_name, it.template_name, it.template_version_name,
                        it.preset_name, it.preset_id, it.n
                )
            )::int as seq
        from items as it
    )

    select
        nb.seq,
        nb.preset_id,
        nb.action,
        nb.workspace_id,
        nb.reason,
        nb.organization_name,
        nb.template_name,
        nb.template_version_name,
        nb.preset_name,
        nb.backoff_until,
        -- Work comes before the backoff notes, so its seq is its rank among the work.
        coalesce(
            nb.phase < 3
            and nb.seq > (select s.max_actions_per_cycle from prebuilds.settings as s),
            false
        ) as deferred
    from numbered as nb
    order by nb.seq;
end;

comment on function prebuilds.reconciliation_actions_at(timestamptz) is
'Every action the reconciler would take at p_now, in order: cancel, delete, create (interleaved '
'across presets) and informational backoff rows; deferred marks work past '
'settings.max_actions_per_cycle, left for later cycles.';

-- The views call it with the privileges of whoever reads them; it reads the tables as its owner.
revoke execute on function prebuilds.reconciliation_actions_at(timestamptz) from public;
grant execute on function prebuilds.reconciliation_actions_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

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
    ps.creates_planned,
    ps.schedule_note
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
comment on column prebuilds.preset_state.schedule_note is
'Which schedule sets desired now, or why the preset''s schedules are ignored (no time zone, '
'unknown zone, invalid or overlapping expressions); null when the preset has no schedules.';

grant select on prebuilds.preset_state
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

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
    ra.backoff_until,
    ra.deferred
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
comment on column prebuilds.reconciliation_actions.deferred is
'Past settings.max_actions_per_cycle: this cycle leaves it for the next ones.';

grant select on prebuilds.reconciliation_actions
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/functions/claim_prebuild.sql
-- Hand an eligible prebuild to a person (SPEC 4.5). Called by the platform when a user creates a
-- workspace from a preset. Takes the oldest eligible prebuild with `skip locked`: a prebuild
-- being deleted is locked by delete_prebuild and skipped, so a claimed workspace is never deleted.

create function prebuilds.claim_prebuild(p_preset_id uuid, p_owner_id uuid, p_name text)
returns uuid
language plpgsql
security definer
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
    perform prebuilds.count_prebuild_event(p_preset_id, 'claimed');
    return v_workspace_id;
end;
$$;

comment on function prebuilds.claim_prebuild(uuid, uuid, text) is
'Gives the oldest eligible prebuild of a preset to p_owner_id under the name p_name and queues '
'its start build; returns the workspace id, or null when none is eligible.';

revoke execute on function prebuilds.claim_prebuild(uuid, uuid, text) from public;
grant execute on function prebuilds.claim_prebuild(uuid, uuid, text) to prebuilds_platform;

-- >>> db/functions/resume_preset.sql
-- Clear a preset's hard limit (and its backoff) by ignoring the builds before now (SPEC 4.2).
-- Called by operators, through `prebuilds resume-preset` or psql.

create function prebuilds.resume_preset(p_preset_id uuid)
returns bool
language sql
volatile
security definer
set search_path = ''
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

revoke execute on function prebuilds.resume_preset(uuid) from public;
grant execute on function prebuilds.resume_preset(uuid) to prebuilds_platform;

-- >>> db/functions/acquire_job.sql
-- Provisioner side: take the next queued job (SPEC 4.5). Jobs initiated by people come before
-- the system user's prebuild jobs; `skip locked` lets many provisioners poll at once and makes a
-- job being canceled invisible. Returns everything a provisioner needs to build (names, the
-- preset's parameters), so a job costs one round trip to start. Called by `prebuilds provision`
-- (driver/provision.py), the simulated provisioner and tests.

create function prebuilds.acquire_job(p_worker_id text)
returns table (
    job_id uuid,
    workspace_id uuid,
    build_number int,
    transition text,
    preset_id uuid,
    initiator_id uuid,
    workspace_name text,
    owner_name text,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    parameters jsonb
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
        set started_at = now(), updated_at = now(), worker_id = p_worker_id
        from next_job
        where j.id = next_job.id
        returning j.id, j.initiator_id
    )

    select
        taken.id as job_id,
        b.workspace_id,
        b.build_number,
        b.transition,
        b.preset_id,
        taken.initiator_id,
        w.name as workspace_name,
        u.username as owner_name,
        o.name as organization_name,
        t.name as template_name,
        v.name as template_version_name,
        coalesce(p.name, '') as preset_name,
        coalesce(p.parameters, '{}') as parameters
    from taken
    inner join prebuilds.workspace_builds as b on taken.id = b.job_id
    inner join prebuilds.workspaces as w on b.workspace_id = w.id
    inner join prebuilds.users as u on w.owner_id = u.id
    inner join prebuilds.organizations as o on w.organization_id = o.id
    inner join prebuilds.templates as t on w.template_id = t.id
    inner join prebuilds.template_versions as v on b.template_version_id = v.id
    -- A build without a preset (a person's stop) builds the preset its workspace counts in.
    left join prebuilds.presets as p on coalesce(b.preset_id, w.current_preset_id) = p.id;
end;

comment on function prebuilds.acquire_job(text) is
'Marks the next queued job (people''s first, then oldest) as started by p_worker_id, with a first '
'heartbeat, and returns it with what to build: workspace, owner, organization, template, '
'version and preset names and the preset''s parameters (an empty name and {} without a preset); '
'no row when the queue is empty.';

-- >>> db/functions/heartbeat_job.sql
-- Provisioner side: "I am still running this job" (SPEC 5.2). Sets provisioner_jobs.updated_at,
-- which tells a slow but live job from a hung one. Called by `prebuilds provision` every
-- --heartbeat seconds while a job's command runs.

create function prebuilds.heartbeat_job(p_job_id uuid)
returns bool
language sql
volatile
begin atomic
    with beat as (
        update prebuilds.provisioner_jobs as j
        set updated_at = now()
        where
            j.id = p_job_id
            and j.started_at is not null
            and j.completed_at is null
            and j.canceled_at is null
        returning j.id
    )

    select exists(select from beat);
end;

comment on function prebuilds.heartbeat_job(uuid) is
'Records a heartbeat of a running job and returns true; false (and nothing written) when the job '
'is not running any more: completed (perhaps failed as hung), canceled or canceling, never '
'started, or unknown. On false the provisioner stops the job''s command.';

-- >>> db/functions/take_reconcile_lock.sql
-- Take the reconciler's advisory lock for the rest of this transaction, if it is free, and a
-- token lock that identifies this transaction: an exclusive lock on (low half of the key, a
-- random int). The run row records the token; every write checks that it is still held
-- (reconcile_lock_held). Called by the driver's plan transaction.

create function prebuilds.take_reconcile_lock(p_key bigint)
returns table (acquired bool, holder_pid int, holder_token int)
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    acquired := pg_catalog.pg_try_advisory_xact_lock(p_key);
    holder_pid := pg_catalog.pg_backend_pid();
    if acquired then
        loop
            holder_token := (1 + floor(random() * 2147483646))::int;
            -- Another live token with the same value (odds 1 in 2^31) is simply skipped.
            exit when pg_catalog.pg_try_advisory_xact_lock(
                prebuilds.write_fence_key(p_key, 2), holder_token
            );
        end loop;
    end if;
    return next;
end;
$$;

comment on function prebuilds.take_reconcile_lock(bigint) is
'Tries pg_try_advisory_xact_lock(p_key); when acquired, also locks a random token that '
'identifies this transaction and returns it with the backend pid, for the run to record.';

revoke execute on function prebuilds.take_reconcile_lock(bigint) from public;
grant execute on function prebuilds.take_reconcile_lock(bigint) to prebuilds_reconciler;

-- >>> db/functions/start_run.sql
-- Record the start of a reconciliation cycle (SPEC 4.6), called by the driver on a write
-- connection after it read the plan and before its first action. In one transaction:
--   1. the write fence: wait (exclusive lock on the fence key) until every write of an earlier
--      run that was already in flight has committed, so two runs never apply at the same time;
--   2. check that the plan transaction (its token p_lock_token) still holds the lock;
--   3. mark runs left `running` as abandoned: whoever ran them no longer holds the lock;
--   4. insert the run.

create function prebuilds.start_run(
    p_lock_key bigint,
    p_lock_pid int,
    p_lock_token int,
    p_hostname text,
    p_pid int,
    p_actions_planned int,
    p_actions_deferred int,
    p_plan_ms double precision
)
returns bigint
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_run_id bigint;
begin
    perform pg_catalog.pg_advisory_xact_lock(
        prebuilds.write_fence_key(p_lock_key, 1), prebuilds.write_fence_key(p_lock_key, 2)
    );
    if not prebuilds.reconcile_lock_held(p_lock_key, p_lock_token) then
        raise exception 'lost the reconcile lock before the run started (backend % is gone)',
            p_lock_pid
            using errcode = 'PBL01';
    end if;

    update prebuilds.reconciliation_runs as r
    set
        status = 'abandoned',
        finished_at = clock_timestamp(),
        actions_applied = c.applied,
        actions_skipped = c.skipped,
        actions_failed = c.failed,
        error = format(
            'abandoned: the driver (%s, pid %s) died or lost its connection mid-cycle',
            r.hostname, coalesce(r.pid::text, '?')
        )
    from (
        select
            r2.id,
            count(*) filter (where l.outcome = 'applied')::int as applied,
            count(*) filter (where l.outcome = 'skipped')::int as skipped,
            count(*) filter (where l.outcome = 'failed')::int as failed
        from prebuilds.reconciliation_runs as r2
        left join prebuilds.reconciliation_action_log as l on l.run_id = r2.id
        where r2.status = 'running'
        group by r2.id
    ) as c
    where r.id = c.id;

    insert into prebuilds.reconciliation_runs (
        hostname, pid, actions_planned, actions_deferred, plan_ms, lock_key, lock_pid, lock_token
    )
    values (
        p_hostname, p_pid, p_actions_planned, p_actions_deferred, p_plan_ms, p_lock_key,
        p_lock_pid, p_lock_token
    )
    returning id into v_run_id;
    return v_run_id;
end;
$$;

comment on function prebuilds.start_run(
    bigint, int, int, text, int, int, int, double precision
) is
'Starts a run of the plan transaction (token p_lock_token) that holds lock p_lock_key: '
'waits for earlier runs'' writes in flight, marks dead runs abandoned, returns the new run id. '
'Raises SQLSTATE PBL01 when the lock is no longer held.';

revoke execute on function prebuilds.start_run(
    bigint, int, int, text, int, int, int, double precision
) from public;
grant execute on function prebuilds.start_run(
    bigint, int, int, text, int, int, int, double precision
) to prebuilds_reconciler;

-- >>> db/functions/apply_action.sql
-- Apply one planned action of a run and log its outcome, in one transaction (SPEC 4.6). Called
-- by the driver's write connections, one call per action. The action is applied only while the
-- run's plan transaction still holds the reconcile lock (checked after taking the write fence
-- shared, so a later run's start_run waits for this transaction): a driver whose plan connection
-- died stops at its next action, whatever its write connections can still reach.

create function prebuilds.apply_action(
    p_run_id bigint,
    p_seq int,
    p_action text,
    p_preset_id uuid,
    p_workspace_id uuid,
    p_reason text
)
returns table (outcome text, workspace_id uuid)
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_run prebuilds.reconciliation_runs;
    v_started timestamptz;
begin
    select r.* into v_run from prebuilds.reconciliation_runs as r where r.id = p_run_id;
    if not found then
        raise exception 'no reconciliation run %', p_run_id using errcode = 'PBL01';
    end if;
    perform pg_catalog.pg_advisory_xact_lock_shared(
        prebuilds.write_fence_key(v_run.lock_key, 1), prebuilds.write_fence_key(v_run.lock_key, 2)
    );
    v_started := clock_timestamp();
    if not prebuilds.reconcile_lock_held(v_run.lock_key, v_run.lock_token) then
        raise exception 'run % lost the reconcile lock (its plan connection, backend %, is gone)',
            p_run_id, v_run.lock_pid
            using errcode = 'PBL01';
    end if;

    case p_action
        when 'create' then
            workspace_id := prebuilds.create_prebuild(p_preset_id);
            outcome := case when workspace_id is null then 'skipped' else 'applied' end;
        when 'delete' then
            workspace_id := p_workspace_id;
            outcome := case when prebuilds.delete_prebuild(p_workspace_id)
                            then 'applied' else 'skipped' end;
        when 'cancel' then
            workspace_id := p_workspace_id;
            outcome := case when prebuilds.cancel_prebuild(p_workspace_id)
                            then 'applied' else 'skipped' end;
        else
            raise exception 'unknown action %', quote_literal(p_action)
                using errcode = 'invalid_parameter_value';
    end case;

    insert into prebuilds.reconciliation_action_log (
        run_id, seq, preset_id, action, workspace_id, reason, outcome, started_at
    )
    values (
        p_run_id, p_seq, p_preset_id, p_action, workspace_id, p_reason, outcome, v_started
    );
    return next;
end;
$$;

comment on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text) is
'Applies one action (create, delete or cancel) of run p_run_id and logs its outcome, if the run '
'still holds the reconcile lock (else SQLSTATE PBL01); returns applied or skipped and the '
'workspace.';

revoke execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text) from public;
grant execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text)
to prebuilds_reconciler;

-- >>> db/functions/finish_run.sql
-- Record how a run ended. Called by the driver after its last action, also when the run lost
-- its lock (bookkeeping needs no licence). Applied and skipped are counted from the action log,
-- which commits with each action, so an action whose commit the driver never heard of still
-- counts; failed is the larger of the driver's count and the log's, since a failure whose log
-- row could not be written is known only to the driver.

create function prebuilds.finish_run(
    p_run_id bigint, p_status text, p_failed int, p_error text
)
returns void
language sql
volatile
security definer
set search_path = ''
begin atomic
    update prebuilds.reconciliation_runs as r
    set
        finished_at = clock_timestamp(),
        status = p_status,
        actions_applied = c.applied,
        actions_skipped = c.skipped,
        actions_failed = greatest(c.failed, p_failed),
        error = p_error
    from (
        select
            count(*) filter (where l.outcome = 'applied')::int as applied,
            count(*) filter (where l.outcome = 'skipped')::int as skipped,
            count(*) filter (where l.outcome = 'failed')::int as failed
        from prebuilds.reconciliation_action_log as l
        where l.run_id = p_run_id
    ) as c
    where r.id = p_run_id and r.status in ('running', 'abandoned');
end;

comment on function prebuilds.finish_run(bigint, text, int, text) is
'Ends run p_run_id with p_status, counting applied and skipped actions from the action log.';

revoke execute on function prebuilds.finish_run(bigint, text, int, text) from public;
grant execute on function prebuilds.finish_run(bigint, text, int, text) to prebuilds_reconciler;

-- >>> db/functions/log_actions.sql
-- Log the actions of a run that apply_action did not log: failed actions (after their own
-- transaction rolled back) and informational backoff notes. Called by the driver, in one
-- statement per batch; a row already logged (its action committed after all) is kept as it is.
-- Applied and skipped outcomes are written only by apply_action, with the action itself.

create function prebuilds.log_actions(p_run_id bigint, p_rows jsonb)
returns int
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_count int;
begin
    if jsonb_typeof(p_rows) is distinct from 'array' then
        raise exception 'log_actions: p_rows must be a JSON array of action rows'
            using errcode = 'invalid_parameter_value';
    end if;
    if exists (
        select from jsonb_to_recordset(p_rows) as r (action text, outcome text)
        where not coalesce(
            r.outcome = 'failed' and r.action <> 'backoff'
            or r.outcome = 'noted' and r.action = 'backoff',
            false
        )
    ) then
        raise exception 'log_actions: only failed actions and noted backoff rows are logged here '
            '(apply_action logs the others)'
            using errcode = 'invalid_parameter_value';
    end if;
    insert into prebuilds.reconciliation_action_log (
        run_id, seq, preset_id, action, workspace_id, reason, outcome, error
    )
    select p_run_id, r.seq, r.preset_id, r.action, r.workspace_id, r.reason, r.outcome, r.error
    from jsonb_to_recordset(p_rows) as r (
        seq int, preset_id uuid, action text, workspace_id uuid, reason text, outcome text,
        error text
    )
    on conflict (run_id, seq) do nothing;
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

comment on function prebuilds.log_actions(bigint, jsonb) is
'Logs failed actions and noted backoff rows of run p_run_id (p_rows: a JSON array of {seq, '
'preset_id, action, workspace_id, reason, outcome, error}); returns how many were new.';

revoke execute on function prebuilds.log_actions(bigint, jsonb) from public;
grant execute on function prebuilds.log_actions(bigint, jsonb) to prebuilds_reconciler;

-- >>> db/functions/prune_runs.sql
-- Retention (settings.run_retention): delete the oldest expired runs (and their action log), a
-- bounded batch per call, so a long backlog is worked off over a few cycles rather than in one
-- long transaction. Called by the driver after each run.

create function prebuilds.prune_runs()
returns int
language sql
volatile
security definer
set search_path = ''
begin atomic
    with
    expired as (
        select r.id
        from prebuilds.reconciliation_runs as r
        where r.started_at < now() - (select s.run_retention from prebuilds.settings as s)
        order by r.id
        limit 1000
    ),

    pruned as (
        delete from prebuilds.reconciliation_runs as r
        using expired
        where r.id = expired.id
        returning r.id
    )

    select count(*)::int from pruned;
end;

comment on function prebuilds.prune_runs() is
'Deletes up to 1000 of the oldest runs older than settings.run_retention; returns how many.';

revoke execute on function prebuilds.prune_runs() from public;
grant execute on function prebuilds.prune_runs() to prebuilds_reconciler;

-- >>> db/grants/provisioner.sql
-- What the role prebuilds_provisioner may call (SPEC 7): acquire jobs, complete them, report
-- agent lifecycle (heartbeat_job joins them with SPEC 5.2). Kept apart from the functions' own
-- files, whose bodies change with the provisioner work: these statements hold for any body.

alter function prebuilds.acquire_job(text) security definer set search_path = '';
revoke execute on function prebuilds.acquire_job(text) from public;
grant execute on function prebuilds.acquire_job(text) to prebuilds_provisioner;

alter function prebuilds.complete_job(uuid, text) security definer set search_path = '';
revoke execute on function prebuilds.complete_job(uuid, text) from public;
grant execute on function prebuilds.complete_job(uuid, text) to prebuilds_provisioner;

alter function prebuilds.report_agent_lifecycle(uuid, text, text)
security definer set search_path = '';
revoke execute on function prebuilds.report_agent_lifecycle(uuid, text, text) from public;
grant execute on function prebuilds.report_agent_lifecycle(uuid, text, text)
to prebuilds_provisioner;

alter function prebuilds.heartbeat_job(uuid) security definer set search_path = '';
revoke execute on function prebuilds.heartbeat_job(uuid) from public;
grant execute on function prebuilds.heartbeat_job(uuid) to prebuilds_provisioner;

-- >>> db/functions/check_name_argument.sql
-- A name passed to a platform function (organization, template, version, username): 1 to 200
-- characters, no control characters, the same rule as the command line's. Called by the
-- functions of the platform's contract (SPEC 7) before they write anything.

create function prebuilds.check_name_argument(p_what text, p_value text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_control text := substring(p_value from '[[:cntrl:]]');
begin
    if p_value is null then
        raise exception 'invalid %: must not be null', p_what
            using errcode = 'invalid_parameter_value';
    end if;
    if p_value = '' or char_length(p_value) > 200 then
        raise exception 'invalid %: must be 1 to 200 characters (got %)', p_what,
            char_length(p_value)
            using errcode = 'invalid_parameter_value';
    end if;
    if v_control is not null then
        raise exception 'invalid %: must not contain control characters (% at position %)',
            p_what, pg_catalog.to_json(v_control), position(v_control in p_value)
            using errcode = 'invalid_parameter_value';
    end if;
end;
$$;

comment on function prebuilds.check_name_argument(text, text) is
'Raises unless p_value is 1 to 200 characters without control characters; p_what names it in '
'the message.';

-- >>> db/functions/live_template_id.sql
-- The live (non-deleted) template p_template of organization p_organization, or an error naming
-- what does not exist. Called by the platform functions that take a template by name.

create function prebuilds.live_template_id(p_organization text, p_template text)
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
    v_template_id uuid;
begin
    perform prebuilds.check_name_argument('organization name', p_organization);
    perform prebuilds.check_name_argument('template name', p_template);
    if not exists (select from prebuilds.organizations as o where o.name = p_organization) then
        raise exception 'no such organization %', quote_literal(p_organization)
            using errcode = 'no_data_found';
    end if;
    select t.id into v_template_id
    from prebuilds.templates as t
    join prebuilds.organizations as o on o.id = t.organization_id
    where o.name = p_organization and t.name = p_template and not t.deleted;
    if not found then
        raise exception 'no such template % in organization %', quote_literal(p_template),
            quote_literal(p_organization)
            using errcode = 'no_data_found';
    end if;
    return v_template_id;
end;
$$;

comment on function prebuilds.live_template_id(text, text) is
'Id of the non-deleted template p_template of organization p_organization; raises naming what '
'does not exist.';

-- >>> db/functions/validate_pool_input.sql
-- The shape of one preset as a platform passes it in JSON (SPEC 7): its keys and their JSON
-- types. Raises `invalid preset <p_preset>: <field> …`; the rules on values (bounds, time zones,
-- cron expressions, overlaps) are the tables' own, checked when written by write_preset_pool.
-- Called by publish_template_version (p_publishing: name and parameters allowed) and
-- configure_preset (pool settings only).

create function prebuilds.validate_pool_input(p_preset text, p_pool jsonb, p_publishing bool)
returns void
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_pool_keys constant text[] := array[
        'desired_instances', 'ttl_seconds', 'scheduling_timezone', 'schedules'
    ];
    v_version_keys constant text[] := array['name', 'parameters'];
    v_allowed text[] := case when p_publishing then v_version_keys else '{}' end || v_pool_keys;
    v_key text;
    v_value jsonb;
    v_schedule jsonb;
    v_n bigint;
    v_problem text;
begin
    if jsonb_typeof(p_pool) is distinct from 'object' then
        v_problem := format(
            'must be a JSON object with the keys %s (got %s)',
            array_to_string(v_allowed, ', '), coalesce(left(p_pool::text, 60), 'null')
        );
    end if;
    if v_problem is null then
        for v_key in select k from jsonb_object_keys(p_pool) as k order by k loop
            if v_key in ('min_instances', 'max_instances') then
                v_problem := format('%s is not supported yet (SPEC §6.3)', v_key);
            elsif v_key = any(v_version_keys) and not p_publishing then
                v_problem := format(
                    '%s cannot be changed: versions are immutable (publish a new version)', v_key
                );
            elsif not v_key = any(v_allowed) then
                v_problem := format(
                    'unknown key %s (expected %s)',
                    pg_catalog.to_json(v_key), array_to_string(v_allowed, ', ')
                );
            end if;
            exit when v_problem is not null;
        end loop;
    end if;
    if v_problem is null and p_publishing then
        v_value := p_pool -> 'name';
        if v_value is null then
            v_problem := 'name is required';
        elsif jsonb_typeof(v_value) <> 'string' then
            v_problem := format('name must be a string (got %s)', left(v_value::text, 60));
        end if;
        v_value := p_pool -> 'parameters';
        if v_problem is null and jsonb_typeof(v_value) <> 'object' then
            v_problem := format(
                'parameters must be a JSON object (got %s)', left(v_value::text, 60)
            );
        end if;
    end if;
    if v_problem is null then
        foreach v_key in array array['desired_instances', 'ttl_seconds'] loop
            v_value := p_pool -> v_key;
            if jsonb_typeof(v_value) <> 'null' and (
                jsonb_typeof(v_value) <> 'number' or v_value::text::numeric % 1 <> 0
            ) then
                v_problem := format(
                    '%s must be a whole number or null (got %s)', v_key, left(v_value::text, 60)
                );
            elsif jsonb_typeof(v_value) = 'number'
                and abs(v_value::text::numeric) > 2147483647 then
                v_problem := format('%s is out of range (got %s)', v_key, left(v_value::text, 60));
            end if;
            exit when v_problem is not null;
        end loop;
    end if;
    v_value := p_pool -> 'scheduling_timezone';
    if v_problem is null and jsonb_typeof(v_value) not in ('string', 'null') then
        v_problem := format(
            'scheduling_timezone must be a string, an IANA time zone name (got %s)',
            left(v_value::text, 60)
        );
    end if;
    v_value := p_pool -> 'schedules';
    if v_problem is null and jsonb_typeof(v_value) not in ('array', 'null') then
        v_problem := format(
            'schedules must be a list of {"cron", "instances"} objects or null (got %s)',
            left(v_value::text, 60)
        );
    end if;
    if v_problem is null and jsonb_typeof(v_value) = 'array' then
        for v_schedule, v_n in
            select e.value, e.ordinality from jsonb_array_elements(v_value) with ordinality as e
        loop
            if jsonb_typeof(v_schedule) <> 'object' then
                v_problem := format('must be an object {"cron", "instances"} (got %s)',
                    left(v_schedule::text, 60));
            elsif exists (
                select from jsonb_object_keys(v_schedule) as k where k not in ('cron', 'instances')
            ) then
                v_problem := format(
                    'unknown key %s (expected cron, instances)',
                    (select pg_catalog.to_json(k) from jsonb_object_keys(v_schedule) as k
                     where k not in ('cron', 'instances') order by k limit 1)
                );
            elsif jsonb_typeof(v_schedule -> 'cron') is distinct from 'string' then
                v_problem := format(
                    'cron must be a string such as "* 9-18 * * 1-5" (got %s)',
                    coalesce(left((v_schedule -> 'cron')::text, 60), 'nothing')
                );
            elsif jsonb_typeof(v_schedule -> 'instances') is distinct from 'number'
                or (v_schedule ->> 'instances')::numeric % 1 <> 0 then
                v_problem := format(
                    'instances must be a whole number (got %s)',
                    coalesce(left((v_schedule -> 'instances')::text, 60), 'nothing')
                );
            elsif (v_schedule ->> 'instances')::numeric not between 0 and 10000 then
                -- The bound of preset_schedules.desired_instances (revision 0004).
                v_problem := format(
                    'instances must be between 0 and 10000 (got %s)', v_schedule ->> 'instances'
                );
            end if;
            if v_problem is not null then
                v_problem := format('schedule #%s: %s', v_n, v_problem);
                exit;
            end if;
        end loop;
    end if;
    if v_problem is not null then
        raise exception 'invalid preset %: %', p_preset, v_problem
            using errcode = 'invalid_parameter_value';
    end if;
end;
$$;

comment on function prebuilds.validate_pool_input(text, jsonb, bool) is
'Raises unless p_pool is a preset (p_publishing) or a preset''s pool settings in the JSON shape of '
'SPEC 7, naming the preset p_preset and the field.';

-- >>> db/functions/raise_check_violation.sql
-- Re-raise a validation error with a message that names more (the preset, the field), keeping
-- the original hint when there was one. Called by write_preset_pool.

create function prebuilds.raise_check_violation(p_message text, p_hint text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
    if coalesce(p_hint, '') = '' then
        raise exception '%', p_message using errcode = 'check_violation';
    end if;
    raise exception '%', p_message using errcode = 'check_violation', hint = p_hint;
end;
$$;

comment on function prebuilds.raise_check_violation(text, text) is
'Raises check_violation with message p_message and hint p_hint (none when empty).';

-- >>> db/functions/write_preset_pool.sql
-- Write a preset's pool settings from JSON that validate_pool_input accepted (SPEC 7): only the
-- keys given; JSON null clears (no pool, no TTL, no time zone, no schedules); `schedules` given
-- replaces the preset's schedules. The values are checked by the tables' own rules (the triggers
-- presets_check_pool, presets_check_timezone and preset_schedules_check); their messages gain the
-- preset and the field here. Called by publish_template_version and configure_preset, whose
-- transaction an error rolls back whole.

create function prebuilds.write_preset_pool(p_preset_id uuid, p_pool jsonb)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_label text;
    v_schedule jsonb;
    v_n bigint;
    v_message text;
    v_hint text;
begin
    select quote_literal(left(p.name, 60)) into strict v_label
    from prebuilds.presets as p where p.id = p_preset_id;

    if p_pool ? 'desired_instances' or p_pool ? 'ttl_seconds' then
        -- presets_check_pool names the preset and the column.
        update prebuilds.presets as p
        set
            desired_instances = case
                when p_pool ? 'desired_instances' then (p_pool ->> 'desired_instances')::int
                else p.desired_instances
            end,
            ttl_seconds = case
                when p_pool ? 'ttl_seconds' then (p_pool ->> 'ttl_seconds')::int
                else p.ttl_seconds
            end
        where p.id = p_preset_id;
    end if;

    if p_pool ? 'scheduling_timezone' then
        begin
            update prebuilds.presets as p
            set scheduling_timezone = coalesce(p_pool ->> 'scheduling_timezone', '')
            where p.id = p_preset_id;
        exception
            when check_violation then
                get stacked diagnostics v_message = message_text, v_hint = pg_exception_hint;
                -- presets_check_timezone says `invalid preset 'x': <why>`: name the field.
                perform prebuilds.raise_check_violation(
                    format(
                        'invalid preset %s: scheduling_timezone %s', v_label,
                        regexp_replace(v_message, '^invalid preset E?''(?:[^'']|'''')*'': ', '')
                    ),
                    v_hint
                );
        end;
    end if;

    if p_pool ? 'schedules' then
        delete from prebuilds.preset_schedules as s where s.preset_id = p_preset_id;
        for v_schedule, v_n in
            select e.value, e.ordinality
            from jsonb_array_elements(
                case when jsonb_typeof(p_pool -> 'schedules') = 'array'
                    then p_pool -> 'schedules' else '[]' end
            ) with ordinality as e
        loop
            begin
                insert into prebuilds.preset_schedules (
                    preset_id, cron_expression, desired_instances
                )
                values (p_preset_id, v_schedule ->> 'cron', (v_schedule ->> 'instances')::int);
            exception
                when check_violation then
                    get stacked diagnostics v_message = message_text, v_hint = pg_exception_hint;
                    perform prebuilds.raise_check_violation(
                        format('invalid preset %s: schedule #%s: %s', v_label, v_n, v_message),
                        v_hint
                    );
            end;
        end loop;
    end if;

    if (p_pool ? 'schedules' or p_pool ? 'scheduling_timezone') and exists (
        select from prebuilds.preset_schedules as s
        join prebuilds.presets as p on p.id = s.preset_id
        where s.preset_id = p_preset_id and p.scheduling_timezone = ''
    ) then
        -- The plan would ignore them (SPEC 4.3); a platform that sends them means something.
        raise exception 'invalid preset %: schedules need a scheduling_timezone (an IANA name '
            'such as Europe/Paris)', v_label
            using errcode = 'invalid_parameter_value';
    end if;
end;
$$;

comment on function prebuilds.write_preset_pool(uuid, jsonb) is
'Writes the pool settings given in p_pool (validated by validate_pool_input) to preset '
'p_preset_id: desired_instances, ttl_seconds, scheduling_timezone, schedules (replaced).';

-- >>> db/functions/insert_presets.sql
-- Insert the presets of a new template version from the JSON list publish_template_version
-- validated, with their pool settings and schedules (write_preset_pool). Called by
-- publish_template_version only.

create function prebuilds.insert_presets(p_version_id uuid, p_presets jsonb)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_preset jsonb;
    v_preset_id uuid;
begin
    for v_preset in select e.value from jsonb_array_elements(p_presets) as e loop
        -- presets_check_pool names a preset whose name is empty or too long.
        insert into prebuilds.presets (template_version_id, name, parameters)
        values (p_version_id, v_preset ->> 'name', coalesce(v_preset -> 'parameters', '{}'))
        returning id into v_preset_id;
        perform prebuilds.write_preset_pool(v_preset_id, v_preset - 'name' - 'parameters');
    end loop;
end;
$$;

comment on function prebuilds.insert_presets(uuid, jsonb) is
'Inserts the presets of p_presets (validated JSON, SPEC 7) into version p_version_id with their '
'pool settings and schedules.';

-- >>> db/functions/publish_template_version.sql
-- Publish a template version and its presets (SPEC 7), the platform's one call per version:
-- creates the organization and the template when new, the version, its presets and their
-- schedules, in one transaction, and makes it the active version when p_activate. Versions are
-- immutable: publishing the same version again with the same presets (names and parameters) is a
-- no-op that returns the same id (and still activates it when asked); different presets are an
-- error. Bad input is rejected as a whole, with a message naming the preset and the field.
-- Called by the platform (role prebuilds_platform).

create function prebuilds.publish_template_version(
    p_organization text,
    p_template text,
    p_version text,
    p_presets jsonb,
    p_activate bool default true
)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_organization_id uuid;
    v_template_id uuid;
    v_version_id uuid;
    v_preset jsonb;
    v_n bigint;
    v_label text;
    v_names text[] := '{}';
    v_given jsonb;
    v_published jsonb;
    v_scratch_id uuid;
begin
    perform prebuilds.check_name_argument('organization name', p_organization);
    perform prebuilds.check_name_argument('template name', p_template);
    perform prebuilds.check_name_argument('version name', p_version);
    if p_activate is null then
        raise exception 'invalid p_activate: must be true or false, not null'
            using errcode = 'invalid_parameter_value';
    end if;
    if jsonb_typeof(p_presets) is distinct from 'array' then
        raise exception 'invalid presets: must be a JSON array of preset objects (got %)',
            coalesce(left(p_presets::text, 60), 'null')
            using errcode = 'invalid_parameter_value';
    end if;
    -- The shape of every preset first: nothing is written before the whole input looks right.
    for v_preset, v_n in
        select e.value, e.ordinality from jsonb_array_elements(p_presets) with ordinality as e
    loop
        v_label := case
            when jsonb_typeof(v_preset -> 'name') = 'string'
                then quote_literal(left(v_preset ->> 'name', 60))
            else '#' || v_n
        end;
        perform prebuilds.validate_pool_input(v_label, v_preset, true);
        if v_preset ->> 'name' = any(v_names) then
            raise exception 'invalid preset %: name is used by more than one preset', v_label
                using errcode = 'invalid_parameter_value';
        end if;
        v_names := v_names || (v_preset ->> 'name');
    end loop;

    insert into prebuilds.organizations (name) values (p_organization)
    on conflict (name) do nothing;
    select o.id into strict v_organization_id
    from prebuilds.organizations as o where o.name = p_organization;

    insert into prebuilds.templates (organization_id, name)
    values (v_organization_id, p_template)
    on conflict (organization_id, name) where not deleted do nothing;
    select t.id into strict v_template_id
    from prebuilds.templates as t
    where t.organization_id = v_organization_id and t.name = p_template and not t.deleted;

    insert into prebuilds.template_versions (template_id, name)
    values (v_template_id, p_version)
    on conflict (template_id, name) do nothing
    returning id into v_version_id;

    if v_version_id is not null then
        perform prebuilds.insert_presets(v_version_id, p_presets);
    else
        select v.id into strict v_version_id
        from prebuilds.template_versions as v
        where v.template_id = v_template_id and v.name = p_version;
        -- The values are checked as a first publish would check them (on a scratch version that
        -- is rolled back), so a bad retry is refused like a bad first call.
        begin
            insert into prebuilds.template_versions (template_id, name)
            values (v_template_id, 'scratch ' || gen_random_uuid())
            returning id into v_scratch_id;
            perform prebuilds.insert_presets(v_scratch_id, p_presets);
            raise exception using errcode = 'PBP00';
        exception
            when sqlstate 'PBP00' then null;
        end;
        select coalesce(jsonb_object_agg(e.value ->> 'name', coalesce(e.value -> 'parameters',
            '{}')), '{}')
        into v_given
        from jsonb_array_elements(p_presets) as e;
        select coalesce(jsonb_object_agg(p.name, p.parameters), '{}') into v_published
        from prebuilds.presets as p where p.template_version_id = v_version_id;
        if v_given <> v_published then
            raise exception
                'version % of template % in organization % is already published with other '
                'presets: versions are immutable (publish a new version)',
                quote_literal(p_version), quote_literal(p_template), quote_literal(p_organization)
                using errcode = 'invalid_parameter_value',
                      detail = format(
                          'published presets and parameters: %s; given: %s',
                          left(v_published::text, 400), left(v_given::text, 400)
                      );
        end if;
    end if;

    if p_activate then
        update prebuilds.templates as t
        set active_version_id = v_version_id
        where t.id = v_template_id and t.active_version_id is distinct from v_version_id;
    end if;
    return v_version_id;
end;
$$;

comment on function prebuilds.publish_template_version(text, text, text, jsonb, bool) is
'Creates version p_version of template p_template in organization p_organization (both created '
'when new) with the presets of p_presets, and activates it when p_activate; returns its id. The '
'same version with the same presets again is a no-op; other presets are an error.';

revoke execute on function prebuilds.publish_template_version(text, text, text, jsonb, bool)
from public;
grant execute on function prebuilds.publish_template_version(text, text, text, jsonb, bool)
to prebuilds_platform;

-- >>> db/functions/configure_preset.sql
-- Change a preset's pool settings without publishing a version (SPEC 7): desired_instances,
-- ttl_seconds, scheduling_timezone, schedules. Keys not given are left alone, JSON null clears,
-- schedules given replace the preset's schedules. The same validation and messages as
-- publish_template_version; an error changes nothing. Called by the platform.

create function prebuilds.configure_preset(p_preset_id uuid, p_pool jsonb)
returns void
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_label text;
begin
    select quote_literal(left(p.name, 60)) into v_label
    from prebuilds.presets as p where p.id = p_preset_id
    for no key update;
    if not found then
        raise exception 'no preset with id %', coalesce(p_preset_id::text, 'null')
            using errcode = 'no_data_found';
    end if;
    perform prebuilds.validate_pool_input(v_label, p_pool, false);
    perform prebuilds.write_preset_pool(p_preset_id, p_pool);
end;
$$;

comment on function prebuilds.configure_preset(uuid, jsonb) is
'Sets the pool settings given in p_pool (desired_instances, ttl_seconds, scheduling_timezone, '
'schedules) of preset p_preset_id; keys not given are left alone, null clears.';

revoke execute on function prebuilds.configure_preset(uuid, jsonb) from public;
grant execute on function prebuilds.configure_preset(uuid, jsonb) to prebuilds_platform;

-- >>> db/functions/deprecate_template.sql
-- Deprecate a template (or undo it with p_deprecated = false): its workspaces stay, its presets
-- get no new prebuilds and their prebuilds are deleted (SPEC 4.1). Called by the platform.

create function prebuilds.deprecate_template(
    p_organization text, p_template text, p_deprecated bool default true
)
returns void
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_template_id uuid := prebuilds.live_template_id(p_organization, p_template);
begin
    if p_deprecated is null then
        raise exception 'invalid p_deprecated: must be true or false, not null'
            using errcode = 'invalid_parameter_value';
    end if;
    update prebuilds.templates as t
    set deprecated = p_deprecated
    where t.id = v_template_id and t.deprecated <> p_deprecated;
end;
$$;

comment on function prebuilds.deprecate_template(text, text, bool) is
'Sets templates.deprecated of template p_template in organization p_organization to '
'p_deprecated; raises when there is no such live template.';

revoke execute on function prebuilds.deprecate_template(text, text, bool) from public;
grant execute on function prebuilds.deprecate_template(text, text, bool) to prebuilds_platform;

-- >>> db/functions/delete_template.sql
-- Delete a template (soft: templates.deleted = true). Its presets become inactive, so the next
-- cycles cancel their queued builds and delete their prebuilds (SPEC 4.1); its name can be used
-- again. Safe to call twice: false when there is no live template of that name any more. Called
-- by the platform.

create function prebuilds.delete_template(p_organization text, p_template text)
returns bool
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    perform prebuilds.check_name_argument('organization name', p_organization);
    perform prebuilds.check_name_argument('template name', p_template);
    update prebuilds.templates as t
    set deleted = true
    from prebuilds.organizations as o
    where o.id = t.organization_id and o.name = p_organization and t.name = p_template
      and not t.deleted;
    if found then
        return true;
    end if;
    -- Nothing to delete: already deleted (a retry), or a name that never existed (a mistake).
    if not exists (
        select from prebuilds.templates as t
        join prebuilds.organizations as o on o.id = t.organization_id
        where o.name = p_organization and t.name = p_template
    ) then
        perform prebuilds.live_template_id(p_organization, p_template);
    end if;
    return false;
end;
$$;

comment on function prebuilds.delete_template(text, text) is
'Soft-deletes template p_template of organization p_organization; false when it is already '
'deleted, an error when it never existed.';

revoke execute on function prebuilds.delete_template(text, text) from public;
grant execute on function prebuilds.delete_template(text, text) to prebuilds_platform;

-- >>> db/functions/register_user.sql
-- Register a person who may own workspaces (claim a prebuild); returns the user's id, the same
-- one every time for the same username. Called by the platform.

create function prebuilds.register_user(p_username text)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_id uuid;
    v_system bool;
begin
    perform prebuilds.check_name_argument('username', p_username);
    insert into prebuilds.users (username) values (p_username)
    on conflict (username) do nothing;
    select u.id, u.is_system into strict v_id, v_system
    from prebuilds.users as u where u.username = p_username;
    if v_system then
        raise exception 'invalid username: % is a system account', quote_literal(p_username)
            using errcode = 'invalid_parameter_value';
    end if;
    return v_id;
end;
$$;

comment on function prebuilds.register_user(text) is
'Id of the user p_username, created when new (never a system account).';

revoke execute on function prebuilds.register_user(text) from public;
grant execute on function prebuilds.register_user(text) to prebuilds_platform;

-- >>> db/functions/invalidate_presets.sql
-- Invalidate the presets of a template's active version (all, or the one named p_preset): their
-- prebuilds created before now expire, and the next cycle replaces them (SPEC 4.2). For a new
-- image under an unchanged version. Called by the platform and `prebuilds invalidate`.

create function prebuilds.invalidate_presets(
    p_organization text, p_template text, p_preset text default null
)
returns int
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_template_id uuid := prebuilds.live_template_id(p_organization, p_template);
    v_count int;
begin
    if p_preset is not null then
        perform prebuilds.check_name_argument('preset name', p_preset);
    end if;
    update prebuilds.presets as p
    set last_invalidated_at = now()
    from prebuilds.templates as t
    where t.id = v_template_id and p.template_version_id = t.active_version_id
      and (p_preset is null or p.name = p_preset);
    get diagnostics v_count = row_count;
    if p_preset is not null and v_count = 0 then
        raise exception 'no preset % on the active version of template % in organization %',
            quote_literal(p_preset), quote_literal(p_template), quote_literal(p_organization)
            using errcode = 'no_data_found';
    end if;
    return v_count;
end;
$$;

comment on function prebuilds.invalidate_presets(text, text, text) is
'Sets last_invalidated_at to now for the presets (or preset p_preset) of the active version of '
'template p_template; returns how many.';

revoke execute on function prebuilds.invalidate_presets(text, text, text) from public;
grant execute on function prebuilds.invalidate_presets(text, text, text) to prebuilds_platform;

-- >>> db/functions/set_reconciliation_paused.sql
-- Pause (true) or resume (false) reconciliation for the whole deployment: while paused, cycles
-- plan and apply nothing (SPEC 4.4). Called by the platform and `prebuilds pause` / `resume`.

create function prebuilds.set_reconciliation_paused(p_paused bool)
returns bool
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_paused bool;
begin
    if p_paused is null then
        raise exception 'invalid p_paused: must be true or false, not null'
            using errcode = 'invalid_parameter_value';
    end if;
    update prebuilds.settings as s
    set reconciliation_paused = p_paused
    returning s.reconciliation_paused into v_paused;
    return v_paused;
end;
$$;

comment on function prebuilds.set_reconciliation_paused(bool) is
'Sets settings.reconciliation_paused; returns the value now in force, null when the settings row '
'is missing.';

revoke execute on function prebuilds.set_reconciliation_paused(bool) from public;
grant execute on function prebuilds.set_reconciliation_paused(bool) to prebuilds_platform;

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
