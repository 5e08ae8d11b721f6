-- Revision 0002: schedules evaluated in SQL (SPEC 4.3), lifetime counters for metrics,
-- retention of the run log, and runs interrupted by a signal.
-- Written by hand above the marker: what must change before the frozen objects are created.

-- These return new columns or call new functions: re-created below.
drop view prebuilds.preset_state;
drop view prebuilds.reconciliation_actions;
drop function prebuilds.reconciliation_actions_at(timestamptz);
drop function prebuilds.preset_state_at(timestamptz);
drop function prebuilds.preset_plan_at(timestamptz);
drop function prebuilds.create_prebuild(uuid);
drop function prebuilds.claim_prebuild(uuid, uuid, text);
drop function prebuilds.complete_job(uuid, text);

alter table prebuilds.settings
add column run_retention interval not null default '30 days'
check (run_retention >= interval '1 hour');
comment on column prebuilds.settings.run_retention is
'Cycles (and their action rows) older than this are pruned by the driver.';

-- The first matching schedule wins: first by when it was written.
alter table prebuilds.preset_schedules
add column created_at timestamptz not null default clock_timestamp();
comment on column prebuilds.preset_schedules.created_at is
'When the schedule was written; when two schedules match, the earlier one wins.';

alter table prebuilds.reconciliation_runs
drop constraint reconciliation_runs_status_check,
add constraint reconciliation_runs_status_check
check (status in ('running', 'succeeded', 'failed', 'paused', 'interrupted'));
comment on column prebuilds.reconciliation_runs.status is
'running, succeeded (every action applied or skipped), failed (an action or the cycle failed), '
'paused (nothing planned: reconciliation is paused) or interrupted (stopped by a signal after '
'the action in flight).';

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/types/cron_masks.sql
-- A schedule's cron expression as bit masks: bit n of `hours` is set when hour n matches, and so
-- on. Parsed once per schedule and plan (prebuilds.cron_masks), matching an instant and comparing
-- two schedules are then a few bit operations.

create type prebuilds.cron_masks as (
    hours bigint,
    days_of_month bigint,
    months bigint,
    days_of_week bigint,
    any_day_of_month bool,
    any_day_of_week bool
);

comment on type prebuilds.cron_masks is
'A valid `* HOUR DOM MONTH DOW` expression as bit masks (bit n = value n matches).';
comment on column prebuilds.cron_masks.hours is 'Bits 0-23: the hours that match.';
comment on column prebuilds.cron_masks.days_of_month is 'Bits 1-31: the days of the month.';
comment on column prebuilds.cron_masks.months is 'Bits 1-12: the months.';
comment on column prebuilds.cron_masks.days_of_week is 'Bits 0-6: the days of the week, 0 Sunday.';
comment on column prebuilds.cron_masks.any_day_of_month is
'The day-of-month field is `*` (for the rule on two restricted day fields).';
comment on column prebuilds.cron_masks.any_day_of_week is 'The day-of-week field is `*`.';

-- >>> db/tables/preset_counters.sql
-- Lifetime counts of prebuild events per preset, for metrics that survive restarts of the driver
-- and cost one row per preset to read (not a scan of build history). Incremented by
-- create_prebuild, claim_prebuild and complete_job through count_prebuild_event.

create table prebuilds.preset_counters (
    preset_id uuid primary key references prebuilds.presets (id) on delete cascade,
    created bigint not null default 0 check (created >= 0),
    failed bigint not null default 0 check (failed >= 0),
    claimed bigint not null default 0 check (claimed >= 0)
);

comment on table prebuilds.preset_counters is
'Lifetime prebuild events per preset: the source of the prebuilds_*_total metrics.';
comment on column prebuilds.preset_counters.preset_id is 'The preset.';
comment on column prebuilds.preset_counters.created is 'Prebuilds created by create_prebuild.';
comment on column prebuilds.preset_counters.failed is
'Prebuild start builds that completed with an error.';
comment on column prebuilds.preset_counters.claimed is
'Prebuilds handed to people by claim_prebuild.';

-- >>> db/functions/timezone_error.sql
-- Is a time zone name known to this server? Null when it is, else why not. Catches the error
-- rather than reading pg_timezone_names, which loads every zone file on each call.

create function prebuilds.timezone_error(p_timezone text)
returns text
language plpgsql
stable
set search_path = ''
as $$
begin
    if coalesce(p_timezone, '') = '' then
        return 'no scheduling_timezone';
    end if;
    perform now() at time zone p_timezone;
    return null;
