-- Hung jobs are failed (SPEC 5.2): a prebuild job of the system user running with no heartbeat
-- for job_heartbeat_timeout (5 minutes), or pending for job_pending_timeout (30 minutes), gets a
-- fail_job action naming why. People's jobs are never touched; outdated presets are included.
begin;
select plan(11);

do $$
declare
    v_p uuid := fixture.active_preset('t', 4);
    v_old uuid := fixture.active_preset('old', 1, p_preset => 'old-pool');
    v_alice uuid := fixture.user('alice');
    v_ws uuid;
begin
    -- beating: picked up at 11:00, last heartbeat at 12:00.
    v_ws := fixture.prebuild(v_p, '2025-06-02 11:00Z', 'provisioning', p_name => 'beating');
    update prebuilds.provisioner_jobs set updated_at = '2025-06-02 12:00Z'
    where id = fixture.latest_job(v_ws);
    -- silent: picked up at 11:58 and never heard of again (updated_at null: started_at counts).
    perform fixture.prebuild(v_p, '2025-06-02 11:58Z', 'provisioning', p_name => 'silent');
    update prebuilds.provisioner_jobs set updated_at = null
    where id = fixture.latest_job(fixture.ws('silent'));
    -- queued: a start nobody picked up since 11:40 (a restart, so no surplus cancel applies).
    v_ws := fixture.prebuild(v_p, '2025-06-02 09:00Z', 'stopped', p_name => 'queued');
    perform fixture.build(v_ws, 'start', 'pending', '2025-06-02 11:40Z');
    -- a delete of the system user, running without heartbeat since 12:00.
    perform fixture.prebuild(v_p, '2025-06-02 12:00Z', 'deleting', p_name => 'deleting');
    update prebuilds.provisioner_jobs set started_at = '2025-06-02 12:00Z',
        updated_at = '2025-06-02 12:00Z'
    where id = fixture.latest_job(fixture.ws('deleting'));
    -- People's jobs: alice's own workspace, and a prebuild alice is stopping.
    perform fixture.prebuild(v_p, '2025-06-02 08:00Z', 'provisioning', p_owner => v_alice,
        p_name => 'alices');
    v_ws := fixture.prebuild(v_p, '2025-06-02 08:00Z', p_name => 'stopped-by-alice');
    perform fixture.build(v_ws, 'stop', 'running', '2025-06-02 08:00Z', v_alice);
    -- An outdated preset's start, running without heartbeat since 10:00.
    perform fixture.prebuild(v_old, '2025-06-02 10:00Z', 'provisioning', p_name => 'outdated');
    perform fixture.new_version('old', 'v2');
end;
$$;

select results_eq(
    $$
    select action, w.name from prebuilds.reconciliation_actions_at('2025-06-02 12:03Z') as ra
    join prebuilds.workspaces as w on w.id = ra.workspace_id
    order by seq
    $$,
    $$values ('fail_job', 'outdated')$$,
    'at 12:03: only the outdated preset''s job is hung (no heartbeat since 10:00)'
);

select results_eq(
    $$
    select reason from prebuilds.reconciliation_actions_at('2025-06-02 12:07:12Z')
    where workspace_id = fixture.ws('outdated')
    $$,
    $$values ('hung: no heartbeat for 02:07:12')$$,
    'the reason says how long the job has been silent'
);

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 12:05Z')
    where workspace_id = fixture.ws('beating')
    $$,
    'a heartbeat at 12:00 keeps a job alive until 12:05'
);

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 12:03:00Z')
    where workspace_id = fixture.ws('silent')
    $$,
    'exactly 5 minutes after its start without heartbeat: not hung yet'
);

select results_eq(
    $$
    select action, reason from prebuilds.reconciliation_actions_at('2025-06-02 12:03:01Z')
    where workspace_id = fixture.ws('silent')
    $$,
    $$values ('fail_job', 'hung: no heartbeat for 00:05:01')$$,
    'a second later it is hung (its start is its last sign of life)'
);

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 12:10Z')
    where workspace_id = fixture.ws('queued')
    $$,
    'queued for exactly 30 minutes: not hung'
);

select results_eq(
    $$
    select action, reason from prebuilds.reconciliation_actions_at('2025-06-02 12:10:01Z')
    where workspace_id = fixture.ws('queued')
    $$,
    $$values ('fail_job', 'hung: not picked up for 00:30:01')$$,
    'queued past job_pending_timeout: hung'
);

select results_eq(
    $$
    select w.name, ra.reason
    from prebuilds.reconciliation_actions_at('2025-06-02 12:05:01Z') as ra
    join prebuilds.workspaces as w on w.id = ra.workspace_id
    where w.name in ('beating', 'deleting')
    order by w.name
    $$,
    $$
    values
        ('beating', 'hung: no heartbeat for 00:05:01'),
        ('deleting', 'hung: no heartbeat for 00:05:01')
    $$,
    'the last heartbeat counts, not the start; a delete without heartbeat is hung as a start is'
);

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-03 12:00Z') as ra
    join prebuilds.workspaces as w on w.id = ra.workspace_id
    where w.name in ('alices', 'stopped-by-alice')
    $$,
    'people''s jobs are never failed, however long they are silent'
);

select results_eq(
    $$
    select preset_name, starting from prebuilds.preset_state_at('2025-06-02 12:05:01Z')
    order by preset_name
    $$,
    $$values ('default', 3), ('old-pool', 1)$$,
    'until failed, hung starts still count as starting (the next cycle sees them failed)'
);

update prebuilds.settings set job_heartbeat_timeout = '3 hours', job_pending_timeout = '1 day';

select is_empty(
    $$
    select from prebuilds.reconciliation_actions_at('2025-06-02 12:30Z')
    where action = 'fail_job'
    $$,
    'longer timeouts: nothing is hung'
);

select * from finish();
rollback;
