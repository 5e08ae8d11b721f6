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

    -- Every live prebuild with its latest build (its facts copied on the workspace) and job,
    -- read once for the branches below that look at prebuilds (TTL, backoff, self-healing, the
    -- hard-limit probe).
    live as materialized (
        select
            w.created_at,
            w.current_preset_id as preset_id,
            w.delete_failures,
            w.latest_build_transition as transition,
            w.latest_build_initiator_id as initiator_id,
            w.latest_build_created_at as build_created_at,
            j.status as job_status,
            j.created_at as job_created_at,
            j.started_at as job_started_at,
            j.updated_at as job_updated_at,
            j.completed_at as job_completed_at
        from prebuilds.workspaces as w
        inner join prebuilds.provisioner_jobs as j on w.latest_build_job_id = j.id
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