exception
    when invalid_parameter_value then
        return 'unknown time zone ' || quote_literal(p_timezone);
end;
$$;

comment on function prebuilds.timezone_error(text) is
'Null when p_timezone is a time zone this server knows; otherwise why it cannot be used.';

-- >>> db/functions/check_preset_timezone.sql
-- Trigger function: a preset's scheduling_timezone must be '' (no schedules) or an IANA time zone
-- name this server knows (SPEC 2). Called by the trigger presets_check_timezone.
-- PostgreSQL's `at time zone` (what timezone_error asks) also takes abbreviations ('PST': a fixed
-- offset, without daylight saving time), POSIX specs ('UTC+3', which it reads as three hours
-- *west* of Greenwich) and names in any case. A name is an IANA name when the TimeZone setting
-- accepts it and spells it the same way (it answers a zone file's own spelling, and rejects
-- abbreviations); a name with digits may be a POSIX spec or an offset, and is looked up in
-- pg_timezone_names (which reads every zone file: tens of milliseconds, so only for those).

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
        if v_spelling is distinct from v_zone then
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
'Trigger: rejects a scheduling_timezone that is not an IANA time zone name the server knows.';

-- >>> db/triggers/presets_check_timezone.sql
-- Time zones are validated when written (SPEC 4.3).

create trigger presets_check_timezone
before insert or update of scheduling_timezone on prebuilds.presets
for each row execute function prebuilds.check_preset_timezone();

comment on trigger presets_check_timezone on prebuilds.presets is
'Rejects a scheduling_timezone that is not an IANA time zone name the server knows.';

-- >>> db/functions/local_time.sql
-- An instant as wall-clock time in a time zone, or null when the zone is unknown to this server
-- (`at time zone` would raise). Stable, not immutable, so the planner never evaluates it early
-- with a bad zone. Used by preset_schedule_at.

create function prebuilds.local_time(p_at timestamptz, p_timezone text)
returns timestamp
language plpgsql
stable
set search_path = ''
as $$
begin
    return p_at at time zone p_timezone;
exception
    when invalid_parameter_value then
        return null;
end;
$$;

comment on function prebuilds.local_time(timestamptz, text) is
'p_at as local wall-clock time in p_timezone; null when the server does not know the zone.';

-- >>> db/functions/cron_expression_error.sql
-- Validation of a schedule's cron expression (SPEC 4.3): null when valid, else what is wrong.
-- Used when schedules are written (trigger on preset_schedules) and by preset_plan_at, which falls
-- back to desired_instances when bad data is present anyway. Fields are separated by any
-- whitespace (spaces, tabs); whitespace around the expression, such as a pasted newline, is
-- ignored, as cron_matches and schedules_overlap ignore it.

create function prebuilds.cron_expression_error(p_expression text)
returns text
language sql
immutable
parallel safe
begin atomic
    with
    fields as (
        select
            f.field,
            f.n,
            (array['minute', 'hour', 'day-of-month', 'month', 'day-of-week'])[f.n] as label,
            (array[0, 0, 1, 1, 0])[f.n] as low,
            (array[59, 23, 31, 12, 7])[f.n] as high
        from
            unnest(
                regexp_split_to_array(
                    regexp_replace(coalesce(p_expression, ''), '^\s+|\s+$', '', 'g'), '\s+'
                )
            )
            with ordinality as f (field, n)
    ),

    items as (
        select
            fields.n,
            fields.label,
            fields.low,
            fields.high,
            item.part,
            m.bounds[1]::int as first_value,
            coalesce(m.bounds[3], m.bounds[1])::int as last_value
        from fields
        cross join lateral unnest(string_to_array(fields.field, ',')) as item (part)
        cross join
            lateral (
                select regexp_match(item.part, '^(\d{1,2})(-(\d{1,2}))?$') as bounds
            ) as m
        where fields.field <> '*' and fields.n > 1
    )

    select
        case
            when coalesce(p_expression, '') !~ '\S' then 'cron expression is empty'
            when (select count(*) from fields) <> 5
                then 'cron expression needs 5 fields (minute hour day-of-month month '
                    || 'day-of-week), got ' || (select count(*) from fields) || ' in '
                    || quote_literal(p_expression)
            when (select fields.field from fields where fields.n = 1) <> '*'
                then 'minute field must be *, got '
                    || quote_literal((select fields.field from fields where fields.n = 1))
            else (
                select
                    it.label || ' field: ' || quote_literal(it.part)
                    || case
                        when it.first_value is null
                            then ' is not *, a number, a range a-b or a list of those'
                        when it.first_value > it.last_value then ' is a range that runs backwards'
                        else ' is outside ' || it.low || '-' || it.high
                    end
                from items as it
                where
                    it.first_value is null
                    or it.first_value > it.last_value
                    or it.first_value < it.low
                    or it.last_value > it.high
                order by it.n
                limit 1
            )
        end as error;
