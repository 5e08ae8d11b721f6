-- Failures older than backoff_lookback (default 1 hour) do not count (SPEC 4.2).
begin;
select plan(5);

do $$
declare
    v_p uuid := fixture.active_preset('t', 2, p_preset => 'recent');
    v_old uuid := fixture.active_preset('o', 1, p_preset => 'long-ago');
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'failed', p_name => 'f-10:00');
    perform fixture.prebuild(v_p, '2025-06-02 10:15Z', p_name => 'ok');
    perform fixture.prebuild(v_p, '2025-06-02 10:30Z', 'failed', p_name => 'f-10:30');
    perform fixture.prebuild(v_p, '2025-06-02 11:59:30Z', 'failed', p_name => 'f-11:59');
    perform fixture.prebuild(v_old, '2025-06-02 10:00Z', 'failed', p_name => 'old-f');
end;
$$;

select results_eq(
    $$
    select preset_name, failures, backoff_until, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('long-ago', 0, null::timestamptz, null::text),
        ('recent', 1, '2025-06-02 12:00:30Z'::timestamptz, 'backoff')
    $$,
    'only the failure within the last hour counts: 11:59:30 + 1 x 1 minute'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:long-ago', 'backoff:recent'],
    'a failure two hours ago does not hold a create back'
);

update prebuilds.settings set backoff_lookback = '3 hours';

select results_eq(
    $$
    select preset_name, failures, backoff_until
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('long-ago', 1, null::timestamptz),
        ('recent', 3, '2025-06-02 12:02:30Z'::timestamptz)
    $$,
    'a 3 hour lookback counts all three: 11:59:30 + 3 x 1 minute; long-ago''s backoff ended 10:01'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:long-ago', 'backoff:recent'],
    'the plan follows'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:02:30Z')$$,
    array['create:long-ago', 'create:recent'],
    'and creates resume at 12:02:30'
);

select * from finish();
rollback;
