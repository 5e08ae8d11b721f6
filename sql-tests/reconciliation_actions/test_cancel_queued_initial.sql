-- A queued initial build of an outdated preset is cancelled; one of an active preset is left
-- alone and counts as starting; builds a worker already picked up are never cancelled (SPEC 4.4).
begin;
select plan(8);
-- The builds in flight here are alive: hung jobs (SPEC 5.2) are sql-tests/fail_job's subject.
update prebuilds.settings set job_heartbeat_timeout = '1 day', job_pending_timeout = '1 day';

do $$
declare
    v_old uuid := fixture.active_preset('old', 1, p_preset => 'old-pool');
    v_cur uuid := fixture.active_preset('cur', 2, p_preset => 'cur-pool');
    v_ws uuid;
begin
    perform fixture.prebuild(v_old, '2025-06-02 11:00Z', 'starting', p_name => 'queued');
    perform fixture.prebuild(v_old, '2025-06-02 11:05Z', 'provisioning', p_name => 'picked');
    -- A restart of a prebuild (stop, then start build 3 queued) is in flight, not initial.
    v_ws := fixture.prebuild(v_old, '2025-06-02 09:00Z', 'stopped', p_name => 'restart');
    perform fixture.build(v_ws, 'start', 'pending', '2025-06-02 11:10Z');
    perform fixture.preset(fixture.new_version('old', 'v2'), 'old-pool', 1);
    perform fixture.prebuild(v_cur, '2025-06-02 11:00Z', 'starting', p_name => 'fresh');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['cancel:queued', 'create:cur-pool', 'create:old-pool'],
    'only the queued initial build of the outdated preset is cancelled; creates follow'
);

select results_eq(
    $$
    select seq, action, workspace_id, preset_id, reason
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where action = 'cancel'
    $$,
    $$
    select 1, 'cancel', fixture.ws('queued'), fixture.preset_of('old', 'v1', 'old-pool'),
           'outdated version v1 (active: v2): initial build still queued'
    $$,
    'the cancel comes first and names the workspace, the outdated preset and why'
);

select results_eq(
    $$
    select template_name, template_version_name, is_active, desired, actual, starting,
           pending_cancelable, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('cur', 'v1', true, 2, 0, 1, 0, 1),
        ('old', 'v1', false, 0, 0, 3, 1, 0),
        ('old', 'v2', true, 1, 0, 0, 0, 1)
    $$,
    'pending_cancelable counts the queued initial build of the inactive preset only'
);

select is(
    (
        select count(*)::int from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
        where workspace_id in (fixture.ws('picked'), fixture.ws('restart'), fixture.ws('fresh'))
    ),
    0,
    'a picked-up initial build, a queued restart and an active preset''s queued build: untouched'
);

select is(
    (
        select creates_planned from prebuilds.preset_state_at('2025-06-02 12:00Z')
        where preset_id = fixture.preset_of('cur', 'v1', 'cur-pool')
    ),
    1,
    'the active preset''s queued build counts as starting: 2 desired, 1 create'
);

-- A worker picks the queued build up before the reconciler runs: nothing left to cancel.
update prebuilds.provisioner_jobs set started_at = '2025-06-02 11:59Z', worker_id = 'w1'
where id = fixture.latest_job(fixture.ws('queued'));

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:cur-pool', 'create:old-pool'],
    'once picked up, the build is no longer cancelled'
);

select is_empty(
    $$
    select * from prebuilds.preset_state_at('2025-06-02 12:00Z')
    where template_version_name = 'v1' and template_name = 'old'
    $$,
    'an outdated preset with only builds in flight has nothing to clean up: not considered'
);

-- The version is promoted back: the queued build of v1 would be wanted again.
update prebuilds.provisioner_jobs set started_at = null, worker_id = null
where id = fixture.latest_job(fixture.ws('queued'));
update prebuilds.templates as t set
    active_version_id = (
        select v.id from prebuilds.template_versions as v
        where v.name = 'v1' and v.template_id = t.id
    )
where t.name = 'old';
-- The three starts in flight are all needed (with fewer desired, the queued initial build would
-- be a surplus of the active preset, SPEC 5.3).
update prebuilds.presets set desired_instances = 3
where id = fixture.preset_of('old', 'v1', 'old-pool');

select ok(
    not exists (
        select from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
        where action = 'cancel'
    ),
    'with v1 active again its queued initial build is not cancelled'
);

select * from finish();
rollback;
