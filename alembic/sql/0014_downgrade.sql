-- Revision 0014, undone. Written by hand above the marker, in sections (one per piece of work).

-- >>> a cheaper plan read (issue 9) --------------------------------------------------------------
-- preset_plan_at and preset_schedule_at are re-created, and with them the functions whose
-- bodies (begin atomic) depend on them.
drop function prebuilds.planned_actions_at(timestamptz);
drop function prebuilds.preset_plan_at(timestamptz);
drop function prebuilds.next_change_after(timestamptz);
drop function prebuilds.pool_size_at(uuid, int, int, int, text, bool, timestamptz);
drop function prebuilds.preset_schedule_at(uuid, text, timestamptz);

-- The copied build facts go; the trigger is re-created as it was.
drop trigger workspace_builds_track_latest on prebuilds.workspace_builds;
drop function prebuilds.track_latest_build();
alter table prebuilds.workspaces
drop column latest_build_transition,
drop column latest_build_created_at,
drop column latest_build_initiator_id,
drop column latest_build_job_id;
-- <<< a cheaper plan read -------------------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/track_latest_build.sql
-- Trigger function: keeps workspaces.latest_build_*, current_preset_id and delete_failures in step
-- with the builds, so readers find a workspace's state in one primary-key lookup instead of
-- scanning its history.
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
'Trigger: points workspaces.latest_build_id and current_preset_id at the newest build and '
'resets delete_failures unless the new build is a delete.';

-- >>> db/triggers/workspace_builds_track_latest.sql
-- Maintains the latest-build pointer on workspaces for every writer, not only our functions.
-- Builds are append-only: updating a build's number, workspace or preset is not supported.

create trigger workspace_builds_track_latest
after insert on prebuilds.workspace_builds
for each row execute function prebuilds.track_latest_build();

comment on trigger workspace_builds_track_latest on prebuilds.workspace_builds is
'Keeps workspaces.latest_build_id, latest_build_number and current_preset_id current.';

-- >>> db/functions/preset_schedule_at.sql
-- The schedule in force for a preset at an instant (SPEC 4.3), and why when none can be used.
-- Called by preset_plan_at (for candidates with schedules) and create_prebuild (its re-check), so
-- the answer to "how many now?" has one definition. A single query, which the planner inlines
-- into its caller, over the masks and errors parsed when each schedule was written: only bits
-- are tested here. No row when the preset has no schedules; otherwise one:
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
                    select quote_literal(s.cron_expression) || ': ' || s.expression_error
                    from prebuilds.preset_schedules as s
                    where s.preset_id = p_preset_id and s.expression_error is not null
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
                        and prebuilds.cron_masks_overlap(a.masks, b.masks)
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
            and prebuilds.cron_masks_match(s.masks, problem.local_now)
        order by s.created_at, s.id
        limit 1
    ) as in_force on true;
end;

