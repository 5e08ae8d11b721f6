-- apply_action and start_run write only while the run's plan transaction still holds its token
-- lock (issue 7). One session cannot play both sides (its own locks never conflict), so this
-- file checks the refusals; tests/test_faults.py checks, with real connections, that a live
-- holder's actions pass and a dead one's are refused.
begin;
select plan(8);

create temp table ids on commit drop as
select fixture.active_preset('web', 2) as preset;

select is(
    prebuilds.write_fence_key(8102650153143987300, 1), 1886545250, 'fence key: high half'
);
select is(
    prebuilds.write_fence_key(8102650153143987300, 2), 1969843300, 'fence key: low half'
);
select ok(
    not prebuilds.reconcile_lock_held(8102650153143987300, 12345),
    'a token nobody holds is not a licence'
);

select throws_ok(
    $$select prebuilds.start_run(8102650153143987300, 1, 12345, 'test', 1, 1, 0, 1.0)$$,
    'PBL01', null, 'start_run refuses a run whose plan transaction holds no token'
);

insert into prebuilds.reconciliation_runs (hostname, lock_key, lock_pid, lock_token)
values ('test', 8102650153143987300, 1, 12345);
select throws_ok(
    $$select * from prebuilds.apply_action(
        (select max(id) from prebuilds.reconciliation_runs), 1, 'create',
        (select preset from ids), null, 'missing', null)$$,
    'PBL01', null, 'apply_action refuses an action of a run whose lock is gone'
);
select is(
    (select count(*)::int from prebuilds.workspaces), 0, 'and nothing was created'
);

-- A run row without its lock key or token (never written by start_run) is no licence either.
insert into prebuilds.reconciliation_runs (hostname) values ('test');
select throws_ok(
    $$select * from prebuilds.apply_action(
        (select max(id) from prebuilds.reconciliation_runs), 1, 'create',
        (select preset from ids), null, 'no key', null)$$,
    'PBL01', null, 'apply_action refuses a run that records no lock holder'
);
select is(
    (select count(*)::int from prebuilds.workspaces), 0, 'and nothing was created either'
);

select * from finish();
rollback;
