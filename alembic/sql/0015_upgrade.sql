-- Revision 0015. Written by hand above the marker, in sections (one per piece of work).

-- >>> applying an action in one statement (issue 9, apply throughput) -----------------------------
-- apply_action gains p_lock_timeout_ms and returns uuid (a new signature: the old one goes).
-- create_prebuild, queue_build and count_prebuild_event are re-created without `set search_path`
-- (same signatures; their callers are PL/pgSQL, so nothing depends on them).
-- db/grants/public.sql, re-frozen below, revokes PUBLIC's execute again.
drop function prebuilds.apply_action(bigint, int, text, uuid, uuid, text);
drop function prebuilds.create_prebuild(uuid);
drop function prebuilds.queue_build(uuid, uuid, uuid, text, uuid);
drop function prebuilds.count_prebuild_event(uuid, text);
-- track_latest_build gains plan_cache_mode = force_generic_plan (re-created with its trigger).
drop trigger workspace_builds_track_latest on prebuilds.workspace_builds;
drop function prebuilds.track_latest_build();
-- <<< applying an action in one statement ---------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/track_latest_build.sql
-- Trigger function: keeps workspaces.latest_build_* (the pointer and the build's own facts),
-- current_preset_id and delete_failures in step with the builds, so readers find a workspace's
-- state without scanning its history, and the plan without reading its build at all.
-- Called by the trigger workspace_builds_track_latest after every build insert.
-- Its update runs its cached generic plan (a primary-key lookup whatever the values): with
-- PL/pgSQL's default choice it was planned afresh for every build inserted, because the plan for
-- one row looks cheaper than the generic one (every claim, delete and create paid for it;
-- create_prebuild's own plan_cache_mode covered creates only; revision 0015).

create function prebuilds.track_latest_build()
returns trigger
language plpgsql
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
begin
    -- The comparison runs on the row version this update locks, so two builds inserted
    -- concurrently for one workspace still leave the higher number in place.
    update prebuilds.workspaces as w
    set latest_build_id = new.id,
        latest_build_number = new.build_number,
        latest_build_transition = new.transition,
        latest_build_created_at = new.created_at,
        latest_build_initiator_id = new.initiator_id,
        latest_build_job_id = new.job_id,
        current_preset_id = coalesce(new.preset_id, w.current_preset_id),
        -- Failed deletes in a row end the history: any other build ends the run. A delete build
        -- inserted already failed (an import, a test fixture) counts as one more.
        delete_failures = case
            when new.transition <> 'delete' then 0
            when exists (
                select from prebuilds.provisioner_jobs as j
                where j.id = new.job_id and j.status = 'failed'
            ) then w.delete_failures + 1
            else w.delete_failures
        end
    where w.id = new.workspace_id
      and (w.latest_build_number is null or w.latest_build_number < new.build_number);
    return null;
end;
$$;

comment on function prebuilds.track_latest_build() is
'Trigger: points workspaces.latest_build_id and current_preset_id at the newest build, copies '
'its transition, created_at, initiator_id and job_id, and resets delete_failures unless the new '
'build is a delete.';

-- >>> db/triggers/workspace_builds_track_latest.sql
-- Maintains the latest-build pointer on workspaces for every writer, not only our functions.
-- Builds are append-only: updating a build's number, workspace or preset is not supported.

create trigger workspace_builds_track_latest
after insert on prebuilds.workspace_builds
for each row execute function prebuilds.track_latest_build();

comment on trigger workspace_builds_track_latest on prebuilds.workspace_builds is
'Keeps workspaces.latest_build_* (the pointer and the build''s facts), current_preset_id and '
'delete_failures current.';

-- >>> db/functions/queue_build.sql
-- Internal: queue the next build of a workspace with a fresh pending job; returns the job id.
-- Callers (create, delete, claim) hold the workspace row lock, so the build number is stable.
-- No `set search_path`: reached only from functions that run with search_path '' (execute is
-- revoked from public), every name qualified; one configuration save and restore less per call.

create function prebuilds.queue_build(
    p_workspace_id uuid,
    p_template_version_id uuid,
    p_preset_id uuid,
    p_transition text,
    p_initiator_id uuid
)
returns uuid
language plpgsql
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

-- >>> db/functions/count_prebuild_event.sql
-- Internal: add one to a preset's lifetime counter, in the transaction of the event itself.
-- The row is the preset's shard for this backend (pg_backend_pid() % 16): claims of one preset
-- from concurrent connections update different rows instead of queueing on one until commit
-- (bench/claims.py measured it). Readers sum the shards. PL/pgSQL, not `begin atomic`, so the
-- upsert's plan is cached per backend: PostgreSQL 15 plans a SQL function's body on every call,
-- which cost every create and claim about 0.1 ms there (bench/apply_pieces.py --functions).
-- No `set search_path`: reached only from functions that run with search_path '' (execute is
-- revoked from public), every name qualified; one configuration save and restore less per call.

create function prebuilds.count_prebuild_event(p_preset_id uuid, p_event text)
returns void
language plpgsql
volatile
as $$
begin
    insert into prebuilds.preset_counters as c (
        preset_id, shard, created, failed, claimed, missed, hung_failed, delete_retried
    )
    values (
        p_preset_id,
        pg_catalog.pg_backend_pid() % 16,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int,
        (p_event = 'missed')::int,
        (p_event = 'hung_failed')::int,
        (p_event = 'delete_retried')::int
    )
    on conflict (preset_id, shard) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed,
            missed = c.missed + excluded.missed,
            hung_failed = c.hung_failed + excluded.hung_failed,
            delete_retried = c.delete_retried + excluded.delete_retried;
end;
$$;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed, claimed, missed, hung_failed or '
'delete_retried) for a preset, in the shard row of the calling backend.';

-- >>> db/functions/create_prebuild.sql
-- Apply a `create` action: one new prebuild for a preset (SPEC 4.5). Called by the driver.
-- Re-checks, under a lock on the preset row, that the preset is still active and still short;
-- the check reads only this preset's live prebuilds, so a create costs about its inserts.
-- Its statements always run their cached generic plans (plan_cache_mode below): with PL/pgSQL's
-- default choice the pool-size lookup (schedules), whose plan for one call looks cheaper than the
-- generic one once the time zone is folded in, was planned afresh on every create, 0.2-0.4 ms of
-- a create's ~0.7 ms of server time (bench/apply_pieces.py, README "Applying actions").
-- No `set search_path`: an internal helper, reached only through apply_action (security definer,
-- search_path ''), and every name in it is qualified; one setting fewer to apply and undo on
-- every create (revision 0015).

create function prebuilds.create_prebuild(p_preset_id uuid)
returns uuid
language plpgsql
set plan_cache_mode = force_generic_plan
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

    -- Running unexpired prebuilds plus those starting: what the pool will hold. The latest
    -- build's facts are read from the workspace (track_latest_build copies them), as the plan
    -- reads them; only each one's job is looked up.
    select count(*) into v_have
    from prebuilds.workspaces as w
    join prebuilds.provisioner_jobs as j on j.id = w.latest_build_job_id
    where w.current_preset_id = p_preset_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
      and w.latest_build_transition = 'start'
      and (
          (j.status = 'succeeded' and not prebuilds.is_expired(
              w.created_at, v_preset.ttl_seconds, v_preset.last_invalidated_at, now()))
          or (
              j.status in ('pending', 'running')
              and w.latest_build_initiator_id = prebuilds.system_user_id()
          )
      );
    -- The pool's size as the plan computes it (schedule, desired_instances, demand).
    if v_have >= (
        select s.desired
        from prebuilds.pool_size_at(
            p_preset_id, v_preset.desired_instances, v_preset.min_instances,
            v_preset.max_instances, v_preset.scheduling_timezone, true, now()
        ) as s
    ) then
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
    perform prebuilds.count_prebuild_event(p_preset_id, 'created');
    return v_workspace_id;
end;
$$;

comment on function prebuilds.create_prebuild(uuid) is
'Creates one prebuild (workspace, start build 1, pending job) for an active preset that is still '
'short of its desired size; returns the workspace id, or null when there is nothing to do any '
'more.';

-- >>> db/functions/apply_action.sql
-- Apply one planned action of a run and log its outcome, in one transaction (SPEC 4.6). Called
-- by the driver's write connections, one call per action, as the only statement of its
-- transaction. The action is applied only while the run's plan transaction still holds the
-- reconcile lock (checked after taking the write fence shared, so a later run's start_run waits
-- for this transaction): a driver whose plan connection died stops at its next action, whatever
-- its write connections can still reach.
--
-- Shaped for the apply's throughput (issue 9; README "Applying actions"): the lock wait bound
-- arrives as an argument and is set local here, before the first lock is asked for, so the
-- driver sends no separate statement for it; the run's row, the fence and the licence are one
-- statement (the fence first: a CASE evaluates its condition before its result); it returns one
-- value, not a row set.

create function prebuilds.apply_action(
    p_run_id bigint,
    p_seq int,
    p_action text,
    p_preset_id uuid,
    p_workspace_id uuid,
    p_reason text,
    p_lock_timeout_ms int
)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_licensed bool;
    v_lock_pid int;
    v_started timestamptz;
    v_workspace_id uuid;
    v_applied bool;
    v_setting text;
begin
    if p_lock_timeout_ms is not null then
        -- An assignment, not PERFORM: evaluated in place, no query of its own.
        v_setting := pg_catalog.set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    end if;
    select
        r.lock_pid,
        case
            when pg_catalog.pg_advisory_xact_lock_shared(
                prebuilds.write_fence_key(r.lock_key, 1),
                prebuilds.write_fence_key(r.lock_key, 2)
            ) is not null
                then prebuilds.reconcile_lock_held(r.lock_key, r.lock_token)
        end
    into v_lock_pid, v_licensed
    from prebuilds.reconciliation_runs as r
    where r.id = p_run_id;
    if not found then
        raise exception 'no reconciliation run %', p_run_id using errcode = 'PBL01';
    end if;
    -- Null (a run row without its lock key or token) is no licence either.
    if v_licensed is not true then
        raise exception 'run % lost the reconcile lock (its plan connection, backend %, is gone)',
            p_run_id, v_lock_pid
            using errcode = 'PBL01';
    end if;
    v_started := clock_timestamp();

    case p_action
        when 'create' then
            v_workspace_id := prebuilds.create_prebuild(p_preset_id);
            v_applied := v_workspace_id is not null;
        when 'delete' then
            v_applied := prebuilds.delete_prebuild(p_workspace_id);
        when 'cancel' then
            v_applied := prebuilds.cancel_prebuild(p_workspace_id);
        when 'fail_job' then
            v_applied := prebuilds.fail_job(p_workspace_id);
        else
            raise exception 'unknown action %', quote_literal(p_action)
                using errcode = 'invalid_parameter_value';
    end case;
    if p_action <> 'create' then
        v_workspace_id := p_workspace_id;
    end if;

    insert into prebuilds.reconciliation_action_log (
        run_id, seq, preset_id, action, workspace_id, reason, outcome, started_at
    )
    values (
        p_run_id, p_seq, p_preset_id, p_action, v_workspace_id, p_reason,
        case when v_applied then 'applied' else 'skipped' end, v_started
    );
    return case when v_applied then v_workspace_id end;
end;
$$;

comment on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text, int) is
'Applies one action (create, delete, cancel or fail_job) of run p_run_id with lock_timeout '
'p_lock_timeout_ms (null: as set) and logs its outcome, if the run still holds the reconcile '
'lock (else SQLSTATE PBL01); returns the workspace acted on (a create''s new one) when applied, '
'null when skipped.';

revoke execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text, int)
from public;
grant execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text, int)
to prebuilds_reconciler;

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
