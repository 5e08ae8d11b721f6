-- prune_runs: runs older than settings.run_retention go, with their action log, at most 1000 per
-- call, oldest first.
begin;
select plan(4);

insert into prebuilds.reconciliation_runs (started_at, status)
select
    now() - interval '31 days' - n * interval '1 minute' as started_at,
    'succeeded' as status
from generate_series(1, 1005) as n;
insert into prebuilds.reconciliation_runs (started_at, status)
values (now() - interval '29 days', 'succeeded');
insert into prebuilds.reconciliation_action_log (run_id, seq, preset_id, action, reason, outcome)
select
    r.id as run_id,
    1 as seq,
    gen_random_uuid() as preset_id,
    'create' as action,
    'x' as reason,
    'failed' as outcome
from prebuilds.reconciliation_runs as r;

select is(prebuilds.prune_runs(), 1000, 'a batch of 1000');
select is(prebuilds.prune_runs(), 5, 'then the rest');
select is(prebuilds.prune_runs(), 0, 'then nothing');
select results_eq(
    $$
    select count(*)::int from prebuilds.reconciliation_runs
    union all select count(*)::int from prebuilds.reconciliation_action_log
    $$,
    $$values (1), (1)$$,
    'the run within the 30 days of retention stays, with its log'
);

select * from finish();
rollback;
