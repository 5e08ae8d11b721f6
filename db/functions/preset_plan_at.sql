-- The whole reconciliation calculation (SPEC 4.1, 4.2, 4.4, 5) as one query: state and work per
-- preset.
-- preset_state_at shows its state columns; reconciliation_actions_at unnests its work. Both read
-- the live prebuilds exactly once, through this function; nothing else computes a rule.
--
-- Inlined into its callers (no SET options, not security definer); their plans are cached.
-- Cost follows the live fleet: the live prebuilds come from a partial index holding only them,
-- each joined by primary key to its latest build's job; active presets come from the live
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

    -- Every live prebuild with the state of its latest build: the only read of fleet data. The
    -- build's facts are copied on the workspace (track_latest_build); only its job is looked up.
    live as materialized (
        select
            w.id as workspace_id,
            w.created_at,
            w.current_preset_id as preset_id,
            w.delete_failures,
            w.latest_build_number as build_number,
            w.latest_build_transition as transition,
            w.latest_build_created_at as build_created_at,
            w.latest_build_job_id as job_id,
            j.job_status,
            j.job_created_at,
            j.heartbeat_at,
            j.finished_at,
            j.job_error,
            w.latest_build_initiator_id = prebuilds.system_user_id() as by_system,
            w.latest_build_initiator_id = prebuilds.system_user_id()
            and j.job_status in ('pending', 'running') as in_flight
        from prebuilds.workspaces as w
        -- One primary-key lookup per live prebuild, whatever the statistics say: the fence
        -- (offset 0) keeps the planner from hashing every job of history instead.
        cross join
            lateral (
                select
                    pj.status as job_status,
                    pj.created_at as job_created_at,
                    -- A job picked up before heartbeats were recorded beats at its start.
                    coalesce(pj.updated_at, pj.started_at) as heartbeat_at,
                    pj.completed_at as finished_at,
                    pj.error as job_error
                from prebuilds.provisioner_jobs as pj
                where pj.id = w.latest_build_job_id
                offset 0  -- noqa: AM09
            ) as j
        where w.owner_id = prebuilds.system_user_id() and not w.deleted
    ),

    -- Presets on the active version of a live template (SPEC 4.1, first half), with every column
    -- the rules read: one pass over the live templates, their active versions and presets (by
    -- presets' (template_version_id, name) key), never over old versions. Materialized: read
    -- twice, and has_schedules must stay a column (a function whose arguments hold a sub-select
    -- is not inlined: pool_size_at would be planned on every call).
    active as materialized (
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
            -- A hashed lookup, built once: not a scan of the schedules per preset.
            p.id in (select s.preset_id from prebuilds.preset_schedules as s) as has_schedules
        from prebuilds.templates as t
        inner join prebuilds.organizations as o on t.organization_id = o.id
        -- Both by index from each template, whatever the statistics say: hashed, every
        -- version or every preset would be read (fences: offset 0).
        cross join
            lateral (
                select tv.name
                from prebuilds.template_versions as tv
                where tv.id = t.active_version_id
                offset 0  -- noqa: AM09
            ) as v
        cross join
            lateral (
                select
                    pr.id,
                    pr.name,
                    pr.desired_instances,
                    pr.min_instances,
                    pr.max_instances,
                    pr.ttl_seconds,
                    pr.last_invalidated_at,
                    pr.failures_reset_at,
                    pr.scheduling_timezone
                from prebuilds.presets as pr
                where pr.template_version_id = t.active_version_id
                offset 0  -- noqa: AM09
            ) as p
        where not t.deleted and not t.deprecated
    ),

    -- The presets under consideration: active ones with a pool or with prebuilds, and the
    -- presets of inactive versions that still hold prebuilds (SPEC 4.1).
    candidate as (
        select
            a.preset_id,
            a.organization_name,
            a.template_name,
            a.template_version_name,
            a.preset_name,
            a.ttl_seconds,
            a.last_invalidated_at,
            a.failures_reset_at,
            true as is_active,
            a.desired_instances is not null or a.max_instances is not null or a.has_schedules
                as has_pool,
            -- Without schedules or demand the size is desired_instances, and pool_size_at says so
            -- in these words (sql-tests/preset_state_at/test_size_as_pool_size_at.sql holds the
            -- two to the same answer); the call is made only when there is more to compute.
            coalesce(size.desired, a.desired_instances, 0) as desired,
            size.schedule_note,
            size.demand,
            coalesce(
                size.desired_reason,
                case
                    when a.desired_instances is not null then 'desired_instances'
                    else 'no desired_instances'
                end
            ) as size_reason,
            null::text as inactive_reason
        from active as a
        -- The pool's size (SPEC 4.2, 4.3, 6.3) for presets sized by schedules or demand; the
        -- condition is a gate in front of the call, not a filter after it.
        left join lateral (
            select
                ps.desired,
                ps.demand,
                ps.desired_reason,
                ps.schedule_note
            from prebuilds.pool_size_at(
                    a.preset_id, a.desired_instances, a.min_instances, a.max_instances,
                    a.scheduling_timezone, a.has_schedules, p_now
                ) as ps
            where a.has_schedules or a.max_instances is not null
            offset 0  -- noqa: AM09
        ) as size on true
        where
            a.desired_instances is not null or a.max_instances is not null or a.has_schedules
            or a.preset_id in (select l.preset_id from live as l)
        union all
        -- Presets of inactive versions holding live prebuilds: cleanup only. One primary-key
        -- lookup each; the fence (offset 0) keeps the planner from scanning every preset and
        -- version to hash-join a handful of rows.
        select
            d.preset_id,
            d.organization_name,
            d.template_name,
            d.template_version_name,
            d.preset_name,
            d.ttl_seconds,
            d.last_invalidated_at,
            d.failures_reset_at,
            false as is_active,
            false as has_pool,
            0 as desired,
            null as schedule_note,
            null as demand,
            null as size_reason,
            case
                when d.template_deleted then 'template ' || d.template_name || ' deleted'
                when d.template_deprecated then 'template ' || d.template_name || ' deprecated'
                when d.active_version_name is null
                    then 'template ' || d.template_name || ' has no active version'
                else
                    'outdated version ' || d.template_version_name || ' (active: '
                    || d.active_version_name || ')'
            end as inactive_reason
        from (
            select distinct l.preset_id
            from live as l
            where
                l.preset_id is not null
                and l.preset_id not in (select a.preset_id from active as a)
        ) as held
        cross join
            lateral (
                select
                    p.id as preset_id,
                    o.name as organization_name,
                    t.name as template_name,
                    v.name as template_version_name,
                    p.name as preset_name,
                    p.ttl_seconds,
                    p.last_invalidated_at,
                    p.failures_reset_at,
                    t.deleted as template_deleted,
                    t.deprecated as template_deprecated,
                    av.name as active_version_name
                from prebuilds.presets as p
                inner join prebuilds.template_versions as v on p.template_version_id = v.id
                inner join prebuilds.templates as t on v.template_id = t.id
                inner join prebuilds.organizations as o on t.organization_id = o.id
                left join prebuilds.template_versions as av on t.active_version_id = av.id
                where p.id = held.preset_id
                offset 0  -- noqa: AM09
            ) as d
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
            -- Most recent first among the failure history (backoff and hard-limit windows), and
            -- the same among finished builds only: the hard limit looks at results, so a probe
            -- in flight neither ends nor extends it (SPEC 5.4). One order, so one sort.
            count(*) filter (where cl.in_history) over by_recency as history_rank,
            count(*) filter (where cl.in_history and not cl.in_flight) over by_recency
                as settled_rank
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
        window
            by_recency as (
                partition by cl.preset_id
                order by cl.build_created_at desc, cl.workspace_id asc
                rows unbounded preceding
            )
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
        -- A slot per create. unnest of an array, not generate_series: the planner takes a
        -- non-constant generate_series for 1,000 rows and sized the hash of `allowed` for
        -- 228,000 slots, built on every read; an array it takes for 10.
        cross join
            lateral unnest(array_fill(1, array[
                case
                    when wn.hard_limited and wn.probing then least(wn.creates_wanted, 1)
                    when wn.hard_limited or wn.backoff_until is not null then 0
                    else wn.creates_wanted
                end
            ])) with ordinality as slot (one, n)
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

    -- The order surplus goes in, ranked only where a pool has surplus (rarely), not for every
    -- prebuild: oldest first among the unexpired running prebuilds, newest first among the
    -- queued initial builds (SPEC 5.3). The two sets never share a row.
    surplus_ranked as (
        select
            r.workspace_id,
            row_number() over (
                partition by r.preset_id, r.queued_initial
                order by r.created_at, r.workspace_id
            ) as age_rank,
            row_number() over (
                partition by r.preset_id, r.queued_initial
                order by r.created_at desc, r.workspace_id desc
            ) as queued_rank
        from ranked as r
        inner join wanted as wn on r.preset_id = wn.preset_id
        where
            (wn.extraneous > 0 and r.running and not r.expired)
            or (wn.surplus_queued > 0 and r.queued_initial)
    ),

    -- What to do with each live prebuild, if anything: one action per workspace.
    decided as (
        select
            r.preset_id,
            r.workspace_id,
            r.created_at,
            r.expired,
            sr.queued_rank,
            case
                when r.queued_initial and not wn.is_active then 'cancel'
                when r.queued_initial and sr.queued_rank <= wn.surplus_queued then 'cancel'
                when r.hung_reason is not null then 'fail_job'
                when r.retry_due or r.cleanup_due then 'delete'
                when not wn.is_active and r.running then 'delete'
                when wn.is_active and r.expired then 'delete'
                when
                    wn.is_active and r.running and not r.expired
                    and sr.age_rank <= wn.extraneous
                    then 'delete'
            end as action,
            case
                when r.queued_initial and not wn.is_active
                    then wn.inactive_reason || ': initial build still queued'
                when r.queued_initial and sr.queued_rank <= wn.surplus_queued
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
        left join surplus_ranked as sr on r.workspace_id = sr.workspace_id
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
