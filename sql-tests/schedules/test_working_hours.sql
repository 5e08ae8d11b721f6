-- Working hours (SPEC 4.3): `* 9-18 * * 1-5` gives 3 prebuilds from 09:00:00 to 18:59:59 on
-- weekdays; outside it the preset's desired_instances (1) applies. Monday 2 June 2025, UTC.
begin;
select plan(12);

do $$
declare
    v_p uuid := fixture.timezone(fixture.active_preset('t', 1), 'UTC');
begin
    perform fixture.schedule(v_p, '* 9-18 * * 1-5', 3);
end;
$$;

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 08:59:59Z')$$,
    $$values (1, 1)$$,
    '08:59:59, one second before the window: desired_instances 1, one create'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 09:00Z')$$,
    $$values (3, 3)$$,
    '09:00:00, the window opens: 3, three creates'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 18:59:59Z')$$,
    $$values (3, 3)$$,
    '18:59:59: the hour range 9-18 still holds (it covers all of hour 18)'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-02 19:00Z')$$,
    $$values (1, 1)$$,
    '19:00:00, the window has closed: back to 1'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-07 14:00Z')$$,
    $$values (1, 1)$$,
    'Saturday 7 June 14:00: not a weekday, 1'
);

select results_eq(
    $$select desired, creates from fixture.pool('2025-06-06 18:30Z')$$,
    $$values (3, 3)$$,
    'Friday 6 June 18:30: the last weekday of the range, 3'
);

select is(
    (select schedule_note from fixture.pool('2025-06-02 09:00Z')),
    'schedule ''* 9-18 * * 1-5'' in force',
    'preset_state says which schedule is in force'
);

select is(
    (select schedule_note from fixture.pool('2025-06-02 19:00Z')),
    'no schedule matches now',
    'and says so when none matches'
);

select results_eq(
    $$
    select ra.reason, count(*)
    from prebuilds.reconciliation_actions_at('2025-06-02 10:00Z') as ra
    where ra.action = 'create'
    group by ra.reason
    $$,
    $$values ('missing: 0 running, 0 starting, 3 desired', 3::bigint)$$,
    'the create reasons count the scheduled size'
);

-- Three running prebuilds made during the day: the pool shrinks when the window closes.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('t'), '2025-06-02 09:01Z', p_name => 'first');
    perform fixture.prebuild(fixture.preset_of('t'), '2025-06-02 09:02Z', p_name => 'second');
    perform fixture.prebuild(fixture.preset_of('t'), '2025-06-02 09:03Z', p_name => 'third');
end;
$$;

select is_empty(
    $$select * from fixture.plan('2025-06-02 18:59:59Z')$$,
    'inside the window 3 running prebuilds are enough: nothing to do'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 19:00Z')$$,
    array['delete:first', 'delete:second'],
    'at 19:00 the two oldest are surplus and deleted'
);

select results_eq(
    $$
    select desired, actual, extraneous
    from prebuilds.preset_state_at('2025-06-02 19:00Z')
    $$,
    $$values (1, 3, 2)$$,
    'preset_state at 19:00: desired 1, 3 running, 2 extraneous'
);

select * from finish();
rollback;
