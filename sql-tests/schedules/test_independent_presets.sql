-- Two presets of one template version with different schedules (and time zones) reconcile
-- independently (SPEC 4.3): each preset's schedules and prebuilds decide its own pool only.
-- Monday 2 June 2025; Berlin is on CEST (UTC+2).
begin;
select plan(9);

do $$
declare
    v_version uuid := fixture.version(fixture.template('t'), 'v1');
    v_office uuid := fixture.timezone(fixture.preset(v_version, 'office', 1), 'UTC');
    v_night uuid := fixture.timezone(fixture.preset(v_version, 'night', 0), 'Europe/Berlin');
begin
    perform fixture.schedule(v_office, '* 9-18 * * 1-5', 3);
    -- The same expression as office's: schedules of different presets never overlap.
    perform fixture.schedule(v_night, '* 9-18 * * 1-5', 1);
    perform fixture.schedule(v_night, '* 1-6 * * *', 2);
end;
$$;

select results_eq(
    $$
    select preset_name, desired, creates_planned, schedule_note
    from prebuilds.preset_state_at('2025-06-02 03:00Z')
    $$,
    $$
    values
        ('night', 2, 2, 'schedule ''* 1-6 * * *'' in force'),
        ('office', 1, 1, 'no schedule matches now')
    $$,
    '03:00Z (05:00 in Berlin): night 2 by its schedule, office 1 by desired_instances'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 03:00Z')$$,
    array['create:night', 'create:office', 'create:night'],
    'the creates of both presets are planned, interleaved'
);

select results_eq(
    $$
    select t.at, p.preset_name, p.desired
    from
        unnest(array[
            '2025-06-02 06:00Z', '2025-06-02 07:00Z', '2025-06-02 09:00Z', '2025-06-02 17:00Z',
            '2025-06-02 19:00Z'
        ]::timestamptz []) as t (at)
    cross join lateral prebuilds.preset_state_at(t.at) as p
    order by t.at, p.preset_name
    $$,
    $$
    values
        ('2025-06-02 06:00Z'::timestamptz, 'night', 0),
        ('2025-06-02 06:00Z', 'office', 1),
        ('2025-06-02 07:00Z', 'night', 1),
        ('2025-06-02 07:00Z', 'office', 1),
        ('2025-06-02 09:00Z', 'night', 1),
        ('2025-06-02 09:00Z', 'office', 3),
        ('2025-06-02 17:00Z', 'night', 0),
        ('2025-06-02 17:00Z', 'office', 3),
        ('2025-06-02 19:00Z', 'night', 0),
        ('2025-06-02 19:00Z', 'office', 1)
    $$,
    'through the day each preset follows its own schedules in its own time zone'
);

-- Night's two prebuilds from the early hours, office's three from the morning.
do $$
declare
    v_night uuid := fixture.preset_of('t', 'v1', 'night');
    v_office uuid := fixture.preset_of('t', 'v1', 'office');
begin
    perform fixture.prebuild(v_night, '2025-06-02 03:01Z', p_name => 'night-1');
    perform fixture.prebuild(v_night, '2025-06-02 03:02Z', p_name => 'night-2');
    perform fixture.prebuild(v_office, '2025-06-02 09:01Z', p_name => 'office-1');
    perform fixture.prebuild(v_office, '2025-06-02 09:02Z', p_name => 'office-2');
    perform fixture.prebuild(v_office, '2025-06-02 09:03Z', p_name => 'office-3');
end;
$$;

select results_eq(
    $$
    select desired, actual, extraneous, creates_planned
    from prebuilds.preset_state_at('2025-06-02 04:59:59Z')
    where preset_name = 'night'
    $$,
    $$values (2, 2, 0, 0)$$,
    '04:59:59Z (06:59:59 Berlin): night has the 2 it wants; office''s prebuilds do not count'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 10:00Z')$$,
    array['delete:night-1'],
    '10:00Z (12:00 Berlin): night wants 1 and deletes its oldest; office''s 3 are what it wants'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 19:00Z')$$,
    array['delete:night-1', 'delete:night-2', 'delete:office-1', 'delete:office-2'],
    '19:00Z: night wants 0, office 1: each deletes its own surplus, oldest first'
);

select results_eq(
    $$
    select preset_name, desired, actual, extraneous
    from prebuilds.preset_state_at('2025-06-02 19:00Z')
    $$,
    $$values ('night', 0, 2, 2), ('office', 1, 3, 2)$$,
    'preset_state at 19:00Z counts each preset''s prebuilds separately'
);

-- Change one preset's schedule: the other is unaffected.
update prebuilds.preset_schedules set desired_instances = 5
where preset_id = fixture.preset_of('t', 'v1', 'office');

select results_eq(
    $$
    select preset_name, desired, creates_planned
    from prebuilds.preset_state_at('2025-06-02 10:00Z')
    $$,
    $$values ('night', 1, 0), ('office', 5, 2)$$,
    'office''s window raised to 5: two creates for office, night unchanged'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 10:00Z')$$,
    array['delete:night-1', 'create:office', 'create:office'],
    'deletes first, then office''s creates'
);

select * from finish();
rollback;
