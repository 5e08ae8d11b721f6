-- Revision 0009. Written by hand above the marker, in sections (one per piece of work).

-- >>> demand-sized pools (issue 11, SPEC 6.3) ---------------------------------------------------
-- The plan's pool size moves into pool_size_at; everything that reads or writes it is re-created.
drop view prebuilds.reconciliation_actions;
drop function prebuilds.reconciliation_actions_at(timestamptz);
drop function prebuilds.planned_actions_at(timestamptz);
drop view prebuilds.preset_state;
drop function prebuilds.preset_state_at(timestamptz);
drop function prebuilds.preset_plan_at(timestamptz);
drop function prebuilds.create_prebuild(uuid);
drop function prebuilds.configure_preset(uuid, jsonb);
drop function prebuilds.validate_pool_input(text, jsonb, bool);
drop function prebuilds.write_preset_pool(uuid, jsonb);
drop trigger presets_check_pool on prebuilds.presets;
drop function prebuilds.check_preset_pool();
drop trigger settings_check on prebuilds.settings;
drop function prebuilds.check_settings();
drop function prebuilds.next_change_at(timestamptz);

alter table prebuilds.presets
add column min_instances int check (min_instances between 0 and 10000),
add column max_instances int check (max_instances between 0 and 10000),
add constraint presets_min_max_instances_check check (
    min_instances is null or (max_instances is not null and min_instances <= max_instances)
);
comment on column prebuilds.presets.min_instances is
'Demand sizing (SPEC 6.3): the pool never shrinks below this; needs max_instances, at most it.';
comment on column prebuilds.presets.max_instances is
'Demand sizing (SPEC 6.3): set, the pool follows demand (claims in settings.demand_window × the '
'median build time) up to this many, and never below desired_instances or the schedule in force.';

alter table prebuilds.settings
add column demand_window interval not null default '1 hour'
check (demand_window between interval '1 minute' and interval '7 days'),
add column default_build_time interval not null default '10 minutes'
check (default_build_time between interval '1 second' and interval '1 day');
comment on column prebuilds.settings.demand_window is
'Demand sizing (SPEC 6.3): the claims (hits and misses) of this window before now estimate the '
'claim rate; 1 minute to 7 days.';
comment on column prebuilds.settings.default_build_time is
'Demand sizing (SPEC 6.3): the build time assumed for a preset with no successful prebuild in the '
'last 24 hours; 1 second to 1 day.';

create index workspace_builds_prebuild_starts_idx
on prebuilds.workspace_builds (preset_id, created_at)
where transition = 'start' and initiator_id = prebuilds.system_user_id();
comment on index prebuilds.workspace_builds_prebuild_starts_idx is
'Prebuild starts (initiated by the system user) per preset and time: the recent build times of '
'demand sizing.';
-- <<< demand-sized pools --------------------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/short_interval.sql
-- Internal: an interval as an operator reads it in a reason, to the second: 1h, 18m, 1h30m, 45s,
-- 2d3h. Used by pool_size_at's desired_reason.

create function prebuilds.short_interval(p_interval interval)
returns text
language sql
immutable
parallel safe
return (
    select
        case
            when x.s <= 0 then '0s'
            else
                concat(
                    nullif(x.s / 86400, 0) || 'd',
                    nullif(x.s % 86400 / 3600, 0) || 'h',
                    nullif(x.s % 3600 / 60, 0) || 'm',
                    nullif(x.s % 60, 0) || 's'
                )
        end
    from (select round(extract(epoch from p_interval))::bigint as s) as x
);

comment on function prebuilds.short_interval(interval) is
'Internal: p_interval rounded to the second and written as 2d3h, 1h30m, 18m, 45s (0s for none).';

-- >>> db/functions/pool_size_at.sql
-- Internal: the size of an active preset's pool at p_now and why (SPEC 4.2, 4.3, 6.3). The one
-- place the size is computed: preset_plan_at calls it for every active candidate and
-- create_prebuild for its re-check, so both size a pool alike. Plain SQL: the planner inlines it,
-- and runs the schedule, claim and build-time lookups only for presets that need them.
--
-- base = the schedule in force, else desired_instances, else 0. Without max_instances the pool is
-- base. With it, the pool follows demand (Little's law: the claims expected while a replacement
-- builds): demand = ceil(claims in settings.demand_window × median build time / window), and
-- desired = clamp(max(base, demand), coalesce(min_instances, 0), max_instances). Claims are the
-- hits and misses of the minute buckets of claim_stats that started in the window; the build time
-- is the median created → completed of the preset's successful prebuild starts queued in the last
-- 24 hours, else settings.default_build_time.

