-- Hard limit (SPEC 4.2, 4.4): when the failure_hard_limit (default 3) most recent start builds all
-- failed, the preset stops creating (no create, no backoff row) but its deletes still go ahead.
begin;
select plan(8);

do $$
declare
    v_a uuid := fixture.active_preset('a', 1, 3600, 'limited');
    v_b uuid := fixture.active_preset('b', 2, p_preset => 'recovered');
    v_c uuid := fixture.active_preset('c', 1, p_preset => 'limited-and-backoff');
begin
    -- a: three failures, the last of them long enough ago that backoff is over; one expired.
    perform fixture.prebuild(v_a, '2025-06-02 10:00Z', p_name => 'expired');
    perform fixture.prebuild(v_a, '2025-06-02 11:05Z', 'failed');
    perform fixture.prebuild(v_a, '2025-06-02 11:10Z', 'failed');
    perform fixture.prebuild(v_a, '2025-06-02 11:20Z', 'failed');
    -- b: two failures, then a success: the three most recent are not all failures.
    perform fixture.prebuild(v_b, '2025-06-02 11:05Z', 'failed');
    perform fixture.prebuild(v_b, '2025-06-02 11:10Z', 'failed');
    perform fixture.prebuild(v_b, '2025-06-02 11:20Z', p_name => 'b-ok');
    -- c: three failures in the last minutes: both hard-limited and backing off.
    perform fixture.prebuild(v_c, '2025-06-02 11:57Z', 'failed');
    perform fixture.prebuild(v_c, '2025-06-02 11:58Z', 'failed');
    perform fixture.prebuild(v_c, '2025-06-02 11:59Z', 'failed');
end;
$$;

select is(
    (select failure_hard_limit from prebuilds.settings),
    3,
    'the default hard limit is 3'
);

select results_eq(
    $$
    select preset_name, failures, backoff_until, hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    order by template_name
    $$,
    $$
    values
        ('limited', 3, null::timestamptz, true, 'hard_limited', 0),
        ('recovered', 2, null, false, null::text, 1),
        ('limited-and-backoff', 3, '2025-06-02 12:02Z', true, 'hard_limited', 0)
    $$,
    'three consecutive failures hard-limit a preset; hard_limited wins over backoff'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:expired', 'create:recovered'],
    'the hard-limited presets create nothing and show no backoff row; the expired one is deleted'
);

select results_eq(
    $$
    select reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where action = 'delete'
    $$,
    $$values ('expired: older than ttl 3600s')$$,
    'the hard limit does not block deletes'
);

select is(
    (
        select hard_limited from prebuilds.preset_state_at('2025-06-02 18:00Z')
        where preset_name = 'limited'
    ),
    true,
    'the hard limit does not wear off with time (no lookback)'
);

-- A successful build more recent than the failures (a prebuild that started fine) lifts it.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('a', 'v1', 'limited'), '2025-06-02 11:30Z');
end;
$$;

select is(
    (
        select hard_limited from prebuilds.preset_state_at('2025-06-02 12:00Z')
        where preset_name = 'limited'
    ),
    false,
    'a success among the 3 most recent builds lifts the hard limit'
);

update prebuilds.settings set failure_hard_limit = 1;

select results_eq(
    $$
    select preset_name, hard_limited
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values ('limited', false), ('recovered', false), ('limited-and-backoff', true)$$,
    'with a limit of 1 only the most recent build matters'
);

update prebuilds.settings set failure_hard_limit = 4;

select results_eq(
    $$
    select preset_name, hard_limited, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('limited', false, null::text),
        ('recovered', false, null),
        ('limited-and-backoff', false, 'backoff')
    $$,
    'with a limit of 4, three failures are not enough; backoff then shows'
);

select * from finish();
rollback;
