-- next_change_at (SPEC 6.1), schedules: the first local hour boundary at which the schedules
-- give another pool size, in the preset's zone; none for inactive presets or without a zone.
begin;
select plan(7);

create temp table ids on commit drop as
select fixture.timezone(fixture.active_preset('web', 1), 'Europe/Berlin') as preset;
do $$ begin perform fixture.schedule(ids.preset, '* 9-17 * * 1-5', 5) from ids; end $$;

-- 2025-06-02 is a Monday; Berlin is at UTC+2 in June.
select is(
    prebuilds.next_change_at('2025-06-02 06:30Z'), '2025-06-02 07:00Z'::timestamptz,
    '08:30 in Berlin: the schedule starts at 09:00 local'
);
select is(
    prebuilds.next_change_at('2025-06-02 10:00Z'), '2025-06-02 16:00Z'::timestamptz,
    'inside the schedule: it ends at 18:00 local'
);
select is(
    (select ps.desired from prebuilds.preset_state_at('2025-06-02 16:00Z') as ps),
    1,
    'and the plan agrees: desired_instances again at that instant'
);
select is(
    prebuilds.next_change_at('2025-06-06 16:30Z'), null::timestamptz,
    'Friday evening: Monday 09:00 is beyond the 48 hours looked ahead (the loop asks again)'
);
select is(
    prebuilds.next_change_at('2025-06-07 10:00Z'), '2025-06-09 07:00Z'::timestamptz,
    'Saturday noon: Monday 09:00 local, across the weekend'
);

update prebuilds.presets set scheduling_timezone = '' where id = (select ids.preset from ids);
select is(
    prebuilds.next_change_at('2025-06-02 06:30Z'), null::timestamptz,
    'a schedule without a time zone is ignored, so it changes nothing'
);

update prebuilds.presets set scheduling_timezone = 'Europe/Berlin'
where id = (select ids.preset from ids);
do $$ begin perform prebuilds.deprecate_template('acme', 'web'); end $$;
select is(
    prebuilds.next_change_at('2025-06-02 06:30Z'), null::timestamptz,
    'an inactive preset''s schedules change nothing'
);

select * from finish();
rollback;