end;

comment on function prebuilds.cron_expression_error(text) is
'Null when p_expression is a valid schedule (`* HOUR DOM MONTH DOW`: minute *, other fields *, '
'n, a-b or comma lists of those), otherwise a sentence saying what is wrong.';

-- >>> db/functions/cron_field_mask.sql
-- One field of a valid cron expression (`*`, n, a-b or a comma list) as a bit mask of the values
-- it admits between p_low and p_high. Used by cron_masks.

create function prebuilds.cron_field_mask(p_field text, p_low int, p_high int)
returns bigint
language sql
immutable
parallel safe
begin atomic
    select bit_or(1::bigint << v.value) as mask
    from unnest(string_to_array(p_field, ',')) as item (part)
    cross join lateral regexp_match(item.part, '^(\d{1,2})(?:-(\d{1,2}))?$') as m (bounds)
    cross join lateral generate_series(
        case when item.part = '*' then p_low else m.bounds[1]::int end,
        case when item.part = '*' then p_high else coalesce(m.bounds[2], m.bounds[1])::int end
    ) as v (value);
end;

comment on function prebuilds.cron_field_mask(text, int, int) is
'Bit mask of the values in p_low..p_high that a valid cron field admits.';

-- >>> db/functions/cron_masks.sql
-- A cron expression as prebuilds.cron_masks, or null when it is not valid
-- (prebuilds.cron_expression_error says why). Used by preset_schedule_at, cron_matches and
-- schedules_overlap, so they agree by construction.

create function prebuilds.cron_masks(p_expression text)
returns prebuilds.cron_masks
language sql
immutable
parallel safe
begin atomic
    select
        case
            when prebuilds.cron_expression_error(p_expression) is null
                then
                    row(
                        prebuilds.cron_field_mask(f.fields[2], 0, 23),
                        prebuilds.cron_field_mask(f.fields[3], 1, 31),
                        prebuilds.cron_field_mask(f.fields[4], 1, 12),
                        -- 7 is Sunday too: fold bit 7 onto bit 0.
                        (prebuilds.cron_field_mask(f.fields[5], 0, 7) & 127)
                        | ((prebuilds.cron_field_mask(f.fields[5], 0, 7) >> 7) & 1),
                        f.fields[3] = '*',
                        f.fields[5] = '*'
                    )::prebuilds.cron_masks
        end as masks
    from (
        select
            regexp_split_to_array(
                regexp_replace(p_expression, '^\s+|\s+$', '', 'g'), '\s+'
            ) as fields
    ) as f;
end;

comment on function prebuilds.cron_masks(text) is
'The bit masks of a valid `* HOUR DOM MONTH DOW` expression; null when it is invalid.';

-- >>> db/functions/cron_masks_match.sql
-- Do a schedule's masks match a local wall-clock time? (SPEC 4.3) Minute is always `*`, so an hour
-- range is continuous: `9-18` holds from 09:00:00 to 18:59:59. When both day fields are
-- restricted, either one matching is enough (the usual cron rule). A single expression: the
-- planner inlines it into the plan query.

create function prebuilds.cron_masks_match(p_masks prebuilds.cron_masks, p_local timestamp)
returns bool
language sql
immutable
parallel safe
return
((p_masks).hours >> extract(hour from p_local)::int) & 1 = 1
and ((p_masks).months >> extract(month from p_local)::int) & 1 = 1
and case
    when (p_masks).any_day_of_month or (p_masks).any_day_of_week
        then
            ((p_masks).days_of_month >> extract(day from p_local)::int) & 1 = 1
            and ((p_masks).days_of_week >> extract(dow from p_local)::int) & 1 = 1
    else
        ((p_masks).days_of_month >> extract(day from p_local)::int) & 1 = 1
        or ((p_masks).days_of_week >> extract(dow from p_local)::int) & 1 = 1
end;

comment on function prebuilds.cron_masks_match(prebuilds.cron_masks, timestamp) is
'True when a schedule''s masks match the local wall-clock time p_local.';

