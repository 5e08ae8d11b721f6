-- In-progress accounting (SPEC 4.2, 4.4): a starting prebuild (job pending or running) suppresses
-- a create; a stopping or deleting one does not, and none of them is deleted.
begin;
select plan(6);
-- The builds in flight here are alive: hung jobs (SPEC 5.2) are sql-tests/fail_job's subject.
update prebuilds.settings set job_heartbeat_timeout = '1 day', job_pending_timeout = '1 day';

do $$
declare
    v_a uuid := fixture.active_preset('a', 2, p_preset => 'pending');
    v_b uuid := fixture.active_preset('b', 2, p_preset => 'running');
    v_c uuid := fixture.active_preset('c', 2, p_preset => 'stopping');
    v_d uuid := fixture.active_preset('d', 2, p_preset => 'deleting');
begin
    perform fixture.prebuild(v_a, '2025-06-02 10:00Z', p_name => 'a1');
    perform fixture.prebuild(v_a, '2025-06-02 11:00Z', 'starting', p_name => 'a2');
    perform fixture.prebuild(v_b, '2025-06-02 10:00Z', p_name => 'b1');
    perform fixture.prebuild(v_b, '2025-06-02 11:00Z', 'provisioning', p_name => 'b2');
    perform fixture.prebuild(v_c, '2025-06-02 10:00Z', p_name => 'c1');
    perform fixture.prebuild(v_c, '2025-06-02 11:00Z', 'stopping', p_name => 'c2');
    perform fixture.prebuild(v_d, '2025-06-02 10:00Z', p_name => 'd1');
    perform fixture.prebuild(v_d, '2025-06-02 11:00Z', 'deleting', p_name => 'd2');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:stopping', 'create:deleting'],
    'starting prebuilds suppress creates; stopping and deleting ones do not'
);

select results_eq(
    $$
    select preset_name, actual, starting, stopping, deleting, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('pending', 1, 1, 0, 0, 0),
        ('running', 1, 1, 0, 0, 0),
        ('stopping', 1, 0, 1, 0, 1),
        ('deleting', 1, 0, 0, 1, 1)
    $$,
    'a pending or running start counts as starting; stop and delete builds as stopping, deleting'
);

select is_empty(
    $$
    select * from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where workspace_id is not null
    $$,
    'nothing in flight is deleted or cancelled'
);

-- The same with the pool removed: builds a provisioner picked up are still left alone; the
-- queued start is now a surplus and is cancelled first (SPEC 5.3).
update prebuilds.presets set desired_instances = null;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['cancel:a2', 'delete:a1', 'delete:b1', 'delete:c1', 'delete:d1'],
    'pool removed: the queued start is cancelled, the running prebuilds deleted, the rest left'
);

select results_eq(
    $$select preset_name, desired, extraneous from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$
    values ('pending', 0, 1), ('running', 0, 1), ('stopping', 0, 1), ('deleting', 0, 1)
    $$,
    'each pool is surplus by its one running prebuild'
);

-- A preset whose only prebuild is starting does not create a second one.
update prebuilds.presets set desired_instances = 1 where name = 'pending';
update prebuilds.workspaces set deleted = true where name = 'a1';

select ok(
    not exists (
        select from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
        where preset_name = 'pending'
    ),
    'desired 1 with one starting and none running: no create'
);

select * from finish();
rollback;
