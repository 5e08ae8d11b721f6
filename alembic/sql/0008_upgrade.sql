-- Revision 0008. Written by hand above the marker, in sections (one per piece of work).

-- >>> woken by changes, claims counted (issue 11, SPEC 6.1 and 6.2) ------------------------------
-- Objects whose text changes are dropped here and re-created below from their frozen copies.
drop view prebuilds.preset_state;
drop function prebuilds.preset_state_at(timestamptz);
drop function prebuilds.claim_prebuild(uuid, uuid, text);
drop function prebuilds.complete_job(uuid, text);
drop function prebuilds.count_prebuild_event(uuid, text);
drop trigger settings_check on prebuilds.settings;
drop function prebuilds.check_settings();

alter table prebuilds.preset_counters
add column missed bigint not null default 0 check (missed >= 0);
comment on column prebuilds.preset_counters.missed is
'Calls of claim_prebuild that found no eligible prebuild.';

alter table prebuilds.settings
add column claim_stats_retention interval not null default '7 days'
check (claim_stats_retention >= interval '1 hour');
comment on column prebuilds.settings.claim_stats_retention is
'claim_stats buckets older than this are pruned by the driver.';
-- <<< woken by changes, claims counted -----------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/tables/claim_stats.sql
-- Claims per preset and minute, hits and misses (SPEC 6.2): how often a person found the pool
-- empty. Written by claim_prebuild through count_claim on every call; read by preset_state_at
-- (claims_last_hour, misses_last_hour); pruned by the driver (prune_claim_stats). Like
-- preset_counters, a minute of one preset is split in up to 16 shard rows (pg_backend_pid() % 16):
-- concurrent claims of one preset would otherwise queue on one row until commit. Readers sum.

create table prebuilds.claim_stats (
    preset_id uuid not null references prebuilds.presets (id) on delete cascade,
    bucket timestamptz not null check (bucket = date_trunc('minute', bucket)),
    shard smallint not null default 0 check (shard between 0 and 15),
    hits int not null default 0 check (hits >= 0),
    misses int not null default 0 check (misses >= 0),
    primary key (preset_id, bucket, shard)
);

-- Pruning deletes the oldest buckets of every preset.
create index claim_stats_bucket_idx on prebuilds.claim_stats (bucket);

comment on table prebuilds.claim_stats is
'Calls of claim_prebuild per preset and minute: hits (a prebuild was handed over) and misses (none '
'was eligible). Up to 16 shard rows per preset and minute: sum them.';
comment on column prebuilds.claim_stats.preset_id is 'The preset claimed from.';
comment on column prebuilds.claim_stats.bucket is 'Start of the minute (server time) of the calls.';
comment on column prebuilds.claim_stats.shard is
'pg_backend_pid() % 16 of the backends that counted into this row: spreads concurrent claims of '
'one preset over rows. Meaningless on its own.';
comment on column prebuilds.claim_stats.hits is 'Calls that handed a prebuild over.';
comment on column prebuilds.claim_stats.misses is 'Calls that found no eligible prebuild.';
comment on index prebuilds.claim_stats_bucket_idx is
'Buckets by age: pruning (settings.claim_stats_retention) reads the oldest first.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.claim_stats
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/functions/next_change_at.sql
-- When does the plan next change by itself (SPEC 6.1)? The earliest instant after p_now at which
-- a rule driven by the clock alone flips, with no write at all; null when none is known. The loop
-- (`prebuilds run`) sleeps until then, unless a notification or its --interval wakes it first.
-- Each time-driven rule is one branch of the union below: a set of candidate instants. A branch
-- may offer instants at which nothing ends up changing (the loop then runs an empty cycle); it
-- must never miss one. Schedules are looked ahead 48 hours (the longest --interval is a day: the
-- loop asks again before anything further away is due).

