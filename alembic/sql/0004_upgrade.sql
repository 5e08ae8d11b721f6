-- Revision 0004: one writer even when the plan connection dies (runs record the lock holder;
-- every action checks it behind a write fence; dead runs become abandoned), cycles bounded by
-- settings.max_actions_per_cycle, pool sizes bounded, the settings row kept, time zones limited
-- to IANA Area/Location names. Written by hand above the marker.

alter table prebuilds.reconciliation_runs
drop constraint reconciliation_runs_status_check,
add constraint reconciliation_runs_status_check check (
    status in ('running', 'succeeded', 'failed', 'paused', 'interrupted', 'abandoned')
),
add column lock_key bigint,
add column lock_pid int,
add column lock_token int,
add column actions_deferred int not null default 0 check (actions_deferred >= 0);

comment on table prebuilds.reconciliation_runs is
'Reconciliation cycles, one row each. A run whose driver died is marked abandoned by the next '
'cycle that takes the lock.';
comment on column prebuilds.reconciliation_runs.status is
'running, succeeded (every action applied or skipped), failed (an action or the cycle failed, '
'or it lost the lock), paused (nothing planned: reconciliation is paused), interrupted (stopped '
'by a signal after the action in flight) or abandoned (its driver died; found by a later '
'cycle, with the counts of its action log).';
comment on column prebuilds.reconciliation_runs.lock_key is
'The advisory lock this run held (driver/locks.py RECONCILE).';
comment on column prebuilds.reconciliation_runs.lock_pid is
'Backend pid of the connection that held the lock (for operators).';
comment on column prebuilds.reconciliation_runs.lock_token is
'Random token the lock transaction holds locked (see take_reconcile_lock); every action checks '
'it is still held.';
comment on column prebuilds.reconciliation_runs.actions_deferred is
'Actions left for later cycles by settings.max_actions_per_cycle.';

alter table prebuilds.reconciliation_action_log add column started_at timestamptz;
comment on column prebuilds.reconciliation_action_log.started_at is
'When the action passed its lock check and started (null for failures logged afterwards).';

alter table prebuilds.settings
drop constraint settings_max_pending_creates_check,
add constraint settings_max_pending_creates_check check (
    max_pending_creates between 1 and 100000
),
add column max_actions_per_cycle int not null default 1000
check (max_actions_per_cycle between 1 and 100000);
comment on table prebuilds.settings is
'Reconciler settings; a single row, which cannot be deleted (update it instead).';
comment on column prebuilds.settings.max_actions_per_cycle is
'A cycle applies at most this many actions (cancels, deletes, creates); the rest wait for the '
'next cycle, so no plan holds the lock for long.';

alter table prebuilds.presets
drop constraint presets_desired_instances_check,
add constraint presets_desired_instances_check check (desired_instances between 0 and 10000);
comment on column prebuilds.presets.desired_instances is
'Pool size when no schedule is in force, 0 to 10,000; null means no pool (existing prebuilds are '
'deleted).';

alter table prebuilds.preset_schedules
drop constraint preset_schedules_desired_instances_check,
add constraint preset_schedules_desired_instances_check check (
    desired_instances between 0 and 10000
);

-- Re-created below with new columns or rules.
drop view prebuilds.reconciliation_actions;
drop function prebuilds.reconciliation_actions_at(timestamptz);
drop trigger presets_check_timezone on prebuilds.presets;
drop function prebuilds.check_preset_timezone();

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/check_preset_timezone.sql
-- Trigger function: a preset's scheduling_timezone must be '' (no schedules) or an IANA time zone
-- name this server knows (SPEC 2). Called by the trigger presets_check_timezone.
-- PostgreSQL's `at time zone` (what timezone_error asks) also takes abbreviations ('PST': a fixed
-- offset, without daylight saving time), POSIX specs ('UTC+3', which it reads as three hours
-- *west* of Greenwich) and names in any case. A name is an IANA name when the TimeZone setting
-- accepts it and spells it the same way (it answers a zone file's own spelling, and rejects
-- abbreviations); a name with digits may be a POSIX spec or an offset, and is looked up in
-- pg_timezone_names (which reads every zone file: tens of milliseconds, so only for those).
-- Zone files that are not Area/Location names are refused too: abbreviations and POSIX rules
-- kept as files ('CET', 'EST5EDT', 'GMT', 'posixrules') and the posix/ and right/ trees; 'UTC'
-- is the one exception.

