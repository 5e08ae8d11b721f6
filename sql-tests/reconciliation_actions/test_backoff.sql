-- Linear backoff (SPEC 4.2, 4.4): recent failures hold creates back until the last failure's
-- time + failures x backoff_interval (default 1 minute); deletes go ahead; a `backoff` row says so.
begin;
select plan(10);

set local timezone = 'UTC';

do $$
declare
    v_p uuid := fixture.active_preset('t', 2, 3600);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'expired');
    perform fixture.prebuild(v_p, '2025-06-02 11:58Z', 'failed', p_name => 'f1');
    perform fixture.prebuild(v_p, '2025-06-02 11:59Z', 'failed', p_name => 'f2');
end;
$$;

select is(
    (select backoff_interval from prebuilds.settings),
    interval '1 minute',
    'the default backoff interval is 1 minute'
);

select is(
    (select backoff_lookback from prebuilds.settings),
    interval '1 hour',
    'the default backoff lookback is 1 hour'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:expired', 'backoff:default'],
    'the expired prebuild is deleted; the creates are replaced by a backoff row'
);

select results_eq(
    $$
    select seq, action, workspace_id, preset_id, backoff_until, reason
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where action = 'backoff'
    $$,
    $$
    select 2, 'backoff', null::uuid, fixture.preset_of('t'), '2025-06-02 12:01Z'::timestamptz,
           'backoff: 2 failed build(s) in the last 01:00:00, '
           || 'creates wait until 2025-06-02 12:01:00+00'
    $$,
    'backoff_until = last failure (11:59) + 2 failures x 1 minute; the row carries no workspace'
);

select results_eq(
    $$
    select failures, backoff_until, hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (2, '2025-06-02 12:01Z'::timestamptz, false, 'backoff', 0)$$,
    'preset_state: 2 failures, backoff until 12:01, blocked by backoff'
);

select is(
    (select backoff_until from prebuilds.preset_state_at('2025-06-02 12:00:59Z')),
    '2025-06-02 12:01Z'::timestamptz,
    'still backing off one second before the end'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:01Z')$$,
    array['delete:expired', 'create:default', 'create:default'],
    'at backoff_until the creates are planned again and the backoff row is gone'
);

select results_eq(
    $$
    select failures, backoff_until, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 12:01Z')
    $$,
    $$values (2, null::timestamptz, null::text)$$,
    'after the backoff the failures are still counted but nothing is blocked'
);

update prebuilds.settings set backoff_interval = '5 minutes';

select is(
    (select backoff_until from prebuilds.preset_state_at('2025-06-02 12:01Z')),
    '2025-06-02 12:09Z'::timestamptz,
    'with a 5 minute interval: 11:59 + 2 x 5 minutes'
);

-- No creates wanted: the preset is full, so the failures hold nothing back and no row appears.
update prebuilds.presets set desired_instances = 0;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:expired'],
    'a backoff row appears only when creates are held back'
);

select * from finish();
rollback;
