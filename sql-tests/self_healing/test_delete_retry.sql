-- Failed deletes are retried with exponential backoff, then quarantined (SPEC 5.1): retry n is due
-- delete_retry_interval * 2^(n-1) after the last failure (at most 1 hour); after
-- delete_retry_limit retries no more; 0 never retries. Every preset, active or not.
begin;
select plan(14);

do $$
declare
    v_p uuid := fixture.active_preset('t', 0);
    v_old uuid := fixture.active_preset('old', 1, p_preset => 'old-pool');
    v_ws uuid;
    v_i int;
begin
    -- once: one failed delete at 12:00; thrice: three in a row, the last at 12:00.
    v_ws := fixture.prebuild(v_p, '2025-06-01 10:00Z', p_name => 'once');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 12:00Z');
    v_ws := fixture.prebuild(v_p, '2025-06-01 10:00Z', p_name => 'thrice');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 11:00Z');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 11:30Z');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 12:00Z');
    -- A start between failed deletes ends the run: 'reset' has one failed delete in a row.
    v_ws := fixture.prebuild(v_p, '2025-06-01 10:00Z', p_name => 'reset');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 09:00Z');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 10:00Z');
    perform fixture.build(v_ws, 'start', 'succeeded', '2025-06-02 11:00Z');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 12:00Z');
    -- An outdated preset's prebuild whose delete failed once, long ago.
    v_ws := fixture.prebuild(v_old, '2025-06-01 10:00Z', p_name => 'outdated');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 08:00Z');
    perform fixture.new_version('old', 'v2');
end;
$$;

select results_eq(
    $$select name, delete_failures from prebuilds.workspaces order by name$$,
    $$values ('once', 1), ('outdated', 1), ('reset', 1), ('thrice', 3)$$,
    'delete_failures counts the failed deletes that end each history, kept on write'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00:59Z')$$,
    array['delete:outdated'],
    'just before interval x 2^0 = 1 minute: only the long-due outdated prebuild is retried'
);

select results_eq(
    $$select p from fixture.plan('2025-06-02 12:01Z') as p order by p$$,
    array['delete:once', 'delete:outdated', 'delete:reset'],
    'at exactly 1 minute the first retries are due (active and outdated presets alike)'
);

select results_eq(
    $$
    select reason from prebuilds.reconciliation_actions_at('2025-06-02 12:01Z')
    where workspace_id = fixture.ws('once')
    $$,
    $$
    values ('retry 1 of 5: last delete failed at 2025-06-02 12:00:00+00: '
        || 'terraform apply failed')
    $$,
    'the reason says which retry, of how many, when the last delete failed and its error'
);

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 12:03:59Z')
    where workspace_id = fixture.ws('thrice')
    $$,
    'after 3 failures: not before 1 minute x 2^2 = 4 minutes'
);

select results_eq(
    $$
    select reason from prebuilds.reconciliation_actions_at('2025-06-02 12:04Z')
    where workspace_id = fixture.ws('thrice')
    $$,
    $$
    values ('retry 3 of 5: last delete failed at 2025-06-02 12:00:00+00: '
        || 'terraform apply failed')
    $$,
    'after 3 failures: retry 3 at 4 minutes'
);

select results_eq(
    $$
    select preset_name, retrying_deletes, quarantined, is_active
    from prebuilds.preset_state_at('2025-06-02 12:00Z') order by preset_name
    $$,
    $$values ('default', 3, 0, true), ('old-pool', 1, 0, false)$$,
    'preset_state counts the prebuilds waiting for a retry; an outdated preset with only a '
    'failed delete is under consideration'
);

-- The exponent is capped: a 2-hour interval still retries 1 hour after the failure.
update prebuilds.settings set delete_retry_interval = '2 hours';

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 12:59:59Z')
    where workspace_id = fixture.ws('once')
    $$,
    'a long interval: not before the one-hour cap'
);

select isnt_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 13:00Z')
    where workspace_id = fixture.ws('once')
    $$,
    'a long interval: due at the one-hour cap'
);

update prebuilds.settings set delete_retry_interval = '1 minute', delete_retry_limit = 3;

select results_eq(
    $$
    select reason from prebuilds.reconciliation_actions_at('2025-06-02 13:00Z')
    where workspace_id = fixture.ws('thrice')
    $$,
    $$
    values ('retry 3 of 3: last delete failed at 2025-06-02 12:00:00+00: '
        || 'terraform apply failed')
    $$,
    'a limit of 3: the third retry is the last'
);

update prebuilds.settings set delete_retry_limit = 2;

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 18:00Z')
    where workspace_id = fixture.ws('thrice')
    $$,
    'a limit of 2: three failures quarantine it, whatever the time'
);

select results_eq(
    $$
    select preset_name, retrying_deletes, quarantined
    from prebuilds.preset_state_at('2025-06-02 18:00Z') order by preset_name
    $$,
    $$values ('default', 2, 1), ('old-pool', 1, 0)$$,
    'the quarantined prebuild is counted in preset_state.quarantined'
);

update prebuilds.settings set delete_retry_limit = 0;

select is_empty(
    $$select from prebuilds.reconciliation_actions_at('2025-06-02 18:00Z')$$,
    'a limit of 0: failed deletes are never retried'
);

select results_eq(
    $$
    select preset_name, retrying_deletes, quarantined
    from prebuilds.preset_state_at('2025-06-02 18:00Z') order by preset_name
    $$,
    $$values ('default', 0, 3), ('old-pool', 0, 1)$$,
    'a limit of 0: every prebuild whose delete failed is quarantined, and stays visible'
);

select * from finish();
rollback;