create function prebuilds.check_preset_timezone()
returns trigger
language plpgsql
set search_path = ''
-- Restores the session's TimeZone when the function returns: set_config below changes it.
set timezone = 'UTC'
as $$
declare
    v_zone text := new.scheduling_timezone;
    v_error text;
    v_spelling text;
begin
    if v_zone = '' or (tg_op = 'UPDATE' and v_zone = old.scheduling_timezone) then
        return new;
    end if;
    v_error := prebuilds.timezone_error(v_zone);
    if v_error is null then
        begin
            perform pg_catalog.set_config('TimeZone', v_zone, true);
            v_spelling := pg_catalog.current_setting('TimeZone');
        exception
            when invalid_parameter_value then
                v_spelling := null;
        end;
        if v_spelling ~ '[0-9]' and not exists (
            select from pg_catalog.pg_timezone_names as z where z.name = v_spelling
        ) then
            v_spelling := null;
        end if;
        if v_spelling is not null and v_spelling <> 'UTC' and (
            v_spelling !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)+$'
            or v_spelling ~ '^(posix|right|SystemV)/'
        ) then
            v_error := quote_literal(v_zone) || ' is not an IANA Area/Location time zone name'
                || ' (abbreviations and POSIX rules change meaning; use e.g. Europe/Paris or UTC)';
        elsif v_spelling is distinct from v_zone then
            v_error := quote_literal(v_zone) || ' is not an IANA time zone name'
                || coalesce(' (did you mean ' || quote_literal(v_spelling) || '?)', '');
        end if;
    end if;
    if v_error is not null then
        raise exception 'invalid preset %: %', quote_literal(new.name), v_error
            using errcode = 'check_violation',
                  hint = 'Use an IANA name such as Europe/Paris, or '''' for no schedules.';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_preset_timezone() is
'Trigger: rejects a scheduling_timezone that is not an IANA Area/Location time zone name the '
'server knows (or UTC).';

-- >>> db/triggers/presets_check_timezone.sql
-- Time zones are validated when written (SPEC 4.3).

create trigger presets_check_timezone
before insert or update of scheduling_timezone on prebuilds.presets
for each row execute function prebuilds.check_preset_timezone();

comment on trigger presets_check_timezone on prebuilds.presets is
'Rejects a scheduling_timezone that is not an IANA time zone name the server knows.';

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

-- >>> db/functions/keep_settings_row.sql
-- Trigger function: the single row of prebuilds.settings cannot be deleted or truncated; every
-- cycle and operator command reads it. Called by the triggers settings_keep_row*.

create function prebuilds.keep_settings_row()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception 'prebuilds.settings must keep its one row: update it instead of deleting it'
        using errcode = 'restrict_violation',
              hint = 'To stop reconciliation: update prebuilds.settings set '
                     'reconciliation_paused = true';
end;
$$;

comment on function prebuilds.keep_settings_row() is
'Trigger: refuses to delete or truncate the settings row.';

-- >>> db/triggers/settings_keep_row.sql
-- The settings row cannot be deleted or truncated (issue 7: a missing row stopped every cycle).

create trigger settings_keep_row
before delete on prebuilds.settings
for each row execute function prebuilds.keep_settings_row();

create trigger settings_keep_row_truncate
before truncate on prebuilds.settings
for each statement execute function prebuilds.keep_settings_row();

comment on trigger settings_keep_row on prebuilds.settings is
'Refuses to delete the settings row.';
comment on trigger settings_keep_row_truncate on prebuilds.settings is
'Refuses to truncate the settings table.';

-- >>> db/functions/check_settings.sql
-- Trigger function: the settings row is checked when written, with a message that names the
-- setting and its rule (the CHECK constraints stay as the backstop). Called by the trigger
-- settings_check.

create function prebuilds.check_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_problem text;
begin
    if new.backoff_interval <= interval '0' then
        v_problem := format('backoff_interval must be positive (got %s)', new.backoff_interval);
    elsif new.backoff_lookback <= interval '0' then
        v_problem := format('backoff_lookback must be positive (got %s)', new.backoff_lookback);
    elsif new.failure_hard_limit < 0 then
        v_problem := format(
            'failure_hard_limit must be 0 (disabled) or more (got %s)', new.failure_hard_limit
        );
    elsif new.max_pending_creates not between 1 and 100000 then
        v_problem := format(
            'max_pending_creates must be between 1 and 100000, or null for no cap (got %s)',
            new.max_pending_creates
        );
    elsif new.run_retention < interval '1 hour' then
        v_problem := format('run_retention must be at least 1 hour (got %s)', new.run_retention);
    elsif new.max_actions_per_cycle not between 1 and 100000 then
        v_problem := format(
            'max_actions_per_cycle must be between 1 and 100000 (got %s)',
            new.max_actions_per_cycle
        );
    end if;
    if v_problem is not null then
        raise exception 'invalid setting: %', v_problem
            using errcode = 'check_violation', table = 'settings', schema = 'prebuilds';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_settings() is
'Trigger: rejects a settings value that breaks its rule, with a message naming the setting.';

-- >>> db/triggers/settings_check.sql
-- Settings are validated when written, with messages naming the setting (issue 7).

create trigger settings_check
before insert or update on prebuilds.settings
for each row execute function prebuilds.check_settings();

comment on trigger settings_check on prebuilds.settings is
'Rejects a settings value that breaks its rule, with a message naming the setting.';

-- >>> db/functions/check_preset_pool.sql
-- Trigger function: a preset's pool settings are checked when written, with a message that names
-- the column and the rule (the CHECK constraints stay as the backstop, but their message names
-- only the constraint and dumps the row). Called by the trigger presets_check_pool.

create function prebuilds.check_preset_pool()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_problem text;
begin
    if new.name = '' or char_length(new.name) > 200 then
        v_problem := format('name must be 1 to 200 characters (got %s)', char_length(new.name));
    elsif new.desired_instances not between 0 and 10000 then
        v_problem := format(
            'desired_instances must be between 0 and 10000, or null for no pool (got %s)',
            new.desired_instances
        );
    elsif new.ttl_seconds < 0 or new.ttl_seconds between 1 and 59 then
        v_problem := format(
            'ttl_seconds must be null or 0 (no TTL), or at least 60 (got %s)', new.ttl_seconds
        );
    end if;
    if v_problem is not null then
        raise exception 'invalid preset %: %', quote_literal(left(new.name, 60)), v_problem
            using errcode = 'check_violation', table = 'presets', schema = 'prebuilds';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_preset_pool() is
'Trigger: rejects a preset whose name, desired_instances or ttl_seconds breaks its rule, naming '
'the column and the rule.';

-- >>> db/triggers/presets_check_pool.sql
-- Pool settings are validated when written, with messages naming the column (issue 7).

create trigger presets_check_pool
before insert or update of name, desired_instances, ttl_seconds on prebuilds.presets
for each row execute function prebuilds.check_preset_pool();

comment on trigger presets_check_pool on prebuilds.presets is
'Rejects a name, desired_instances or ttl_seconds that breaks its rule, with a message naming it.';

-- >>> db/functions/write_fence_key.sql
-- The write fence of a reconcile lock key: the same 64 bits as two int4 halves, which
-- PostgreSQL keeps in a keyspace of its own (pg_locks.objsubid 2), so no new key is registered.
-- Every action takes it shared; start_run takes it exclusive (see start_run, apply_action). The
-- low half alone is also the class of the plan transactions' token locks (take_reconcile_lock).

create function prebuilds.write_fence_key(p_key bigint, p_half int)
returns int
language sql
immutable
parallel safe
set search_path = ''
begin atomic
    select (case when p_half = 1 then p_key >> 32 else p_key end)::bit(32)::int;
end;

comment on function prebuilds.write_fence_key(bigint, int) is
'Half p_half (1: high, 2: low 32 bits) of the reconcile lock key, as the int4 pair of the write '
'fence lock.';

-- >>> db/functions/reconcile_lock_held.sql
-- Does the plan transaction of a run still hold its lock? The reconciler's licence to write:
-- called by start_run and apply_action before every write of a cycle. The plan transaction
-- holds, besides the reconcile lock, an exclusive lock on a token of its own (a random int in
-- the two-int keyspace, class: the low half of the key; see take_reconcile_lock). Asking for
-- that token shared fails exactly while the plan transaction is alive: one lock-manager call,
-- no scan of pg_locks, and no other reconciler (which has a token of its own) can pass for it.
-- When it succeeds the caller raises, which releases it.

create function prebuilds.reconcile_lock_held(p_key bigint, p_token int)
returns bool
language sql
volatile
set search_path = ''
begin atomic
    select not pg_catalog.pg_try_advisory_xact_lock_shared(
        prebuilds.write_fence_key(p_key, 2), p_token
    );
end;

comment on function prebuilds.reconcile_lock_held(bigint, int) is
'True while the plan transaction that took lock p_key with token p_token is alive (its token '
'lock cannot be shared); the licence every write of a run checks. Call it in a transaction '
'that ends soon: when false it holds the token shared until then.';

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
