-- Downgrade of revision 0010 to 0009. Written by hand above the marker, in sections; below it,
-- the 0009 text of the objects 0010 re-created.

-- >>> self-healing pools (issue 10, SPEC 5) ------------------------------------------------------
drop view prebuilds.prebuild_failures;
drop view prebuilds.reconciliation_actions;
drop view prebuilds.preset_state;
drop function prebuilds.planned_actions_at(timestamptz);
drop function prebuilds.preset_state_at(timestamptz);
drop function prebuilds.preset_plan_at(timestamptz);
drop function prebuilds.next_change_at(timestamptz);
drop function prebuilds.next_change_after(timestamptz);
drop function prebuilds.apply_action(bigint, int, text, uuid, uuid, text);
drop function prebuilds.cleanup_prebuilds(text[], text, text, text, timestamptz, int, bool);
drop function prebuilds.fail_job(uuid);
drop function prebuilds.delete_prebuild(uuid);
drop function prebuilds.cancel_prebuild(uuid);
drop function prebuilds.complete_job(uuid, text);
drop function prebuilds.count_claim(uuid, bool);
drop function prebuilds.count_prebuild_event(uuid, text);
drop function prebuilds.delete_retry_at(timestamptz, int, interval);
drop function prebuilds.describe_age(interval);
drop trigger settings_check on prebuilds.settings;
drop function prebuilds.check_settings();
drop trigger workspace_builds_track_latest on prebuilds.workspace_builds;
drop function prebuilds.track_latest_build();

drop index prebuilds.provisioner_jobs_failed_idx;
alter table prebuilds.preset_counters drop column hung_failed, drop column delete_retried;
alter table prebuilds.workspaces drop column delete_failures;
alter table prebuilds.settings
drop column delete_retry_interval,
drop column delete_retry_limit,
drop column job_heartbeat_timeout,
drop column job_pending_timeout,
drop column hard_limit_cooldown,
drop column failed_prebuild_retention;

-- fail_job rows go with the action: the older log knows no such action.
delete from prebuilds.reconciliation_action_log where action = 'fail_job';
alter table prebuilds.reconciliation_action_log
drop constraint reconciliation_action_log_action_check,
add constraint reconciliation_action_log_action_check
check (action in ('cancel', 'delete', 'create', 'backoff'));
comment on column prebuilds.reconciliation_action_log.action is
'cancel, delete, create or backoff.';

comment on type prebuilds.planned_work is
'A planned cancel or delete: action, target workspace and the reason an operator reads.';
comment on column prebuilds.planned_work.action is 'cancel or delete.';
comment on column prebuilds.planned_work.workspace_id is 'The workspace to cancel or delete.';
-- <<< self-healing pools -------------------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

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
