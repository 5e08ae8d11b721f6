-- Downgrade of revision 0005 to 0004. Written by hand above the marker, in sections; below it,
-- the 0004 text of the objects 0005 re-created.

-- >>> provisioner: heartbeats and job details -----------------------------------------------------
-- acquire_job is restored below from its 0004 text (security invoker, as 0004 had it).
drop function prebuilds.heartbeat_job(uuid);
drop function prebuilds.acquire_job(text);
alter table prebuilds.provisioner_jobs drop column updated_at;
-- <<< provisioner ---------------------------------------------------------------------------------

-- >>> platform contract and roles (issue 8, items 2 and 3; SPEC 7) -------------------------------
-- The roles stay: they are cluster-wide and other databases may use them. Everything granted to
-- them in this database is revoked, so once no database uses them an administrator can
-- `drop role` them.
drop function prebuilds.set_reconciliation_paused(bool);
drop function prebuilds.invalidate_presets(text, text, text);
drop function prebuilds.register_user(text);
drop function prebuilds.delete_template(text, text);
drop function prebuilds.deprecate_template(text, text, bool);
drop function prebuilds.configure_preset(uuid, jsonb);
drop function prebuilds.publish_template_version(text, text, text, jsonb, bool);
drop function prebuilds.insert_presets(uuid, jsonb);
drop function prebuilds.write_preset_pool(uuid, jsonb);
drop function prebuilds.raise_check_violation(text, text);
drop function prebuilds.validate_pool_input(text, jsonb, bool);
drop function prebuilds.live_template_id(text, text);
drop function prebuilds.check_name_argument(text, text);
drop function prebuilds.prune_runs();
drop function prebuilds.log_actions(bigint, jsonb);

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

alter function prebuilds.complete_job(uuid, text) security invoker;
alter function prebuilds.report_agent_lifecycle(uuid, text, text) security invoker reset search_path;

revoke all on all tables in schema prebuilds
from prebuilds_reader, prebuilds_reconciler, prebuilds_platform, prebuilds_provisioner;
revoke all on all functions in schema prebuilds
from prebuilds_reader, prebuilds_reconciler, prebuilds_platform, prebuilds_provisioner;
revoke all on schema prebuilds
from prebuilds_reader, prebuilds_reconciler, prebuilds_platform, prebuilds_provisioner;
revoke all on public.alembic_version
from prebuilds_reader, prebuilds_reconciler, prebuilds_platform, prebuilds_provisioner;
grant execute on all functions in schema prebuilds to public;

alter table prebuilds.presets drop column parameters;
-- <<< platform contract and roles ------------------------------------------------------------------

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
    perform prebuilds.count_prebuild_event(p_preset_id, 'claimed');
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

-- >>> db/functions/take_reconcile_lock.sql
-- Take the reconciler's advisory lock for the rest of this transaction, if it is free, and a
-- token lock that identifies this transaction: an exclusive lock on (low half of the key, a
-- random int). The run row records the token; every write checks that it is still held
-- (reconcile_lock_held). Called by the driver's plan transaction.

create function prebuilds.take_reconcile_lock(p_key bigint)
returns table (acquired bool, holder_pid int, holder_token int)
language plpgsql
volatile
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