comment on function prebuilds.preset_schedule_at(uuid, text, timestamptz) is
'The pool size a preset''s schedules give at p_now (null: use desired_instances) and a note '
'saying which schedule is in force or why the schedules are ignored; no row without schedules.';

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
        -- One row, and the planner must know it: a table this small is never analysed, and its
        -- default estimate of hundreds of rows multiplied the plan's (SPEC 3; see cfg there).
        from (
            select
                st.demand_window,
                st.default_build_time
            from prebuilds.settings as st
            limit 1  -- noqa: AM09
        ) as s
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
-- The whole reconciliation calculation (SPEC 4.1, 4.2, 4.4, 5) as one query: state and work per
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
    last_error text,
    retrying_deletes int,
    quarantined int,
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
            s.max_pending_creates,
            s.delete_retry_interval,
            s.delete_retry_limit,
            s.job_heartbeat_timeout,
            s.job_pending_timeout,
            s.hard_limit_cooldown,
            s.failed_prebuild_retention
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
            w.delete_failures,
            lb.build_number,
            lb.transition,
            lb.build_created_at,
            lb.job_id,
            lb.job_status,
            lb.job_created_at,
            lb.heartbeat_at,
            lb.finished_at,
            lb.job_error,
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
                    j.status as job_status,
                    j.created_at as job_created_at,
                    -- A job picked up before heartbeats were recorded beats at its start.
                    coalesce(j.updated_at, j.started_at) as heartbeat_at,
                    j.completed_at as finished_at,
                    j.error as job_error
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
                d.desired_instances is not null or d.max_instances is not null or d.has_schedules
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
                    ) as is_active,
                    -- Here, behind the fence, it stays a column: pulled up, it would be the EXISTS
                    -- itself, and a function whose arguments hold a sub-select is not inlined
                    -- (pool_size_at would then be planned on every call: 0.6 ms per preset).
                    exists(
                        select from prebuilds.preset_schedules as s
                        where s.preset_id = p.id
                    ) as has_schedules
                from prebuilds.presets as p
                inner join prebuilds.template_versions as v on p.template_version_id = v.id
                inner join prebuilds.templates as t on v.template_id = t.id
                inner join prebuilds.organizations as o on t.organization_id = o.id
                left join prebuilds.template_versions as av on t.active_version_id = av.id
                where p.id = pooled.preset_id
                offset 0  -- noqa: AM09
            ) as d
        -- The pool's size (SPEC 4.2, 4.3, 6.3), computed only for active presets.
        left join lateral (
            select
                ps.desired,
                ps.demand,
                ps.desired_reason,
                ps.schedule_note
            from prebuilds.pool_size_at(
                    d.preset_id, d.desired_instances, d.min_instances, d.max_instances,
                    d.scheduling_timezone, d.has_schedules, p_now
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
                as in_history,
            -- SPEC 5.2: a job of the system user that stopped beating, or that nobody picked up.
            case
                when l.by_system and l.job_status = 'running'
                    and l.heartbeat_at < p_now - cfg.job_heartbeat_timeout
                    then 'hung: no heartbeat for '
                        || date_trunc('second', p_now - l.heartbeat_at)::text
                when l.by_system and l.job_status = 'pending'
                    and l.job_created_at < p_now - cfg.job_pending_timeout
                    then 'hung: not picked up for '
                        || date_trunc('second', p_now - l.job_created_at)::text
            end as hung_reason,
            -- SPEC 5.1: a failed delete, retried until delete_retry_limit retries failed too.
            l.transition = 'delete' and l.job_status = 'failed' as failed_delete,
            l.transition = 'delete' and l.job_status = 'failed'
            and greatest(l.delete_failures, 1) > cfg.delete_retry_limit as quarantined,
            l.transition = 'delete' and l.job_status = 'failed'
            and greatest(l.delete_failures, 1) <= cfg.delete_retry_limit
            and prebuilds.delete_retry_at(
                l.finished_at, l.delete_failures, cfg.delete_retry_interval
            ) <= p_now as retry_due,
            -- SPEC 5.5: failed starts and stops, and stopped prebuilds, past the retention.
            (
                (l.transition in ('start', 'stop') and l.job_status = 'failed')
                or (l.transition = 'stop' and l.job_status = 'succeeded')
            )
            and l.finished_at < p_now - cfg.failed_prebuild_retention as cleanup_due
        from live as l
        inner join candidate as c on l.preset_id = c.preset_id
        cross join cfg
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
            ) as history_rank,
            -- The same among finished builds only: the hard limit looks at results, so a probe
            -- in flight neither ends nor extends it (SPEC 5.4).
            row_number() over (
                partition by cl.preset_id, cl.in_history and not cl.in_flight
                order by cl.build_created_at desc, cl.workspace_id asc
            ) as settled_rank,
            -- Newest first among the queued initial builds: surplus cancel order (SPEC 5.3).
            row_number() over (
                partition by cl.preset_id, cl.queued_initial
                order by cl.created_at desc, cl.workspace_id desc
            ) as queued_rank
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
                and r.settled_rank <= cfg.failure_hard_limit
            ) as hard_limit_failures,
            -- The oldest of the failures that make the hard limit, and the most recent failure
            -- (when it finished): the probe's cooldown runs from there (SPEC 5.4).
            min(r.build_created_at) filter (
                where r.in_history and r.job_status = 'failed'
                and r.settled_rank <= cfg.failure_hard_limit
            ) as hard_limited_since,
            max(coalesce(r.finished_at, r.build_created_at)) filter (
                where r.in_history and r.job_status = 'failed'
            ) as last_failed_at,
            (
                array_agg(r.job_error order by r.build_created_at desc, r.workspace_id asc)
                filter (where r.in_history and r.recent_failure)
            )[1] as last_error,
            count(*) filter (where r.queued_initial) as queued,
            count(*) filter (where r.failed_delete and not r.quarantined) as retrying_deletes,
            count(*) filter (where r.quarantined) as quarantined,
            -- Work of SPEC 5 that keeps a preset under consideration (SPEC 4.1).
            count(*) filter (
                where r.hung_reason is not null or r.failed_delete or r.cleanup_due
            ) as self_healing
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
            coalesce(tl.queued, 0)::int as queued,
            coalesce(tl.retrying_deletes, 0)::int as retrying_deletes,
            coalesce(tl.quarantined, 0)::int as quarantined,
            tl.last_error,
            tl.hard_limited_since,
            tl.last_failed_at,
            c.is_active
            and cfg.failure_hard_limit > 0
            and coalesce(tl.hard_limit_failures, 0) = cfg.failure_hard_limit as hard_limited,
            case
                when
                    c.is_active and tl.failed_recently
                    and tl.last_failure_at + tl.failures * cfg.backoff_interval > p_now
                    then tl.last_failure_at + tl.failures * cfg.backoff_interval
            end as backoff_until,
            cfg.paused,
            cfg.hard_limit_cooldown
        from candidate as c
        cross join cfg
        left join tally as tl on c.preset_id = tl.preset_id
        -- SPEC 4.1: a pool on an active version, or something left to clean up.
        where c.has_pool or tl.actual > 0 or tl.pending_cancelable > 0 or tl.self_healing > 0
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
            end as creates_wanted,
            -- SPEC 5.3: queued initial builds beyond what the pool needs, cancelled newest first.
            case
                when st.is_active
                    then least(
                            st.queued,
                            greatest(st.actual - st.expired + st.starting - st.desired, 0)
                        )
                else 0
            end as surplus_queued,
            -- SPEC 5.4: one probe build once the cooldown after the last failure is over.
            coalesce(
                st.hard_limited
                and st.last_failed_at + st.hard_limit_cooldown <= p_now
                and st.starting = 0,
                false
            ) as probing
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
        cross join
            lateral generate_series(
                1,
                case
                    when wn.hard_limited and wn.probing then least(wn.creates_wanted, 1)
                    when wn.hard_limited or wn.backoff_until is not null then 0
                    else wn.creates_wanted
                end
            ) as slot (n)
        where not wn.paused
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

    -- What to do with each live prebuild, if anything: one action per workspace.
    decided as (
        select
            r.preset_id,
            r.workspace_id,
            r.created_at,
            r.expired,
            r.queued_rank,
            case
                when r.queued_initial and not wn.is_active then 'cancel'
                when r.queued_initial and r.queued_rank <= wn.surplus_queued then 'cancel'
                when r.hung_reason is not null then 'fail_job'
                when r.retry_due or r.cleanup_due then 'delete'
                when not wn.is_active and r.running then 'delete'
                when wn.is_active and r.expired then 'delete'
                when
                    wn.is_active and r.running and not r.expired
                    and r.age_rank <= wn.extraneous
                    then 'delete'
            end as action,
            case
                when r.queued_initial and not wn.is_active
                    then wn.inactive_reason || ': initial build still queued'
                when r.queued_initial and r.queued_rank <= wn.surplus_queued
                    then 'surplus: ' || (wn.actual - wn.expired) || ' running, '
                        || wn.starting || ' starting, ' || wn.desired
                        || ' desired: initial build still queued'
                when r.hung_reason is not null then r.hung_reason
                when r.retry_due
                    then 'retry ' || greatest(r.delete_failures, 1) || ' of '
                        || cfg.delete_retry_limit || ': last delete failed at '
                        || to_char(r.finished_at, 'YYYY-MM-DD HH24:MI:SSOF') || ': '
                        || coalesce(r.job_error, 'no error recorded')
                when r.cleanup_due
                    then 'cleanup: '
                        || case when r.job_status = 'failed' then 'failed ' else '' end
                        || r.transition || ' finished '
                        || prebuilds.describe_age(p_now - r.finished_at) || ' ago'
                when not wn.is_active then wn.inactive_reason
                when r.created_at < wn.last_invalidated_at
                    then 'expired: created before invalidation at '
                        || to_char(wn.last_invalidated_at, 'YYYY-MM-DD HH24:MI:SSOF')
                when r.expired
                    then 'expired: older than ttl ' || wn.ttl_seconds || 's'
                else
                    'surplus: ' || (wn.actual - wn.expired) || ' running, '
                    || wn.desired || ' desired'
            end as reason,
            r.queued_initial and wn.is_active as surplus_cancel
        from ranked as r
        inner join wanted as wn on r.preset_id = wn.preset_id
        cross join cfg
        where not wn.paused
    ),

    -- Per preset: cancels (surplus ones newest first), then failed hung jobs, then deletes
    -- (expired first, then oldest first), so queued work goes before any running prebuild.
    work as (
        select
            d.preset_id,
            array_agg(
                row(d.action, d.workspace_id, d.reason)::prebuilds.planned_work
                order by
                    case d.action when 'cancel' then 0 when 'fail_job' then 1 else 2 end,
                    case when d.surplus_cancel then d.queued_rank end,
                    d.expired desc, d.created_at asc, d.workspace_id asc
            ) as work
        from decided as d
        where d.action is not null
        group by d.preset_id
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
        case
            when wn.hard_limited
                then 'probe: hard-limited since '
                    || to_char(wn.hard_limited_since, 'YYYY-MM-DD HH24:MI:SSOF')
                    || ', last failure ' || to_char(wn.last_failed_at, 'YYYY-MM-DD HH24:MI:SSOF')
                    || ', cooldown ' || wn.hard_limit_cooldown::text
            else
                'missing: ' || (wn.actual - wn.expired) || ' running, ' || wn.starting
                || ' starting, ' || wn.desired || ' desired'
        end as creates_reason,
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
        wn.last_error,
        wn.retrying_deletes,
        wn.quarantined,
        coalesce(wk.work, '{}') as work
    from wanted as wn
    left join allowed as a on wn.preset_id = a.preset_id
    left join work as wk on wn.preset_id = wk.preset_id;
end;

comment on function prebuilds.preset_plan_at(timestamptz) is
'Internal: the reconciliation state and planned work of every preset under consideration at '
'p_now. Read it through preset_state_at and reconciliation_actions_at.';

-- >>> db/functions/next_change_after.sql
-- Internal: the rules of next_change_at (SPEC 6.1): one row, the earliest instant after p_now at
-- which a rule driven by the clock alone flips, with no write at all, or null. Plain SQL, so the
-- planner inlines it into next_change_at's plan, which is cached per connection.
-- Each time-driven rule is one branch of the union below: a set of candidate instants. A branch
-- may offer instants at which nothing ends up changing (the loop then runs an empty cycle); it
-- must never miss one. Schedules are looked ahead 48 hours (the longest --interval is a day: the
-- loop asks again before anything further away is due).

create function prebuilds.next_change_after(p_now timestamptz)
returns table (at timestamptz)
language sql
stable
rows 1
begin atomic
    with
    -- The one settings row, estimated as one (a table this small is never analysed).
    settings as (
        select st.*
        from prebuilds.settings as st
        limit 1  -- noqa: AM09
    ),

    -- Every live prebuild with its latest build and job, read once for the branches below that
    -- look at prebuilds (TTL, backoff, self-healing, the hard-limit probe).
    live as materialized (
        select
            w.created_at,
            w.current_preset_id as preset_id,
            w.delete_failures,
            b.transition,
            b.initiator_id,
            b.created_at as build_created_at,
            j.status as job_status,
            j.created_at as job_created_at,
            j.started_at as job_started_at,
            j.updated_at as job_updated_at,
            j.completed_at as job_completed_at
        from prebuilds.workspaces as w
        inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
        inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
        where w.owner_id = prebuilds.system_user_id() and not w.deleted
    )

    select min(c.at) as at
    from (
        -- TTL: a running prebuild is expired once older than ttl_seconds (is_expired).
        select l.created_at + make_interval(secs => p.ttl_seconds + 0.000001) as at
        from live as l
        inner join prebuilds.presets as p on l.preset_id = p.id
        where
            l.transition = 'start'
            and l.job_status = 'succeeded'
            and p.ttl_seconds > 0
            and l.created_at + make_interval(secs => p.ttl_seconds) >= p_now

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
                max(l.build_created_at) as last_failure_at,
                min(l.build_created_at) as first_failure_at,
                count(*) as failures,
                min(s.backoff_interval) as backoff_interval,
                min(s.backoff_lookback) as backoff_lookback
            from live as l
            inner join prebuilds.presets as p on l.preset_id = p.id
            cross join settings as s
            where
                l.transition = 'start'
                and l.job_status = 'failed'
                and l.build_created_at >= p_now - s.backoff_lookback
                and (p.failures_reset_at is null or l.build_created_at >= p.failures_reset_at)
            group by l.preset_id
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
        cross join settings as s
        where not t.deleted and not t.deprecated and p.max_instances is not null

        union all

        -- Self-healing (SPEC 5), per live prebuild, from its latest build's job as the plan reads
        -- it: a failed delete's retry is due (5.1); a system job in flight becomes hung just after
        -- its heartbeat or its queueing plus the timeout (5.2); a failed or stopped prebuild
        -- passes the retention just after it finished plus failed_prebuild_retention (5.5).
        select
            unnest(array[
                case
                    when
                        l.transition = 'delete' and l.job_status = 'failed'
                        and greatest(l.delete_failures, 1) <= s.delete_retry_limit
                        then
                            prebuilds.delete_retry_at(
                                l.job_completed_at, l.delete_failures, s.delete_retry_interval
                            )
                end,
                case
                    when l.initiator_id = prebuilds.system_user_id() and l.job_status = 'running'
                        then coalesce(l.job_updated_at, l.job_started_at) + s.job_heartbeat_timeout
                            + interval '1 microsecond'
                    when l.initiator_id = prebuilds.system_user_id() and l.job_status = 'pending'
                        then l.job_created_at + s.job_pending_timeout + interval '1 microsecond'
                end,
                case
                    when
                        (l.transition in ('start', 'stop') and l.job_status = 'failed')
                        or (l.transition = 'stop' and l.job_status = 'succeeded')
                        then l.job_completed_at + s.failed_prebuild_retention
                            + interval '1 microsecond'
                end
            ]) as at
        from live as l
        cross join settings as s

        union all

        -- Hard-limit probe (SPEC 5.4): hard_limit_cooldown after a preset's last failed start
        -- finished (offered for every preset with one; the plan decides whether it is limited).
        select
            max(coalesce(l.job_completed_at, l.build_created_at))
            + min(s.hard_limit_cooldown) as at
        from live as l
        inner join prebuilds.presets as p on l.preset_id = p.id
        cross join settings as s
        where
            l.transition = 'start'
            and l.job_status = 'failed'
            and s.hard_limit_cooldown is not null
            and (p.failures_reset_at is null or l.build_created_at >= p.failures_reset_at)
        group by l.preset_id
    ) as c
    where c.at > p_now;
end;

comment on function prebuilds.next_change_after(timestamptz) is
'Internal: one row, the earliest instant after p_now at which the plan changes with no write, '
'or null; read it through next_change_at, which caches its plan.';

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

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
