-- desired_instances set to null on an active preset (SPEC 4.1): the pool is removed, desired is 0
-- and the running prebuilds are deleted; with nothing left the preset is no longer considered.
begin;
select plan(6);
-- The builds in flight here are alive: hung jobs (SPEC 5.2) are sql-tests/fail_job's subject.
update prebuilds.settings set job_heartbeat_timeout = '1 day', job_pending_timeout = '1 day';

do $$
declare
    v_p uuid := fixture.active_preset('t', 2);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'a');
    perform fixture.prebuild(v_p, '2025-06-02 11:00Z', p_name => 'b');
    perform fixture.prebuild(v_p, '2025-06-02 11:30Z', 'starting', p_name => 'c');
    update prebuilds.presets set desired_instances = null where id = v_p;
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['cancel:c', 'delete:a', 'delete:b'],
    'the queued build is cancelled first (SPEC 5.3), then both running prebuilds are deleted'
);

select results_eq(
    $$select reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z') order by seq$$,
    $$
    values
        ('surplus: 2 running, 1 starting, 0 desired: initial build still queued'),
        ('surplus: 2 running, 0 desired'),
        ('surplus: 2 running, 0 desired')
    $$,
    'all three are surplus to a desired size of 0'
);

select results_eq(
    $$
    select is_active, desired, actual, eligible, extraneous, starting, blocked_reason,
           creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (true, 0, 2, 2, 2, 1, null::text, 0)$$,
    'preset_state: still active, desired 0, both running extraneous'
);

-- The deletes succeed and the starting one fails: nothing left to clean up.
update prebuilds.workspaces set deleted = true where name in ('a', 'b');
update prebuilds.provisioner_jobs
set started_at = created_at, completed_at = created_at, error = 'boom'
where id = fixture.latest_job(fixture.ws('c'));

select is_empty(
    $$select * from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    'with no pool and no running prebuild the preset is not considered'
);

select is_empty(
    $$select * from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    'and there is nothing to do'
);

update prebuilds.presets set desired_instances = 1;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:default'],
    'restoring the pool brings the preset back with a create'
);

select * from finish();
rollback;