create function prebuilds.next_change_at(p_now timestamptz)
returns timestamptz
language sql
stable
security definer
set search_path = ''
set jit = off
begin atomic
    select min(c.at)
    from (
        -- TTL: a running prebuild is expired once older than ttl_seconds (is_expired).
        select w.created_at + make_interval(secs => p.ttl_seconds + 0.000001) as at
        from prebuilds.workspaces as w
        inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
        inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
        inner join prebuilds.presets as p on w.current_preset_id = p.id
        where
            w.owner_id = prebuilds.system_user_id()
            and not w.deleted
            and b.transition = 'start'
            and j.status = 'succeeded'
            and p.ttl_seconds > 0
            and w.created_at + make_interval(secs => p.ttl_seconds) >= p_now

        union all

        -- Backoff (SPEC 4.2): it ends at last failure + failures × backoff_interval, and the
        -- count drops when the oldest counted failure leaves backoff_lookback. The same failures
        -- preset_plan_at counts: failed latest start builds of live prebuilds, since the reset.
        select
            unnest(array[
                f.last_failure_at + f.failures * f.backoff_interval,
                f.first_failure_at + f.backoff_lookback
            ]) as at
        from (
            select
                max(b.created_at) as last_failure_at,
                min(b.created_at) as first_failure_at,
                count(*) as failures,
                min(s.backoff_interval) as backoff_interval,
                min(s.backoff_lookback) as backoff_lookback
            from prebuilds.workspaces as w
            inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
            inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
            inner join prebuilds.presets as p on w.current_preset_id = p.id
            cross join prebuilds.settings as s
            where
                w.owner_id = prebuilds.system_user_id()
                and not w.deleted
                and b.transition = 'start'
                and j.status = 'failed'
                and b.created_at >= p_now - s.backoff_lookback
                and (p.failures_reset_at is null or b.created_at >= p.failures_reset_at)
            group by w.current_preset_id
        ) as f

        union all

        -- Schedules (SPEC 4.3): the first local hour boundary at which the pool size the
        -- schedules give differs from now, for active presets with schedules and a known zone.
        select nxt.at
        from prebuilds.templates as t
        inner join prebuilds.presets as p on t.active_version_id = p.template_version_id
        cross join
            lateral (
                select
                    prebuilds.local_time(p_now, p.scheduling_timezone) as local_now,
                    (
                        select s.desired
                        from prebuilds.preset_schedule_at(p.id, p.scheduling_timezone, p_now) as s
                    ) as desired_now
            ) as z
        cross join
            lateral (
                select h.at
                from generate_series(1, 48) as g (n)
                cross join
                    lateral (
                        select
                            (date_trunc('hour', z.local_now) + g.n * interval '1 hour')
                            at time zone p.scheduling_timezone as at
                    ) as h
                where
                    (
                        select s.desired
                        from prebuilds.preset_schedule_at(p.id, p.scheduling_timezone, h.at) as s
                    ) is distinct from z.desired_now
                order by g.n
                limit 1
            ) as nxt
        where
            not t.deleted
            and not t.deprecated
            and p.scheduling_timezone <> ''
            and z.local_now is not null
            and exists (select from prebuilds.preset_schedules as ps where ps.preset_id = p.id)

    -- SPEC 5 rules add their branches here, each one more set of candidate instants: a failed
    -- delete's retry instant, a hung job's timeouts (heartbeat, pending), a hard-limited
    -- preset's cooldown end.
    ) as c
    where c.at > p_now;
end;

comment on function prebuilds.next_change_at(timestamptz) is
'The earliest instant after p_now at which the plan changes with no write (a TTL expiry, the '
'end of a backoff, a schedule boundary); null when none is known. prebuilds run wakes then.';

revoke execute on function prebuilds.next_change_at(timestamptz) from public;
grant execute on function prebuilds.next_change_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/functions/preset_state_at.sql
-- "Why is my pool not being filled?": one row per preset under consideration at p_now (SPEC 3).
-- Operators read it through the view preset_state; tests call it with fixed instants.
-- PL/pgSQL for its cached plan, with preset_plan_at inlined (see reconciliation_actions_at).
-- The plan columns come from preset_plan_at; the claim counts from claim_stats.

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
    schedule_note text,
    claims_last_hour int,
    misses_last_hour int
)
language plpgsql
stable
security definer
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
rows 200
as $$
begin
    return query
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
            pp.schedule_note,
            cs.hits,
            cs.misses
        from prebuilds.preset_plan_at(p_now) as pp
        -- Claims in the hour before p_now (SPEC 6.2): the minute buckets that started in it,
        -- found through claim_stats' primary key.
        cross join lateral (
            select
                coalesce(sum(c.hits), 0)::int as hits,
                coalesce(sum(c.misses), 0)::int as misses
            from prebuilds.claim_stats as c
            where
                c.preset_id = pp.preset_id
                and c.bucket > p_now - interval '1 hour'
                and c.bucket <= p_now
        ) as cs
        order by
            pp.organization_name, pp.template_name, pp.template_version_name, pp.preset_name,
            pp.preset_id;
