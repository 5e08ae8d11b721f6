-- Surplus queued builds are cancelled on active presets too (SPEC 5.3): the newest
-- min(queued, max(running - expired + starting - desired, 0)) queued initial builds are cancelled,
-- before any running prebuild is deleted. Builds a provisioner picked up are never cancelled.
begin;
select plan(7);

do $$
declare
    v_p uuid := fixture.active_preset('t', 20);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'r1');
    perform fixture.prebuild(v_p, '2025-06-02 10:30Z', p_name => 'r2');
    perform fixture.prebuild(v_p, '2025-06-02 11:59Z', 'provisioning', p_name => 'picked');
    perform fixture.prebuild(v_p, '2025-06-02 11:50Z', 'starting', p_name => 'q1');
    perform fixture.prebuild(v_p, '2025-06-02 11:51Z', 'starting', p_name => 'q2');
    perform fixture.prebuild(v_p, '2025-06-02 11:52Z', 'starting', p_name => 'q3');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array[
        'create:default', 'create:default', 'create:default', 'create:default',
        'create:default', 'create:default', 'create:default', 'create:default',
        'create:default', 'create:default', 'create:default', 'create:default',
        'create:default', 'create:default'
    ],
    '20 desired, 2 running, 4 starting: no surplus, 14 creates'
);

update prebuilds.presets set desired_instances = 4;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['cancel:q3', 'cancel:q2'],
    '4 desired, 2 running, 4 starting: the 2 newest queued builds are cancelled'
);

select results_eq(
    $$select distinct reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    $$values ('surplus: 2 running, 4 starting, 4 desired: initial build still queued')$$,
    'the reason gives the counts'
);

update prebuilds.presets set desired_instances = 1;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['cancel:q3', 'cancel:q2', 'cancel:q1', 'delete:r1'],
    '1 desired: every queued build is cancelled (newest first), then the oldest running deleted'
);

select results_eq(
    $$
    select extraneous, starting, creates_planned, pending_cancelable
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (1, 4, 0, 0)$$,
    'preset_state: one running surplus; pending_cancelable stays for inactive presets only'
);

-- Expired running prebuilds do not count: r1 and r2 past a 1-hour TTL.
update prebuilds.presets set desired_instances = 3, ttl_seconds = 3600;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['cancel:q3', 'delete:r1', 'delete:r2'],
    '3 desired, 0 unexpired running, 4 starting: one queued build cancelled, the expired deleted'
);

-- A paused deployment cancels nothing.
update prebuilds.settings set reconciliation_paused = true;

select is_empty(
    $$select from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    'paused: no cancel either'
);

select * from finish();
rollback;
