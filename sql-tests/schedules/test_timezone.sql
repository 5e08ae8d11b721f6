-- Schedules are read in the preset's scheduling_timezone (SPEC 4.3), including across daylight
-- saving time changes: an instant matches when its local wall-clock hour is in the hour field.
begin;
select plan(14);

do $$
declare
    v_p uuid := fixture.timezone(fixture.active_preset('la', 1), 'America/Los_Angeles');
begin
    perform fixture.schedule(v_p, '* 9-13 * * 1-5', 3);
end;
$$;

-- Summer: Pacific Daylight Time, UTC-7.
select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 15:00Z')$$,
    $$values (1, 1)$$,
    'Monday 15:00Z is 08:00 PDT: before the window, 1'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 16:00Z')$$,
    $$values (3, 3)$$,
    '16:00Z is 09:00 PDT: 3'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 20:59Z')$$,
    $$values (3, 3)$$,
    '20:59Z is 13:59 PDT: still 3'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 21:00Z')$$,
    $$values (1, 1)$$,
    '21:00Z is 14:00 PDT: back to 1'
);

-- Winter: Pacific Standard Time, UTC-8; the same expression moves by an hour in UTC.
select results_eq(
    $$select desired, creates from fixture.pool('2025-12-01 16:59:59Z')$$,
    $$values (1, 1)$$,
    'Monday 1 December 16:59:59Z is 08:59:59 PST: 1'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-12-01 17:00Z')$$,
    $$values (3, 3)$$,
    '17:00Z is 09:00 PST: 3'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-12-01 21:59:59Z')$$,
    $$values (3, 3)$$,
    '21:59:59Z is 13:59:59 PST: 3'
);

-- The day of the week is the local one too.
select results_eq(
    $$select desired, creates from fixture.pool('2025-06-07 00:30Z')$$,
    $$values (1, 1)$$,
    'Saturday 00:30Z is Friday 17:30 PDT: a weekday, but after the window'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-07 16:00Z')$$,
    $$values (1, 1)$$,
    'Saturday 16:00Z is Saturday 09:00 PDT: weekend, 1'
);

-- Changing the preset's time zone moves the window.
update prebuilds.presets set scheduling_timezone = 'Europe/Berlin';

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 07:00Z')$$,
    $$values (3, 3)$$,
    'in Europe/Berlin (CEST, UTC+2) 07:00Z is 09:00: 3'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 16:00Z')$$,
    $$values (1, 1)$$,
    'and 16:00Z is 18:00 there: 1'
);

-- Half-hour and 45-minute offsets: the window starts on the local hour, not on the UTC hour.
update prebuilds.presets set scheduling_timezone = 'Asia/Kathmandu';

select results_eq(
    $$
    select pool.desired
    from
        unnest(array[
            '2025-06-02 03:14:59Z', '2025-06-02 03:15Z', '2025-06-02 08:14:59Z',
            '2025-06-02 08:15Z'
        ]::timestamptz []) with ordinality as t (at, n)
    cross join lateral fixture.pool(t.at) as pool
    order by t.n
    $$,
    $$values (1), (3), (3), (1)$$,
    'Asia/Kathmandu (UTC+5:45): 09:00-13:59:59 local is 03:15Z-08:14:59Z'
);

-- Daylight saving time in America/Los_Angeles, one schedule per hour of the night.
update prebuilds.presets set scheduling_timezone = 'America/Los_Angeles';
delete from prebuilds.preset_schedules;
insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
values
(fixture.preset_of('la'), '* 1 * * *', 5),
(fixture.preset_of('la'), '* 2 * * *', 6),
(fixture.preset_of('la'), '* 3 * * *', 7);

select results_eq(
    $$
    select pool.desired
    from
        unnest(array[
            '2025-03-09 09:59:59Z', '2025-03-09 10:00Z', '2025-03-09 10:59:59Z'
        ]::timestamptz []) with ordinality as t (at, n)
    cross join lateral fixture.pool(t.at) as pool
    order by t.n
    $$,
    $$values (5), (7), (7)$$,
    'spring forward (9 March 2025): 01:59:59 PST is followed by 03:00 PDT; the hour-2 schedule '
    || 'never applies that night'
);

select results_eq(
    $$
    select pool.desired
    from
        unnest(array[
            '2025-11-02 08:00Z', '2025-11-02 08:59:59Z', '2025-11-02 09:00Z',
            '2025-11-02 09:59:59Z', '2025-11-02 10:00Z'
        ]::timestamptz []) with ordinality as t (at, n)
    cross join lateral fixture.pool(t.at) as pool
    order by t.n
    $$,
    $$values (5), (5), (5), (5), (6)$$,
    'fall back (2 November 2025): 01:00-01:59 local happens twice (PDT, then PST), and the '
    || 'hour-1 schedule holds for both, two hours in all'
);

select * from finish();
rollback;