create function prebuilds.pool_size_at(
    p_preset_id uuid,
    p_desired_instances int,
    p_min_instances int,
    p_max_instances int,
    p_timezone text,
    p_has_schedules bool,
    p_now timestamptz
)
returns table (desired int, demand int, desired_reason text, schedule_note text)
language sql
stable
rows 1
begin atomic
    select
        case
            when p_max_instances is null then b.base
            else least(greatest(b.base, dm.demand, coalesce(p_min_instances, 0)), p_max_instances)
        end as desired,
        dm.demand,
        case
            when p_max_instances is null then b.base_reason
            else
                case
                    when b.base > dm.demand then b.base_reason || ' above '
                    else ''
                end
                || 'demand: '
                || dm.claims
                || ' claims in '
                || prebuilds.short_interval(dm.demand_window)
                || ' × ' || prebuilds.short_interval(dm.build_time) || ' builds'
                || case when dm.build_time_known then '' else ' (default_build_time)' end
                || ' = ' || dm.demand
                || ' (min ' || coalesce(p_min_instances, 0) || ', max ' || p_max_instances || ')'
        end as desired_reason,
        b.schedule_note
    from (
        select
            coalesce(sched.desired, p_desired_instances, 0) as base,
            case
                when sched.desired is not null then sched.note
                when p_desired_instances is not null then 'desired_instances'
                else 'no desired_instances'
            end as base_reason,
            sched.note as schedule_note
        from (select) as one
        -- The schedule in force (SPEC 4.3), looked up only for presets that have schedules.
        left join lateral (
            select
                ps.desired,
                ps.note
            from prebuilds.preset_schedule_at(p_preset_id, p_timezone, p_now) as ps
            where p_has_schedules
            -- Keeps the condition a gate in front of the call (not a filter after it).
            offset 0  -- noqa: AM09
        ) as sched on true
    ) as b
    -- Demand, only for presets sized by it.
    left join lateral (
        select
            c.claims,
            s.demand_window,
            coalesce(bt.build_time, s.default_build_time) as build_time,
            bt.build_time is not null as build_time_known,
            ceil(
                c.claims * extract(epoch from coalesce(bt.build_time, s.default_build_time))
                / extract(epoch from s.demand_window)
            )::int as demand
        from prebuilds.settings as s
        cross join
            lateral (
                select coalesce(sum(cs.hits + cs.misses), 0)::int as claims
                from prebuilds.claim_stats as cs
                where
                    cs.preset_id = p_preset_id
                    and cs.bucket > p_now - s.demand_window
                    and cs.bucket <= p_now
            ) as c
        cross join
            lateral (
                select
                    percentile_cont(0.5) within group (
                        order by j.completed_at - j.created_at
                    ) as build_time
                from prebuilds.workspace_builds as wb
                inner join prebuilds.provisioner_jobs as j on wb.job_id = j.id
                where
                    wb.preset_id = p_preset_id
                    and wb.transition = 'start'
                    and wb.initiator_id = prebuilds.system_user_id()
                    and wb.created_at > p_now - interval '24 hours'
                    and wb.created_at <= p_now
                    and j.status = 'succeeded'
                    and j.completed_at <= p_now
            ) as bt
        where p_max_instances is not null
        offset 0  -- noqa: AM09
    ) as dm on true;
end;

comment on function prebuilds.pool_size_at(uuid, int, int, int, text, bool, timestamptz) is
'Internal: the desired size of an active preset''s pool at p_now (schedule, desired_instances, '
'and demand when max_instances is set), the demand, the sentence saying why, and the schedule '
'note.';

