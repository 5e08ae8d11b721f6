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
        -- Computed once: pulled up, the reason (two sub-selects) would be copied into each of
        -- its four uses below, each planned and run on its own.
        offset 0  -- noqa: AM09
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
