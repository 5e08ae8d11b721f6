-- TTL expiry (SPEC 4.2, 4.4): prebuilds older than ttl_seconds are deleted and replaced by creates
-- in the same plan; exactly ttl_seconds old is not yet expired; a ttl of 0 or null disables it.
begin;
select plan(8);

do $$
declare
    v_p uuid := fixture.active_preset('t', 2, 3600);
    v_zero uuid := fixture.active_preset('z', 1, 0, 'zero-ttl');
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'old1');
    perform fixture.prebuild(v_p, '2025-06-02 10:30Z', p_name => 'old2');
    perform fixture.prebuild(v_p, '2025-06-02 11:30Z', p_name => 'new');
    perform fixture.prebuild(v_zero, '2025-05-01 10:00Z', p_name => 'ancient');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:old1', 'delete:old2', 'create:default'],
    'two expired are deleted (oldest first) and one create tops the pool back up to 2'
);

select results_eq(
    $$
    select distinct reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where action = 'delete'
    $$,
    $$values ('expired: older than ttl 3600s')$$,
    'the reason names the ttl'
);

select results_eq(
    $$
    select desired, actual, expired, eligible, extraneous, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    where preset_name = 'default'
    $$,
    $$values (2, 3, 2, 1, 0, 1)$$,
    'preset_state: 3 running of which 2 expired, 1 eligible, 1 create'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 11:15Z')$$,
    array['delete:old1'],
    'at 11:15 only old1 is expired: the other two fill the pool, so no create'
);

select is(
    (
        select expired from prebuilds.preset_state_at('2025-06-02 11:30Z')
        where preset_name = 'default'
    ),
    1,
    'old2 exactly 3600 s old at 11:30 is not yet expired'
);

select is(
    (
        select expired from prebuilds.preset_state_at('2025-06-02 11:30:01Z')
        where preset_name = 'default'
    ),
    2,
    'one second later it is'
);

select results_eq(
    $$
    select expired, eligible from prebuilds.preset_state_at('2025-06-02 12:00Z')
    where preset_name = 'zero-ttl'
    $$,
    $$values (0, 1)$$,
    'a ttl of 0 never expires a month-old prebuild'
);

update prebuilds.presets set ttl_seconds = null where name = 'default';

select results_eq(
    $$
    select action || ':' || reason
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    $$,
    array['delete:surplus: 3 running, 2 desired'],
    'without a ttl nothing expires: the oldest is deleted only as surplus'
);

select * from finish();
rollback;