end;
$$;

comment on function prebuilds.preset_state_at(timestamptz) is
'Reconciliation state of every preset under consideration at p_now: counts, backoff, hard limit '
'and why creates are blocked; claims and misses in the last hour.';

-- The views call it with the privileges of whoever reads them; it reads the tables as its owner.
revoke execute on function prebuilds.preset_state_at(timestamptz) from public;
grant execute on function prebuilds.preset_state_at(timestamptz)
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
    ps.schedule_note,
    ps.claims_last_hour,
    ps.misses_last_hour
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

comment on column prebuilds.preset_state.claims_last_hour is
'Claims that got a prebuild in the last hour (claim_stats hits).';
comment on column prebuilds.preset_state.misses_last_hour is
'Claims that found no eligible prebuild in the last hour (claim_stats misses).';

grant select on prebuilds.preset_state
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/functions/count_prebuild_event.sql
-- Internal: add one to a preset's lifetime counter, in the transaction of the event itself.
-- The row is the preset's shard for this backend (pg_backend_pid() % 16): claims of one preset
-- from concurrent connections update different rows instead of queueing on one until commit
-- (bench/claims.py measured it). Readers sum the shards.

create function prebuilds.count_prebuild_event(p_preset_id uuid, p_event text)
returns void
language sql
volatile
begin atomic
    insert into prebuilds.preset_counters as c (preset_id, shard, created, failed, claimed, missed)
    values (
        p_preset_id,
        pg_backend_pid() % 16,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int,
        (p_event = 'missed')::int
    )
    on conflict (preset_id, shard) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed,
            missed = c.missed + excluded.missed;
end;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed, claimed or missed) for a '
'preset, in the shard row of the calling backend.';

-- >>> db/functions/count_claim.sql
-- Internal: record one call of claim_prebuild (SPEC 6.2), in the claim's own transaction: its
-- minute in claim_stats and the preset's lifetime counter (claimed or missed), each in the shard
-- row of the calling backend, so concurrent claims of one preset never queue on one row.

create function prebuilds.count_claim(p_preset_id uuid, p_hit bool)
returns void
language sql
volatile
begin atomic
    insert into prebuilds.claim_stats as c (preset_id, bucket, shard, hits, misses)
    values (
        p_preset_id,
        date_trunc('minute', now()),
        pg_backend_pid() % 16,
        p_hit::int,
        (not p_hit)::int
    )
    on conflict (preset_id, bucket, shard) do update
        set
            hits = c.hits + excluded.hits,
            misses = c.misses + excluded.misses;
    select prebuilds.count_prebuild_event(
        p_preset_id, case when p_hit then 'claimed' else 'missed' end
    );
end;

comment on function prebuilds.count_claim(uuid, bool) is
'Internal: counts a claim (p_hit) or a miss of a preset in claim_stats (this minute) and in '
'preset_counters (lifetime), in the shard rows of the calling backend.';

-- >>> db/functions/notify_reconcile.sql
-- Internal: wake the reconciler loops (SPEC 6.1). Every commit that can change the plan calls it:
-- claim_prebuild, complete_job and the notify_plan_change triggers. The payload says what changed
-- for an operator who runs `listen prebuilds_reconcile` in psql; the loop only counts it.
-- Delivered at commit, never for a rolled-back transaction; identical payloads within one
-- transaction are delivered once.

create function prebuilds.notify_reconcile(p_what text)
returns void
language sql
volatile
begin atomic
    select pg_notify('prebuilds_reconcile', p_what);
end;

comment on function prebuilds.notify_reconcile(text) is
'Internal: pg_notify on channel prebuilds_reconcile with p_what (what changed), sent at commit.';