-- >>> db/functions/preset_plan_at.sql
-- The whole reconciliation calculation (SPEC 4.1, 4.2, 4.4) as one query: state and work per
-- preset.
-- preset_state_at shows its state columns; reconciliation_actions_at unnests its work. Both read
-- the live prebuilds exactly once, through this function; nothing else computes a rule.
--
-- Inlined into its callers (no SET options, not security definer); their plans are cached.
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
    demand int,
    desired_reason text,
    work prebuilds.planned_work[]
)
language sql
stable
-- No SET options and not security definer: the function stays inlinable, so its body becomes part
-- of the plan of the wrappers that read it (reconciliation_actions_at, preset_state_at), which
-- cache that plan per connection and turn JIT off (SPEC 3).
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
        -- The table has exactly one row (keep_settings_row), which the planner cannot know for a
        -- table too small to be analysed: without the limit it assumes hundreds and multiplies
        -- every estimate joined to cfg by them, which made plans flip (users ×5 at 4× dogfood).
        limit 1  -- noqa: AM09
    ),

    -- Every live prebuild with the state of its latest build: the only read of fleet data.
    live as materialized (
        select
            w.id as workspace_id,
            w.created_at,
            w.current_preset_id as preset_id,
            lb.build_number,
            lb.transition,
            lb.build_created_at,
            lb.job_id,
            lb.job_status,
            lb.initiator_id = prebuilds.system_user_id() as by_system,
            lb.initiator_id = prebuilds.system_user_id()
            and lb.job_status in ('pending', 'running') as in_flight
        from prebuilds.workspaces as w
        -- Two primary-key lookups per live prebuild, whatever the statistics say: the fence
        -- (offset 0) keeps the planner from hashing the whole build history instead.
        cross join
            lateral (
                select
                    b.build_number,
                    b.transition,
                    b.created_at as build_created_at,
                    b.job_id,
                    b.initiator_id,
                    j.status as job_status
                from prebuilds.workspace_builds as b
                inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
                where b.id = w.latest_build_id
                offset 0  -- noqa: AM09
            ) as lb
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
                or p.max_instances is not null
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
            d.is_active
            and (
                d.desired_instances is not null or d.max_instances is not null or hs.has_schedules
            ) as has_pool,
            case when d.is_active then size.desired else 0 end as desired,
            size.schedule_note,
            size.demand,
            size.desired_reason as size_reason,
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
                    p.min_instances,
                    p.max_instances,
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
        -- The pool's size (SPEC 4.2, 4.3, 6.3), computed only for active presets.
        left join lateral (
            select
                ps.desired,
                ps.demand,
                ps.desired_reason,
                ps.schedule_note
            from prebuilds.pool_size_at(
                    d.preset_id, d.desired_instances, d.min_instances, d.max_instances,
                    d.scheduling_timezone, hs.has_schedules, p_now
                ) as ps
            where d.is_active
            -- Keeps the condition a gate in front of the call (not a filter after it).
            offset 0  -- noqa: AM09
        ) as size on true
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
            coalesce(rd.ready, false) as eligible,
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
        -- Readiness is looked up only for the prebuilds it can make eligible (the condition is a
        -- gate in front of the lookup, not a filter after it).
        left join lateral (
            select r.ready
            from prebuilds.agent_readiness(cl.job_id) as r
            where cl.running and not cl.expired and cl.is_active
            offset 0  -- noqa: AM09
        ) as rd on true
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
        wn.demand,
        case
            when wn.is_active then wn.size_reason
            else 'inactive: ' || wn.inactive_reason
        end as desired_reason,
        coalesce(wk.work, '{}') as work
    from wanted as wn
    left join allowed as a on wn.preset_id = a.preset_id
    left join work as wk on wn.preset_id = wk.preset_id;
end;

comment on function prebuilds.preset_plan_at(timestamptz) is
'Internal: the reconciliation state and planned work of every preset under consideration at '
'p_now. Read it through preset_state_at and reconciliation_actions_at.';

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

        union all

        -- Demand (SPEC 6.3): a demand-sized preset's demand changes when its oldest counted claim
        -- bucket leaves demand_window, and its build time when its oldest counted build leaves
        -- the 24 hours (pool_size_at counts the same rows, through the same keys).
        select
            unnest(array[
                (
                    select min(cs.bucket)
                    from prebuilds.claim_stats as cs
                    where
                        cs.preset_id = p.id
                        and cs.bucket > p_now - s.demand_window
                        and cs.bucket <= p_now
                ) + s.demand_window,
                (
                    select min(wb.created_at)
                    from prebuilds.workspace_builds as wb
                    where
                        wb.preset_id = p.id
                        and wb.transition = 'start'
                        and wb.initiator_id = prebuilds.system_user_id()
                        and wb.created_at > p_now - interval '24 hours'
                        and wb.created_at <= p_now
                ) + interval '24 hours'
            ]) as at
        from prebuilds.templates as t
        inner join prebuilds.presets as p on t.active_version_id = p.template_version_id
        cross join prebuilds.settings as s
        where not t.deleted and not t.deprecated and p.max_instances is not null

    -- SPEC 5 rules add their branches here, each one more set of candidate instants: a failed
    -- delete's retry instant, a hung job's timeouts (heartbeat, pending), a hard-limited
    -- preset's cooldown end.
    ) as c
    where c.at > p_now;
end;

comment on function prebuilds.next_change_at(timestamptz) is
'The earliest instant after p_now at which the plan changes with no write (a TTL expiry, the '
'end of a backoff, a schedule boundary, claims or builds leaving the demand windows); null when '
'none is known. prebuilds run wakes then.';

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
    demand int,
    desired_reason text,
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
            pp.demand,
            pp.desired_reason,
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