-- >>> db/functions/cron_masks_overlap.sql
-- Coder's definition of overlapping preset schedules, on masks: they share an hour and a month,
-- and a day — of the week when either day-of-month is `*`, of the month when either day-of-week
-- is `*`, either otherwise. Overlapping schedules make a preset fall back to desired_instances
-- (SPEC 4.3).

create function prebuilds.cron_masks_overlap(p_a prebuilds.cron_masks, p_b prebuilds.cron_masks)
returns bool
language sql
immutable
parallel safe
return
(p_a).hours & (p_b).hours <> 0
and (p_a).months & (p_b).months <> 0
and case
    when (p_a).any_day_of_month or (p_b).any_day_of_month
        then (p_a).days_of_week & (p_b).days_of_week <> 0
    when (p_a).any_day_of_week or (p_b).any_day_of_week
        then (p_a).days_of_month & (p_b).days_of_month <> 0
    else
        (p_a).days_of_week & (p_b).days_of_week <> 0
        or (p_a).days_of_month & (p_b).days_of_month <> 0
end;

comment on function prebuilds.cron_masks_overlap(prebuilds.cron_masks, prebuilds.cron_masks) is
'True when two schedules overlap by Coder''s definition (common hour, month and day).';

-- >>> db/functions/cron_matches.sql
-- Does a schedule's cron expression match an instant, read in a time zone? (SPEC 4.3)
-- For psql and tests; the plan matches the masks stored with each schedule, through the same
-- cron_masks_match. Null when the expression is invalid.

create function prebuilds.cron_matches(p_expression text, p_timezone text, p_at timestamptz)
returns bool
language sql
immutable
parallel safe
return prebuilds.cron_masks_match(
    prebuilds.cron_masks(p_expression), p_at at time zone p_timezone
);

comment on function prebuilds.cron_matches(text, text, timestamptz) is
'True when the schedule `* HOUR DOM MONTH DOW` matches p_at read in time zone p_timezone; null '
'when the expression is invalid.';

