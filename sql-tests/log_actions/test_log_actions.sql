-- log_actions: the driver logs failed actions and backoff notes in one call; a row already logged
-- is kept; applied and skipped outcomes are apply_action's alone.
begin;
select plan(6);

create temp table runs on commit drop as
with r as (
    insert into prebuilds.reconciliation_runs (hostname) values ('test') returning id
)

select r.id from r;

select is(
    prebuilds.log_actions(
        (select id from runs),
        '[{"seq": 1, "preset_id": "00000000-0000-0000-0000-000000000001", "action": "create",
           "workspace_id": null, "reason": "missing", "outcome": "failed", "error": "boom"},
          {"seq": 2, "preset_id": "00000000-0000-0000-0000-000000000002", "action": "backoff",
           "reason": "backoff", "outcome": "noted"}]'
    ),
    2,
    'two rows logged'
);
select results_eq(
    $$
    select seq, action, outcome, error, workspace_id
    from prebuilds.reconciliation_action_log order by seq
    $$,
    $$values (1, 'create', 'failed', 'boom', null::uuid), (2, 'backoff', 'noted', null, null)$$,
    'as given'
);
select is(
    prebuilds.log_actions(
        (select id from runs),
        '[{"seq": 1, "preset_id": "00000000-0000-0000-0000-000000000001", "action": "create",
           "reason": "missing", "outcome": "failed", "error": "again"}]'
    ),
    0,
    'a row already logged is kept'
);
select throws_ok(
    format(
        $$select prebuilds.log_actions(%s, '[{"seq": 3, "preset_id":
          "00000000-0000-0000-0000-000000000001", "action": "create", "reason": "x",
          "outcome": "applied"}]')$$,
        (select id from runs)
    ),
    '22023',
    'log_actions: only failed actions and noted backoff rows are logged here (apply_action logs '
    || 'the others)',
    'applied is apply_action''s'
);
select throws_ok(
    format($$select prebuilds.log_actions(%s, '{}')$$, (select id from runs)),
    '22023',
    'log_actions: p_rows must be a JSON array of action rows',
    'not a list'
);
select is(
    (select count(*)::int from prebuilds.reconciliation_action_log), 2, 'nothing else logged'
);

select * from finish();
rollback;