-- >>> db/functions/planned_actions_at.sql
-- Internal: the plan's actions at p_now, in the order to apply them (SPEC 3, 4.4). Cancels and
-- deletes first, then creates interleaved across presets, then informational backoff rows.
-- Actions past settings.max_actions_per_cycle are `deferred`: the next cycles take them.
-- Inlinable (plain SQL, no SET options): reconciliation_actions_at wraps it with a cached plan.

create function prebuilds.planned_actions_at(p_now timestamptz)
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

comment on function prebuilds.planned_actions_at(timestamptz) is
'Internal: every action of the plan at p_now, in order; read it through reconciliation_actions_at, '
'which caches its plan.';

-- >>> db/functions/reconciliation_actions_at.sql
-- The plan: every unit of work at p_now, in the order to apply it (SPEC 3, 4.4).
-- The driver reads it through the view reconciliation_actions; tests call it directly.
--
-- A PL/pgSQL wrapper for one reason: its statement's plan is cached for the connection
-- (plan_cache_mode = force_generic_plan: planned once, on the first call), and the SQL functions
-- below it (planned_actions_at, preset_plan_at) are inlined into that one plan. A SQL function is
-- otherwise planned again on every call (about 5 ms at dogfood scale). The cache lives in the
-- server, so it works behind PgBouncer in transaction mode, where client-side prepared statements
-- do not. JIT is off: compiling this plan costs far more than running it (SPEC 3).

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
language plpgsql
stable
security definer
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
rows 100
as $$
begin
    return query select pa.* from prebuilds.planned_actions_at(p_now) as pa;
end;
$$;

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
    ps.schedule_note,
    ps.claims_last_hour,
    ps.misses_last_hour,
    ps.demand,
    ps.desired_reason
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
comment on column prebuilds.preset_state.desired is
'Pool size wanted now (desired_reason says why); 0 when inactive.';
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
comment on column prebuilds.preset_state.demand is
'Demand-sized presets (max_instances set): ceil(claims in settings.demand_window × median build '
'time / window), the claims expected while a replacement builds; null otherwise.';
comment on column prebuilds.preset_state.desired_reason is
'Why desired is what it is: desired_instances, the schedule in force, or the demand sentence '
'(claims × build time = demand, min, max); inactive presets say why they are inactive.';

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
    elsif new.demand_window not between interval '1 minute' and interval '7 days' then
        v_problem := format(
            'demand_window must be between 1 minute and 7 days (got %s)', new.demand_window
        );
    elsif new.default_build_time not between interval '1 second' and interval '1 day' then
        v_problem := format(
            'default_build_time must be between 1 second and 1 day (got %s)',
            new.default_build_time
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
    elsif new.max_instances not between 0 and 10000 then
        v_problem := format(
            'max_instances must be between 0 and 10000, or null for no demand sizing (got %s)',
            new.max_instances
        );
    elsif new.min_instances not between 0 and 10000 then
        v_problem := format(
            'min_instances must be between 0 and 10000, or null (got %s)', new.min_instances
        );
    elsif new.min_instances is not null and new.max_instances is null then
        v_problem := format(
            'min_instances (%s) needs max_instances: demand sizing is on only with a maximum',
            new.min_instances
        );
    elsif new.min_instances > new.max_instances then
        v_problem := format(
            'min_instances (%s) must not exceed max_instances (%s)',
            new.min_instances, new.max_instances
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
        'desired_instances', 'ttl_seconds', 'scheduling_timezone', 'schedules',
        'min_instances', 'max_instances'
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
            if v_key = any(v_version_keys) and not p_publishing then
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
        foreach v_key in array array[
            'desired_instances', 'ttl_seconds', 'min_instances', 'max_instances'
        ] loop
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

    if p_pool ?| array['desired_instances', 'ttl_seconds', 'min_instances', 'max_instances'] then
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
            end,
            min_instances = case
                when p_pool ? 'min_instances' then (p_pool ->> 'min_instances')::int
                else p.min_instances
            end,
            max_instances = case
                when p_pool ? 'max_instances' then (p_pool ->> 'max_instances')::int
                else p.max_instances
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

-- >>> db/functions/configure_preset.sql
-- Change a preset's pool settings without publishing a version (SPEC 7): desired_instances,
-- ttl_seconds, scheduling_timezone, schedules, min_instances, max_instances. Keys not given are
-- left alone, JSON null clears, schedules given replace the preset's schedules. The same
-- validation and messages as publish_template_version; an error changes nothing. Called by the
-- platform.

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
'schedules, min_instances, max_instances) of preset p_preset_id; keys not given are left alone, '
'null clears.';

revoke execute on function prebuilds.configure_preset(uuid, jsonb) from public;
grant execute on function prebuilds.configure_preset(uuid, jsonb) to prebuilds_platform;

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
