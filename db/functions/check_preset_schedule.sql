-- Trigger function: rejects a schedule whose expression is invalid, whose preset's time zone is
-- unknown, or that overlaps another schedule of its preset, with a message naming the problem.
-- Called by the trigger preset_schedules_check before every insert or update.

create function prebuilds.check_preset_schedule()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_error text;
    v_timezone text;
    v_other text;
begin
    v_error := prebuilds.cron_expression_error(new.cron_expression);
    if v_error is not null then
        raise exception 'invalid schedule %: %', quote_literal(new.cron_expression), v_error
            using errcode = 'check_violation',
                  hint = 'Schedules are `* HOUR DOM MONTH DOW`, e.g. `* 9-18 * * 1-5`.';
    end if;

    select p.scheduling_timezone into v_timezone
    from prebuilds.presets as p where p.id = new.preset_id;
    if v_timezone <> '' and prebuilds.timezone_error(v_timezone) is not null then
        raise exception 'invalid schedule %: preset % has %', quote_literal(new.cron_expression),
            new.preset_id, prebuilds.timezone_error(v_timezone)
            using errcode = 'check_violation';
    end if;

    -- An invalid schedule already there (written without this check) cannot be compared; it
    -- keeps the preset's schedules ignored until it is fixed, and must not block fixing it.
    select s.cron_expression into v_other
    from prebuilds.preset_schedules as s
    where s.preset_id = new.preset_id and s.id <> new.id
      and prebuilds.schedules_overlap(s.cron_expression, new.cron_expression)
    order by s.created_at, s.id
    limit 1;
    if found then
        raise exception 'invalid schedule %: it overlaps schedule % of the same preset',
            quote_literal(new.cron_expression), quote_literal(v_other)
            using errcode = 'check_violation';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_preset_schedule() is
'Trigger: rejects invalid, overlapping or unusable schedules with a clear error.';