-- >>> db/functions/schedules_overlap.sql
-- Do two schedules overlap (Coder's definition, see cron_masks_overlap)? For the write-time check
-- and psql; null when either expression is invalid.

create function prebuilds.schedules_overlap(p_a text, p_b text)
returns bool
language sql
immutable
parallel safe
return prebuilds.cron_masks_overlap(prebuilds.cron_masks(p_a), prebuilds.cron_masks(p_b));

comment on function prebuilds.schedules_overlap(text, text) is
'True when two valid schedules overlap by Coder''s definition (common hour, month and day).';

-- >>> db/functions/check_preset_schedule.sql
-- Trigger function: rejects a schedule whose expression is invalid, whose preset's time zone is
-- unknown, or that overlaps another schedule of its preset, with a message naming the problem.
-- Called by the trigger preset_schedules_check before every insert or update.

create function prebuilds.check_preset_schedule()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_error text;
    v_timezone text;
    v_other text;
begin
    v_error := prebuilds.cron_expression_error(new.cron_expression);
    if v_error is not null then
        raise exception 'invalid schedule %: %', quote_literal(new.cron_expression), v_error
            using errcode = 'check_violation',
                  hint = 'Schedules are `* HOUR DOM MONTH DOW`, e.g. `* 9-18 * * 1-5`.';
    end if;

    select p.scheduling_timezone into v_timezone
    from prebuilds.presets as p where p.id = new.preset_id;
    if v_timezone <> '' and prebuilds.timezone_error(v_timezone) is not null then
        raise exception 'invalid schedule %: preset % has %', quote_literal(new.cron_expression),
            new.preset_id, prebuilds.timezone_error(v_timezone)
            using errcode = 'check_violation';
    end if;

    -- An invalid schedule already there (written without this check) cannot be compared; it
    -- keeps the preset's schedules ignored until it is fixed, and must not block fixing it.
    select s.cron_expression into v_other
    from prebuilds.preset_schedules as s
    where s.preset_id = new.preset_id and s.id <> new.id
      and prebuilds.schedules_overlap(s.cron_expression, new.cron_expression)
    order by s.created_at, s.id
    limit 1;
    if found then
        raise exception 'invalid schedule %: it overlaps schedule % of the same preset',
            quote_literal(new.cron_expression), quote_literal(v_other)
            using errcode = 'check_violation';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_preset_schedule() is
'Trigger: rejects invalid, overlapping or unusable schedules with a clear error.';

-- >>> db/triggers/preset_schedules_check.sql
-- Schedules are validated when written (SPEC 4.3); the plan still copes with bad data that got
-- in another way (a time zone later dropped from the server, a concurrent overlapping insert).

create trigger preset_schedules_check
before insert or update on prebuilds.preset_schedules
for each row execute function prebuilds.check_preset_schedule();

comment on trigger preset_schedules_check on prebuilds.preset_schedules is
'Rejects invalid expressions, unknown time zones and overlapping schedules.';

-- >>> db/functions/preset_schedule_at.sql
-- The schedule in force for a preset at an instant (SPEC 4.3), and why when none can be used.
-- Called by preset_plan_at (for candidates with schedules) and create_prebuild (its re-check), so
-- the answer to "how many now?" has one definition. A single query, which the planner inlines
-- into its caller; each schedule is parsed into bit masks (cron_masks) and then only bits are
-- tested. No row when the preset has no schedules; otherwise one:
--   desired null, note 'no schedule matches now'      use desired_instances
--   desired null, note 'schedules ignored: …'         no or unknown zone, bad or overlapping data
--   desired n,    note 'schedule … in force'

create function prebuilds.preset_schedule_at(
    p_preset_id uuid, p_timezone text, p_now timestamptz
)
returns table (desired int, note text)
language sql
stable
rows 1
begin atomic
    select
        case when problem.reason is null then in_force.desired_instances end as desired,
        case
            when problem.reason is not null then 'schedules ignored: ' || problem.reason
            when in_force.cron_expression is not null
                then 'schedule ' || quote_literal(in_force.cron_expression) || ' in force'
            else 'no schedule matches now'
        end as note
    from (
        select
            t.local_now,
            coalesce(
                case
                    when p_timezone = '' then 'no scheduling_timezone'
                    when t.local_now is null then 'unknown time zone ' || quote_literal(p_timezone)
                end,
                (
                    select
                        quote_literal(s.cron_expression) || ': '
                        || prebuilds.cron_expression_error(s.cron_expression)
                    from prebuilds.preset_schedules as s
                    where
                        s.preset_id = p_preset_id
                        and prebuilds.cron_expression_error(s.cron_expression) is not null
                    order by s.created_at, s.id
                    limit 1
                ),
                (
                    select
                        quote_literal(a.cron_expression) || ' and '
                        || quote_literal(b.cron_expression) || ' overlap'
                    from prebuilds.preset_schedules as a
                    inner join prebuilds.preset_schedules as b
                        on
                            a.preset_id = b.preset_id
                            and (a.created_at, a.id) < (b.created_at, b.id)
                    where
                        a.preset_id = p_preset_id
                        and prebuilds.schedules_overlap(a.cron_expression, b.cron_expression)
                    order by a.created_at, a.id, b.created_at, b.id
                    limit 1
                )
            ) as reason
        from (
            select
                case
                    when p_timezone <> '' then prebuilds.local_time(p_now, p_timezone)
                end as local_now
        ) as t
        where exists (select from prebuilds.preset_schedules as s where s.preset_id = p_preset_id)
    ) as problem
    left join lateral (
        select
            s.cron_expression,
            s.desired_instances
        from prebuilds.preset_schedules as s
        where
            s.preset_id = p_preset_id
            and problem.reason is null
            and prebuilds.cron_masks_match(
                prebuilds.cron_masks(s.cron_expression), problem.local_now
            )
        order by s.created_at, s.id
        limit 1
    ) as in_force on true;
end;

comment on function prebuilds.preset_schedule_at(uuid, text, timestamptz) is
'The pool size a preset''s schedules give at p_now (null: use desired_instances) and a note '
'saying which schedule is in force or why the schedules are ignored; no row without schedules.';

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
    schedule_note text,
    work prebuilds.planned_work[]
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
            d.preset_id,
            d.organization_name,
            d.template_name,
            d.template_version_name,
            d.preset_name,
            d.ttl_seconds,
            d.last_invalidated_at,
            d.failures_reset_at,
            d.is_active,
            d.is_active and (d.desired_instances is not null or hs.has_schedules) as has_pool,
            case
                when d.is_active then coalesce(sched.desired, d.desired_instances, 0)
                else 0
            end as desired,
            sched.note as schedule_note,
            case
                when d.template_deleted then 'template ' || d.template_name || ' deleted'
                when d.template_deprecated then 'template ' || d.template_name || ' deprecated'
                when d.active_version_name is null
                    then 'template ' || d.template_name || ' has no active version'
                else
                    'outdated version ' || d.template_version_name || ' (active: '
                    || d.active_version_name || ')'
            end as inactive_reason
        from pooled
        -- One primary-key lookup per candidate. The fence (offset 0) keeps the planner from
        -- turning it into a scan of every preset and version to hash-join a hundred rows.
        cross join
            lateral (
                select
                    p.id as preset_id,
                    o.name as organization_name,
                    t.name as template_name,
                    v.name as template_version_name,
                    p.name as preset_name,
                    p.desired_instances,
                    p.ttl_seconds,
                    p.last_invalidated_at,
                    p.failures_reset_at,
                    p.scheduling_timezone,
                    t.deleted as template_deleted,
                    t.deprecated as template_deprecated,
                    av.name as active_version_name,
                    coalesce(
                        t.active_version_id = p.template_version_id
                        and not t.deleted
                        and not t.deprecated,
                        false
                    ) as is_active
                from prebuilds.presets as p
                inner join prebuilds.template_versions as v on p.template_version_id = v.id
                inner join prebuilds.templates as t on v.template_id = t.id
                inner join prebuilds.organizations as o on t.organization_id = o.id
                left join prebuilds.template_versions as av on t.active_version_id = av.id
                where p.id = pooled.preset_id
                offset 0  -- noqa: AM09
            ) as d
        cross join
            lateral (
                select exists(
                    select from prebuilds.preset_schedules as s
                    where s.preset_id = d.preset_id
                ) as has_schedules
            ) as hs
        -- The schedule in force (SPEC 4.3), looked up only for active presets that have one.
        left join lateral (
            select
                ps.desired,
                ps.note
            from prebuilds.preset_schedule_at(d.preset_id, d.scheduling_timezone, p_now) as ps
            where d.is_active and hs.has_schedules
            -- Keeps the condition a gate in front of the call (not a filter after it).
            offset 0  -- noqa: AM09
        ) as sched on true
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
                order by cl.build_created_at desc, cl.workspace_id asc
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
                order by r.queued_initial desc, r.expired desc, r.created_at asc, r.workspace_id asc
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
        end as blocked_reason,
        wn.creates_wanted,
        coalesce(a.creates, 0) as creates,
        'missing: ' || (wn.actual - wn.expired) || ' running, ' || wn.starting
        || ' starting, ' || wn.desired || ' desired' as creates_reason,
        case
            when wn.backoff_until is not null
                then 'backoff: ' || wn.failures || ' failed build(s) in the last '
                    || (select cfg.backoff_lookback from cfg)::text || ', creates wait until '
                    || to_char(wn.backoff_until, 'YYYY-MM-DD HH24:MI:SSOF')
        end as backoff_reason,
        wn.schedule_note,
        coalesce(wk.work, '{}') as work
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

-- >>> db/functions/count_prebuild_event.sql
-- Internal: add one to a preset's lifetime counter, in the transaction of the event itself.
-- Creates and claims of one preset already serialise on its rows, so the counter row adds no
-- contention worth measuring.

create function prebuilds.count_prebuild_event(p_preset_id uuid, p_event text)
returns void
language sql
volatile
begin atomic
    insert into prebuilds.preset_counters as c (preset_id, created, failed, claimed)
    values (
        p_preset_id,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int
    )
    on conflict (preset_id) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed;
end;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed or claimed) for a preset.';

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
    if v_have >= coalesce(
        (select s.desired from prebuilds.preset_schedule_at(
            p_preset_id, v_preset.scheduling_timezone, now()) as s),
        v_preset.desired_instances,
        0
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
    v_preset_id uuid;
    v_initiator_id uuid;
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

    select b.workspace_id, b.transition, b.preset_id, b.initiator_id
    into v_workspace_id, v_transition, v_preset_id, v_initiator_id
    from prebuilds.workspace_builds as b
    where b.job_id = p_job_id;
    if v_status = 'succeeded' and v_transition = 'delete' then
        update prebuilds.workspaces set deleted = true where id = v_workspace_id;
    elsif v_status = 'failed' and v_transition = 'start' and v_preset_id is not null
          and v_initiator_id = prebuilds.system_user_id() then
        perform prebuilds.count_prebuild_event(v_preset_id, 'failed');
    end if;
    return true;
end;
$$;

comment on function prebuilds.complete_job(uuid, text) is
'Completes a started job, failed when p_error is given; a successful delete marks the workspace '
'deleted. False when the job was already completed or never started.';
