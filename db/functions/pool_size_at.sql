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