-- >>> db/functions/notify_plan_change.sql
-- Trigger function (statement level, with transition tables): wake the reconciler loops when a
-- statement changed rows that the plan reads (SPEC 6.1): templates, presets, preset_schedules,
-- settings. One notification per statement, whatever the number of rows, so a bulk write (the
-- fleet generator, a migration) costs one; an update that changed nothing sends none.
-- TG_ARGV[0] is what the payload calls the rows (`template`); TG_ARGV[1], when given, the column
-- that names one (`id`): `template <id>` for one row, `template (12 rows)` for more.

create function prebuilds.notify_plan_change()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_keys text[];
begin
    -- Rows new or different after the statement (an update's unchanged rows cancel out), or the
    -- deleted ones. Static SQL on the transition tables each trigger declares for its event.
    if tg_op = 'INSERT' then
        select array_agg(distinct to_jsonb(n.*) ->> coalesce(tg_argv[1], ''))
        into v_keys
        from new_rows as n;
    elsif tg_op = 'DELETE' then
        select array_agg(distinct to_jsonb(o.*) ->> coalesce(tg_argv[1], ''))
        into v_keys
        from old_rows as o;
    else
        select array_agg(distinct c.row_json ->> coalesce(tg_argv[1], ''))
        into v_keys
        from (
            select to_jsonb(n.*) as row_json from new_rows as n
            except
            select to_jsonb(o.*) from old_rows as o
        ) as c;
    end if;
    if v_keys is null then
        return null;
    end if;
    perform prebuilds.notify_reconcile(
        tg_argv[0]
        || case
            when tg_nargs < 2 then ''
            when cardinality(v_keys) = 1 then ' ' || coalesce(v_keys[1], '')
            else ' (' || cardinality(v_keys) || ' rows)'
        end
    );
    return null;
end;
$$;

comment on function prebuilds.notify_plan_change() is
'Statement trigger: notifies prebuilds_reconcile with TG_ARGV[0] and the changed row''s '
'TG_ARGV[1] column (or a row count) when the statement inserted, changed or deleted rows.';

-- >>> db/functions/notify_claim.sql
-- Internal: wake the reconciler loops after a claim (SPEC 6.1), one claim at a time. A NOTIFY
-- serialises commits: from its PreCommit to the end of its commit (the WAL flush included) a
-- notifying transaction holds a database-wide lock, so one notification per claim made
-- concurrent claims commit one by one (bench/claims.py: 8 claimers, 703 → 207 claims/s).
-- Here only the claim holding the notifier key (driver/locks.py CLAIM_NOTIFIER) notifies; claims
-- committing meanwhile rely on its notification, which is sent at its commit, hence after they
-- took the in-flight key (CLAIMS_IN_FLIGHT) shared; the cycle it starts waits for every holder
-- of that key to finish (wait_for_claims) before it reads the plan, so it sees them too.
-- Keys: 8102650153177017189 = CLAIM_NOTIFIER, 8102650152842191213 = CLAIMS_IN_FLIGHT.

create function prebuilds.notify_claim(p_what text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    perform pg_catalog.pg_advisory_xact_lock_shared(8102650152842191213);
    if pg_catalog.pg_try_advisory_xact_lock(8102650153177017189) then
        perform prebuilds.notify_reconcile(p_what);
    end if;
end;
$$;

comment on function prebuilds.notify_claim(text) is
'Internal: marks the claim in flight (CLAIMS_IN_FLIGHT, shared) and notifies prebuilds_reconcile '
'with p_what unless another claim in flight holds CLAIM_NOTIFIER and will notify at its commit.';

-- >>> db/triggers/templates_notify_reconcile.sql
-- Wakes the reconciler loops when a template's active version, deprecation or deletion changes
-- (SPEC 6.1). Payload `template <id>`.

create trigger templates_notify_reconcile
after update on prebuilds.templates
referencing old table as old_rows new table as new_rows
for each statement execute function prebuilds.notify_plan_change('template', 'id');

comment on trigger templates_notify_reconcile on prebuilds.templates is
'Notifies prebuilds_reconcile (`template <id>`) after an update that changed templates.';

-- >>> db/triggers/presets_notify_reconcile.sql
-- Wakes the reconciler loops when presets are added or their pool settings, TTL, time zone,
-- invalidation or failure reset change (SPEC 6.1). Payload `preset <id>`. A transition table
-- belongs to one event, hence two triggers.

create trigger presets_notify_reconcile_insert
after insert on prebuilds.presets
referencing new table as new_rows
for each statement execute function prebuilds.notify_plan_change('preset', 'id');

create trigger presets_notify_reconcile_update
after update on prebuilds.presets
referencing old table as old_rows new table as new_rows
for each statement execute function prebuilds.notify_plan_change('preset', 'id');

comment on trigger presets_notify_reconcile_insert on prebuilds.presets is
'Notifies prebuilds_reconcile (`preset <id>`) after presets were added.';
comment on trigger presets_notify_reconcile_update on prebuilds.presets is
'Notifies prebuilds_reconcile (`preset <id>`) after an update that changed presets.';

-- >>> db/triggers/preset_schedules_notify_reconcile.sql
-- Wakes the reconciler loops when a preset's schedules are added, changed or removed (SPEC 6.1).
-- Payload `schedules <preset id>`. A transition table belongs to one event, hence three triggers.

create trigger preset_schedules_notify_reconcile_insert
after insert on prebuilds.preset_schedules
referencing new table as new_rows
for each statement execute function prebuilds.notify_plan_change('schedules', 'preset_id');

create trigger preset_schedules_notify_reconcile_update
after update on prebuilds.preset_schedules
referencing old table as old_rows new table as new_rows
for each statement execute function prebuilds.notify_plan_change('schedules', 'preset_id');

create trigger preset_schedules_notify_reconcile_delete
after delete on prebuilds.preset_schedules
referencing old table as old_rows
for each statement execute function prebuilds.notify_plan_change('schedules', 'preset_id');

comment on trigger preset_schedules_notify_reconcile_insert on prebuilds.preset_schedules is
'Notifies prebuilds_reconcile (`schedules <preset id>`) after schedules were added.';
comment on trigger preset_schedules_notify_reconcile_update on prebuilds.preset_schedules is
'Notifies prebuilds_reconcile (`schedules <preset id>`) after an update that changed schedules.';
comment on trigger preset_schedules_notify_reconcile_delete on prebuilds.preset_schedules is
'Notifies prebuilds_reconcile (`schedules <preset id>`) after schedules were removed.';

-- >>> db/triggers/settings_notify_reconcile.sql
-- Wakes the reconciler loops when the settings row changes (SPEC 6.1). Payload `settings`.

create trigger settings_notify_reconcile
after update on prebuilds.settings
referencing old table as old_rows new table as new_rows
for each statement execute function prebuilds.notify_plan_change('settings');

comment on trigger settings_notify_reconcile on prebuilds.settings is
'Notifies prebuilds_reconcile (`settings`) after an update that changed the settings row.';

-- >>> db/functions/claim_prebuild.sql
-- Hand an eligible prebuild to a person (SPEC 4.5). Called by the platform when a user creates a
-- workspace from a preset. Takes the oldest eligible prebuild with `skip locked`: a prebuild
-- being deleted is locked by delete_prebuild and skipped, so a claimed workspace is never deleted.
-- Every call is counted in claim_stats, a hit or a miss (SPEC 6.2), and notifies the reconciler
-- loops at commit (SPEC 6.1): the pool lost a prebuild, or demand grew (notify_claim: one
-- claim in flight at a time notifies for all).

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
        if not exists (select from prebuilds.presets as p where p.id = p_preset_id) then
            raise exception 'claim_prebuild: no preset with id %', p_preset_id
                using errcode = 'foreign_key_violation';
        end if;
        -- A miss is counted (SPEC 6.2) and wakes the loops too: demand sizing reads misses.
        perform prebuilds.count_claim(p_preset_id, false);
        perform prebuilds.notify_claim('claim ' || p_preset_id || ' miss');
        return null;
    end if;

    update prebuilds.workspaces
    set owner_id = p_owner_id, name = p_name
    where id = v_workspace_id;

    -- Initiated by the new owner: provisioners serve it first, and it never counts as a
    -- prebuild starting.
    perform prebuilds.queue_build(v_workspace_id, v_version_id, p_preset_id, 'start', p_owner_id);
    perform prebuilds.count_claim(p_preset_id, true);
    perform prebuilds.notify_claim('claim ' || p_preset_id || ' hit');
    return v_workspace_id;
end;
$$;

comment on function prebuilds.claim_prebuild(uuid, uuid, text) is
'Gives the oldest eligible prebuild of a preset to p_owner_id under the name p_name and queues '
'its start build; returns the workspace id, or null when none is eligible. Counts the call in '
'claim_stats and notifies prebuilds_reconcile.';

revoke execute on function prebuilds.claim_prebuild(uuid, uuid, text) from public;
grant execute on function prebuilds.claim_prebuild(uuid, uuid, text) to prebuilds_platform;

-- >>> db/functions/complete_job.sql
-- Provisioner side: finish a job (SPEC 4.5). A successful delete build marks its workspace
-- deleted, which removes it from the live prebuilds. Used by the simulated provisioner and tests.
-- The completion of a prebuild's or a claim's job notifies the reconciler loops (SPEC 6.1).

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
    -- The end of a prebuild's job, or of a claim's (a build with a preset), can change the plan
    -- (SPEC 6.1); people's other jobs cannot.
    if v_preset_id is not null or v_initiator_id = prebuilds.system_user_id() then
        perform prebuilds.notify_reconcile('job ' || p_job_id || ' ' || v_status);
    end if;
    return true;
end;
$$;

comment on function prebuilds.complete_job(uuid, text) is
'Completes a started job, failed when p_error is given; a successful delete marks the workspace '
'deleted. False when the job was already completed or never started.';

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
    elsif new.claim_stats_retention < interval '1 hour' then
        v_problem := format(
            'claim_stats_retention must be at least 1 hour (got %s)', new.claim_stats_retention
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

-- >>> db/functions/prune_claim_stats.sql
-- Retention (settings.claim_stats_retention, SPEC 6.2): delete the oldest expired claim_stats
-- buckets, a bounded batch per call like prune_runs. Called by the driver after each run, in the
-- statement that prunes runs.

create function prebuilds.prune_claim_stats()
returns int
language sql
volatile
security definer
set search_path = ''
begin atomic
    with
    expired as (
        select
            c.preset_id,
            c.bucket,
            c.shard
        from prebuilds.claim_stats as c
        where
            c.bucket
            < now() - (select s.claim_stats_retention from prebuilds.settings as s)
        order by c.bucket
        limit 10000
    ),

    pruned as (
        delete from prebuilds.claim_stats as c
        using expired
        where
            c.preset_id = expired.preset_id
            and c.bucket = expired.bucket
            and c.shard = expired.shard
        returning c.bucket
    )

    select count(*)::int from pruned;
end;

comment on function prebuilds.prune_claim_stats() is
'Deletes up to 10000 of the oldest claim_stats rows older than settings.claim_stats_retention; '
'returns how many.';

revoke execute on function prebuilds.prune_claim_stats() from public;
grant execute on function prebuilds.prune_claim_stats() to prebuilds_reconciler;

-- >>> db/functions/wait_for_claims.sql
-- Called by `prebuilds run` before each cycle, in a transaction of its own: wait until every
-- claim in flight (holding CLAIMS_IN_FLIGHT shared, see notify_claim) has committed or rolled
-- back, so the cycle's snapshot sees the claims whose notification another claim sent. Waits at
-- most p_timeout_ms; false when that was not enough (a claim inside a long transaction): the
-- loop then runs the cycle and another one shortly after. New claims queue behind the wait, so
-- it is short.

create function prebuilds.wait_for_claims(p_timeout_ms int)
returns bool
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    perform pg_catalog.set_config('lock_timeout', p_timeout_ms || 'ms', true);
    perform pg_catalog.pg_advisory_xact_lock(8102650152842191213);
    return true;
exception
    when lock_not_available then
        return false;
end;
$$;

comment on function prebuilds.wait_for_claims(int) is
'Waits up to p_timeout_ms for the claims in flight to end (CLAIMS_IN_FLIGHT exclusive, for the '
'rest of the transaction); false on timeout.';

revoke execute on function prebuilds.wait_for_claims(int) from public;
grant execute on function prebuilds.wait_for_claims(int) to prebuilds_reconciler;

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

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
