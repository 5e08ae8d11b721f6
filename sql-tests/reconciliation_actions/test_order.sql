-- Plan order (SPEC 3): seq runs 1..n; cancels and deletes come before creates; creates are
-- interleaved across presets; informational backoff rows come last. The view equals the function
-- at now().
begin;
select plan(6);

do $$
declare
    v_a uuid := fixture.active_preset('a', 2, p_preset => 'A');
    v_b uuid := fixture.active_preset('b', 1, 3600, 'B');
    v_c uuid := fixture.active_preset('c', 1, p_preset => 'C');
    v_d uuid := fixture.active_preset('d', 1, p_preset => 'D');
begin
    perform fixture.prebuild(v_b, '2025-06-02 10:00Z', p_name => 'b-expired');
    perform fixture.prebuild(v_c, '2025-06-02 10:00Z', p_name => 'c-old');
    perform fixture.prebuild(v_c, '2025-06-02 10:30Z', 'starting', p_name => 'c-queued');
    perform fixture.preset(fixture.new_version('c', 'v2'), 'C', 2);
    perform fixture.prebuild(v_d, '2025-06-02 11:59:30Z', 'failed');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array[
        'delete:b-expired', 'cancel:c-queued', 'delete:c-old',
        'create:A', 'create:B', 'create:C', 'create:A', 'create:C', 'backoff:D'
    ],
    'cancels and deletes, then creates interleaved A, B, C, A, C, then backoff'
);

select results_eq(
    $$select seq from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    $$select generate_series(1, 9)$$,
    'seq runs from 1 without gaps, in row order'
);

select is(
    (
        select
            max(seq) filter (where action in ('cancel', 'delete'))
            < min(seq) filter (where action = 'create')
        from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    ),
    true,
    'every cancel and delete precedes every create'
);

select is(
    (
        select count(*)::int from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
        where (action in ('create', 'backoff')) <> (workspace_id is null)
    ),
    0,
    'creates and backoff rows have no workspace; cancels and deletes have one'
);

select is(
    (
        select count(*)::int from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
        where (action = 'backoff') <> (backoff_until is not null)
    ),
    0,
    'only backoff rows carry backoff_until'
);

select results_eq(
    'select * from prebuilds.reconciliation_actions',
    'select * from prebuilds.reconciliation_actions_at(now())',
    'the view reconciliation_actions is the function at now()'
);

select * from finish();
rollback;
