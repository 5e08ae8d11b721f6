-- apply_action and start_run write only for the transaction that holds the reconcile lock
-- (issue 7). This transaction takes the lock (driver/locks.py RECONCILE) itself, so it can play
-- the driver's plan transaction; a run recorded for another backend is refused with SQLSTATE PBL01.
begin;
select plan(7);

create temp table ids on commit drop as
select fixture.active_preset('web', 2) as preset;
create temp table holder on commit drop as
select * from prebuilds.take_reconcile_lock(8102650153143987300);

select ok((select acquired from holder), 'the lock is taken');
select is(
    (select holder_pid from holder), pg_backend_pid(), 'the holder is this backend'
);
select ok(
    prebuilds.reconcile_lock_held(
        8102650153143987300, (select holder_pid from holder), (select holder_vxid from holder)
    ),
    'reconcile_lock_held agrees'
);
select ok(
    not prebuilds.reconcile_lock_held(
        8102650153143987300, (select holder_pid from holder), '999/1'
    ),
    'another virtual transaction of the same pid does not hold it'
);

create temp table run on commit drop as
select
    prebuilds.start_run(
        8102650153143987300, h.holder_pid, h.holder_vxid, 'test', 1, 2, 0, 1.0
    ) as id
from holder as h;

select results_eq(
    $$select outcome from prebuilds.apply_action(
        (select id from run), 1, 'create', (select preset from ids), null, 'missing')$$,
    $$values ('applied')$$,
    'the holder''s run applies a create and logs it'
);

select throws_ok(
    $$select prebuilds.start_run(8102650153143987300, 1, '1/1', 'test', 1, 1, 0, 1.0)$$,
    'PBL01', null, 'a run for a backend that does not hold the lock is refused'
);

update prebuilds.reconciliation_runs set lock_pid = 1 where id = (select id from run);
select throws_ok(
    $$select * from prebuilds.apply_action(
        (select id from run), 2, 'create', (select preset from ids), null, 'missing')$$,
    'PBL01', null, 'once the run''s holder no longer holds the lock, actions are refused'
);

select * from finish();
rollback;
