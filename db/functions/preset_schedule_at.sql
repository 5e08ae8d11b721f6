-- The schedule in force for a preset at an instant (SPEC 4.3), and why when none can be used.
-- Called by preset_plan_at (every candidate preset) and create_prebuild (its re-check), so the
-- answer to "how many now?" has one definition. One row always:
--   desired null, note null            no schedules: use desired_instances
--   desired null, note 'no schedule…'  none matches now: use desired_instances
--   desired null, note 'schedules ignored: …'  no time zone, unknown zone, bad or overlapping data
--   desired n, note 'schedule … in force'

create function prebuilds.preset_schedule_at(
    p_preset_id uuid, p_timezone text, p_now timestamptz
)
returns table (desired int, note text)
language plpgsql
stable
set search_path = ''
rows 1
as $$
declare
    v_problem text;
begin
    if not exists (select from prebuilds.preset_schedules as s where s.preset_id = p_preset_id) then
        return query select null::int, null::text;
        return;
    end if;

    v_problem := prebuilds.timezone_error(p_timezone);
    if v_problem is null then
        select quote_literal(s.cron_expression) || ': '
               || prebuilds.cron_expression_error(s.cron_expression)
        into v_problem
        from prebuilds.preset_schedules as s
        where s.preset_id = p_preset_id
          and prebuilds.cron_expression_error(s.cron_expression) is not null
        order by s.created_at, s.id
        limit 1;
    end if;
    if v_problem is null then
        select quote_literal(a.cron_expression) || ' and ' || quote_literal(b.cron_expression)
               || ' overlap'
        into v_problem
        from prebuilds.preset_schedules as a
        join prebuilds.preset_schedules as b on b.preset_id = a.preset_id and a.id < b.id
        where a.preset_id = p_preset_id
          and prebuilds.schedules_overlap(a.cron_expression, b.cron_expression)
        order by a.created_at, a.id, b.created_at, b.id
        limit 1;
    end if;
    if v_problem is not null then
        return query select null::int, 'schedules ignored: ' || v_problem;
        return;
    end if;

    return query
    select s.desired_instances, 'schedule ' || quote_literal(s.cron_expression) || ' in force'
    from prebuilds.preset_schedules as s
    where s.preset_id = p_preset_id
      and prebuilds.cron_matches(s.cron_expression, p_timezone, p_now)
    order by s.created_at, s.id
    limit 1;
    if not found then
        return query select null::int, 'no schedule matches now'::text;
    end if;
end;
$$;

comment on function prebuilds.preset_schedule_at(uuid, text, timestamptz) is
'The pool size a preset''s schedules give at p_now (null: use desired_instances) and a note '
'saying which schedule is in force or why the schedules are ignored.';
