-- Several schedules on one preset (SPEC 4.3): the one matching gives desired; between them the
-- preset's desired_instances (1) applies. Monday 2 June 2025, UTC.
begin;
select plan(12);

do $$
declare
    v_p uuid := fixture.timezone(fixture.active_preset('t', 1), 'UTC');
begin
    perform fixture.schedule(v_p, '* 6-10 * * 1-5', 2);
    perform fixture.schedule(v_p, '* 12-16 * * 1-5', 3);
    perform fixture.schedule(v_p, '* 18-22 * * 1-5', 4);
end;
$$;

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 05:00Z')$$,
    $$values (1, 1)$$,
    '05:00, before the first window: 1'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 08:00Z')$$,
    $$values (2, 2)$$,
    '08:00, morning window 6-10: 2'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 10:59:59Z')$$,
    $$values (2, 2)$$,
    '10:59:59, last second of the morning window: 2'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 11:00Z')$$,
    $$values (1, 1)$$,
    '11:00, between windows: 1'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 12:00Z')$$,
    $$values (3, 3)$$,
    '12:00, the afternoon window opens: 3'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 14:00Z')$$,
    $$values (3, 3)$$,
    '14:00, afternoon window 12-16: 3'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 17:00Z')$$,
    $$values (1, 1)$$,
    '17:00, between windows: 1'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 20:00Z')$$,
    $$values (4, 4)$$,
    '20:00, evening window 18-22: 4'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 23:00Z')$$,
    $$values (1, 1)$$,
    '23:00, after the last window: 1'
);

select is(
    (select schedule_note from fixture.pool('2025-06-02 14:00Z')),
    'schedule ''* 12-16 * * 1-5'' in force',
    'the note names the afternoon schedule at 14:00'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-07 08:00Z')$$,
    $$values (1, 1)$$,
    'Saturday 08:00: no window applies on weekends'
);

-- Two prebuilds already running from the morning: at 14:00 one more is enough.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('t'), '2025-06-02 07:00Z');
    perform fixture.prebuild(fixture.preset_of('t'), '2025-06-02 07:05Z');
end;
$$;

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 14:00Z')$$,
    $$values (3, 1)$$,
    'with 2 running at 14:00, the afternoon size 3 needs one create'
);

select * from finish();
rollback;
