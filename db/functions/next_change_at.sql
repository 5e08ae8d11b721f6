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
