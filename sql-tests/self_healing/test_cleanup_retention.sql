-- Failed and stopped prebuilds past settings.failed_prebuild_retention are deleted (SPEC 5.5);
-- with a null retention (the default) they are kept for investigation (SPEC 4.4). Failed deletes
-- follow their own rule (5.1), people's workspaces are never touched, outdated presets too.
begin;
select plan(7);

do $$
declare
    v_p uuid := fixture.active_preset('t', 0);
    v_old uuid := fixture.active_preset('old', 0, p_preset => 'old-pool');
    v_alice uuid := fixture.user('alice');
    v_ws uuid;
begin
    perform fixture.prebuild(v_p, '2025-05-31 12:00Z', 'failed', p_name => 'failed-start');
    perform fixture.prebuild(v_p, '2025-06-01 12:00Z', 'stopped', p_name => 'stopped');
    v_ws := fixture.prebuild(v_p, '2025-05-31 12:00Z', p_name => 'failed-stop');
    perform fixture.build(v_ws, 'stop', 'failed', '2025-05-31 12:00Z');
    perform fixture.prebuild(v_p, '2025-06-02 11:00Z', 'failed', p_name => 'recent');
    perform fixture.prebuild(v_p, '2025-05-01 12:00Z', 'stopped', p_owner => v_alice,
        p_name => 'alices');
    perform fixture.prebuild(v_p, '2025-05-01 12:00Z', 'canceled', p_name => 'canceled');
    perform fixture.prebuild(v_old, '2025-05-01 12:00Z', 'stopped', p_name => 'outdated');
    perform fixture.new_version('old', 'v2');
end;
$$;

select is(
    (select failed_prebuild_retention from prebuilds.settings),
    null::interval,
    'by default failed and stopped prebuilds are kept'
);

select is_empty(
    $$select from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    'kept: no action at all'
);

select is_empty(
    $$select from prebuilds.preset_state_at('2025-06-02 12:00Z') where preset_name = 'old-pool'$$,
    'an outdated preset with only a stopped prebuild is not considered while kept'
);

update prebuilds.settings set failed_prebuild_retention = '1 day';

select results_eq(
    $$
    select w.name, ra.action, ra.reason
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z') as ra
    join prebuilds.workspaces as w on w.id = ra.workspace_id
    order by w.name
    $$,
    $$
    values
        ('failed-start', 'delete', 'cleanup: failed start finished 2 days ago'),
        ('failed-stop', 'delete', 'cleanup: failed stop finished 2 days ago'),
        ('outdated', 'delete', 'cleanup: stop finished 32 days ago')
    $$,
    'a retention of 1 day: failed starts and stops and stopped prebuilds older than it, any '
    'preset; the start that failed an hour ago is kept'
);

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where workspace_id = fixture.ws('stopped')
    $$,
    'a prebuild stopped exactly one retention ago is kept'
);

select results_eq(
    $$
    select reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00:01Z')
    where workspace_id = fixture.ws('stopped')
    $$,
    $$values ('cleanup: stop finished 1 day ago')$$,
    'one second later it is deleted'
);

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-07-02 12:00Z')
    where workspace_id in (fixture.ws('alices'), fixture.ws('canceled'))
    $$,
    'people''s workspaces and canceled builds are never cleaned up'
);

select * from finish();
rollback;
