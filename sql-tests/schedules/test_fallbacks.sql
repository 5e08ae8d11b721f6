-- Bad schedule data present anyway (written with the checks disabled, or a time zone the server
-- stopped knowing) never breaks the plan: the preset falls back to desired_instances and
-- preset_state.schedule_note says why (SPEC 4.3). Monday 2 June 2025 10:00 UTC throughout; every
-- schedule below would match then.
begin;
select plan(15);

do $$
begin
    -- In force: a valid schedule in a valid time zone.
    perform fixture.schedule(
        fixture.timezone(fixture.active_preset('in-force', 1), 'UTC'), '* 9-18 * * 1-5', 3
    );
    -- None matching now.
    perform fixture.schedule(
        fixture.timezone(fixture.active_preset('evening', 1), 'UTC'), '* 19-23 * * *', 3
    );
    -- No schedules at all.
    perform fixture.active_preset('plain', 2);
    -- A schedule on a preset without a time zone ('' is the default): ignored.
    perform fixture.schedule(fixture.active_preset('no-zone', 1), '* 9-18 * * 1-5', 3);
    -- Only schedules, no desired_instances: outside them the pool is 0.
    perform fixture.schedule(
        fixture.timezone(fixture.active_preset('only-scheduled', null), 'UTC'),
        '* 9-18 * * 1-5',
        2
    );
end;
$$;

-- Overlapping schedules, an invalid expression: written with the trigger disabled.
alter table prebuilds.preset_schedules disable trigger preset_schedules_check;

do $$
declare
    v_overlap uuid := fixture.timezone(fixture.active_preset('overlap', 1), 'UTC');
    v_invalid uuid := fixture.timezone(fixture.active_preset('invalid', 1), 'UTC');
begin
    perform fixture.schedule(v_overlap, '* 9-18 * * 1-5', 3);
    perform fixture.schedule(v_overlap, '* 10 * * *', 4);
    perform fixture.schedule(v_invalid, '* 9-18 * * MON-FRI', 3);
end;
$$;

alter table prebuilds.preset_schedules enable trigger preset_schedules_check;

-- A time zone that became unknown: written with the presets trigger disabled.
do $$
declare
    v_p uuid := fixture.timezone(fixture.active_preset('mars', 1), 'UTC');
begin
    perform fixture.schedule(v_p, '* 9-18 * * 1-5', 3);
end;
$$;

alter table prebuilds.presets disable trigger presets_check_timezone;
update prebuilds.presets set scheduling_timezone = 'Mars/Olympus'
where id = fixture.preset_of('mars');
alter table prebuilds.presets enable trigger presets_check_timezone;

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('in-force'))
    $$,
    $$values (3, 3, 'schedule ''* 9-18 * * 1-5'' in force')$$,
    'a valid schedule in force gives desired and is named'
);

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('evening'))
    $$,
    $$values (1, 1, 'no schedule matches now')$$,
    'no schedule matching: desired_instances, and the note says none matches'
);

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('plain'))
    $$,
    $$values (2, 2, null::text)$$,
    'a preset without schedules: desired_instances, no note'
);

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('no-zone'))
    $$,
    $$values (1, 1, 'schedules ignored: no scheduling_timezone')$$,
    'scheduling_timezone '''': the schedule is ignored and the note says so'
);

select results_eq(
    $$
    select desired, creates, schedule_note in (
        'schedules ignored: ''* 9-18 * * 1-5'' and ''* 10 * * *'' overlap',
        'schedules ignored: ''* 10 * * *'' and ''* 9-18 * * 1-5'' overlap'
    )
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('overlap'))
    $$,
    $$values (1, 1, true)$$,
    'overlapping schedules: desired_instances, and the note names both'
);

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('invalid'))
    $$,
    $$
    values (
        1, 1,
        'schedules ignored: ''* 9-18 * * MON-FRI'': day-of-week field: ''MON-FRI'' is not *, a '
        || 'number, a range a-b or a list of those'
    )
    $$,
    'an invalid expression: desired_instances, and the note says what is wrong with it'
);

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('mars'))
    $$,
    $$values (1, 1, 'schedules ignored: unknown time zone ''Mars/Olympus''')$$,
    'a time zone the server does not know: desired_instances, and the note names the zone'
);

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('only-scheduled'))
    $$,
    $$values (2, 2, 'schedule ''* 9-18 * * 1-5'' in force')$$,
    'a preset with schedules only (desired_instances null) is considered: 2 in the window'
);

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 20:00Z', fixture.preset_of('only-scheduled'))
    $$,
    $$values (0, 0, 'no schedule matches now')$$,
    'and 0 outside it, still listed in preset_state'
);

select results_eq(
    $$
    select preset_name, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 10:00Z')
    where blocked_reason is not null
    $$,
    $$select null::text, null::text where false$$,
    'bad schedule data blocks nothing: no blocked_reason anywhere'
);

-- A bad schedule already there does not break writing the others: the check compares a new
-- schedule with the valid ones only (the bad one would not even parse as numbers).
select lives_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      values (fixture.preset_of('invalid'), '* 10 * * 6', 2)$$,
    'a valid schedule can still be added next to an invalid one'
);

select lives_ok(
    $$update prebuilds.preset_schedules set cron_expression = '* 9-18 * * 1-5'
      where cron_expression = '* 9-18 * * MON-FRI'$$,
    'and the invalid one can be fixed'
);

select results_eq(
    $$
    select desired, creates, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('invalid'))
    $$,
    $$values (3, 3, 'schedule ''* 9-18 * * 1-5'' in force')$$,
    'once fixed, the schedule is in force'
);

-- The view preset_state (at now()) carries the note too.
select is(
    (
        select ps.schedule_note
        from prebuilds.preset_state as ps
        where ps.preset_id = fixture.preset_of('no-zone')
    ),
    'schedules ignored: no scheduling_timezone',
    'the view preset_state shows schedule_note'
);

-- An inactive preset has no desired size to look up: no note.
do $$
begin
    perform fixture.new_version('overlap', 'v2');
    perform fixture.prebuild(fixture.preset_of('overlap'), '2025-06-02 09:00Z');
end;
$$;

select results_eq(
    $$
    select desired, schedule_note
    from fixture.pool('2025-06-02 10:00Z', fixture.preset_of('overlap'))
    $$,
    $$values (0, null::text)$$,
    'a preset of an outdated version: desired 0 and no schedule note'
);

select * from finish();
rollback;
