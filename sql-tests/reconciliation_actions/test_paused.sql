-- Paused (SPEC 4.4): no actions at all, and blocked_reason 'paused' on every row of preset_state,
-- whatever the preset needs (creates, deletes, cancels, backoff).
begin;
select plan(6);

do $$
declare
    v_new uuid := fixture.active_preset('a', 2, p_preset => 'empty');
    v_surplus uuid := fixture.active_preset('b', 1, p_preset => 'surplus');
    v_old uuid := fixture.active_preset('c', 1, p_preset => 'outdated');
    v_failing uuid := fixture.active_preset('d', 1, p_preset => 'failing');
begin
    perform fixture.prebuild(v_surplus, '2025-06-02 10:00Z', p_name => 's1');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:00Z', p_name => 's2');
    perform fixture.prebuild(v_old, '2025-06-02 10:00Z', p_name => 'o1');
    perform fixture.prebuild(v_old, '2025-06-02 11:00Z', 'starting', p_name => 'o-queued');
    perform fixture.preset(fixture.new_version('c', 'v2'), 'outdated', 1);
    perform fixture.prebuild(v_failing, '2025-06-02 11:59:30Z', 'failed');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array[
        'delete:s1', 'cancel:o-queued', 'delete:o1',
        'create:empty', 'create:outdated', 'create:empty', 'backoff:failing'
    ],
    'before pausing the fleet needs deletes, a cancel, creates and backs off'
);

update prebuilds.settings set reconciliation_paused = true;

select is_empty(
    $$select * from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    'paused: no actions at all (not even backoff rows)'
);

select is_empty(
    'select * from prebuilds.reconciliation_actions',
    'the view is empty too'
);

select results_eq(
    $$
    select template_name, template_version_name, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('a', 'v1', 'paused', 0),
        ('b', 'v1', 'paused', 0),
        ('c', 'v1', 'paused', 0),
        ('c', 'v2', 'paused', 0),
        ('d', 'v1', 'paused', 0)
    $$,
    'every row of preset_state says paused, also those that want no creates'
);

select results_eq(
    $$
    select preset_name, desired, actual, extraneous, pending_cancelable, backoff_until
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    where template_version_name = 'v1'
    $$,
    $$
    values
        ('empty', 2, 0, 0, 0, null::timestamptz),
        ('surplus', 1, 2, 1, 0, null),
        ('outdated', 0, 1, 0, 1, null),
        ('failing', 1, 0, 0, 0, '2025-06-02 12:00:30Z')
    $$,
    'the state is still computed while paused'
);

update prebuilds.settings set reconciliation_paused = false;

select is(
    (select count(*)::int from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')),
    7,
    'unpausing brings the plan back'
);

select * from finish();
rollback;
