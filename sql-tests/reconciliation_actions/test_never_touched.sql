-- Never touched (SPEC 4.4): stopped prebuilds, failed or canceled builds, builds in flight and
-- real users' workspaces get no delete or cancel, even when their preset is inactive.
begin;
select plan(6);
-- The builds in flight here are alive: hung jobs (SPEC 5.2) are sql-tests/fail_job's subject.
update prebuilds.settings set job_heartbeat_timeout = '1 day', job_pending_timeout = '1 day';

create temp table untouched (name text primary key) on commit drop;

do $$
declare
    v_old uuid := fixture.active_preset('t', 1, 3600, 'pool');
    v_alice uuid := fixture.user('alice');
    v_ws uuid;
begin
    perform fixture.prebuild(v_old, '2025-06-02 08:00Z', 'stopped', p_name => 'stopped');
    perform fixture.prebuild(v_old, '2025-06-02 08:00Z', 'failed', p_name => 'failed');
    perform fixture.prebuild(v_old, '2025-06-02 08:00Z', 'canceled', p_name => 'canceled');
    perform fixture.prebuild(v_old, '2025-06-02 08:00Z', 'provisioning', p_name => 'provisioning');
    perform fixture.prebuild(v_old, '2025-06-02 08:00Z', 'stopping', p_name => 'stopping');
    perform fixture.prebuild(v_old, '2025-06-02 08:00Z', 'deleting', p_name => 'deleting');
    -- Real users' workspaces: one running, one with a start still queued.
    perform fixture.prebuild(v_old, '2025-06-02 08:00Z', p_owner => v_alice, p_name => 'mine');
    perform fixture.prebuild(
        v_old, '2025-06-02 08:00Z', 'starting', p_owner => v_alice, p_name => 'mine-queued'
    );
    -- A prebuild claimed by alice: its latest build is alice's start.
    v_ws := fixture.prebuild(v_old, '2025-06-02 08:00Z', p_name => 'claimed');
    update prebuilds.workspaces set owner_id = v_alice where id = v_ws;
    perform fixture.build(v_ws, 'start', 'succeeded', '2025-06-02 09:00Z', v_alice);
    -- A stopped prebuild whose restart failed.
    v_ws := fixture.prebuild(v_old, '2025-06-02 08:00Z', 'stopped', p_name => 'restart-failed');
    perform fixture.build(v_ws, 'start', 'failed', '2025-06-02 09:00Z');
    -- The one running prebuild, so that the preset has something to delete.
    perform fixture.prebuild(v_old, '2025-06-02 08:00Z', p_name => 'running');
    insert into untouched
    select w.name from prebuilds.workspaces as w where w.name <> 'running';
end;
$$;

select is(
    (
        select count(*)::int from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z') as ra
        inner join prebuilds.workspaces as w on ra.workspace_id = w.id
        inner join untouched as u on w.name = u.name
    ),
    0,
    'active preset: nothing but the running prebuild is touched (it is expired)'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:running'],
    'the running expired prebuild is deleted (the provisioning one replaces it), nothing else'
);

select results_eq(
    $$
    select actual, expired, starting, stopping, deleting
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (1, 1, 1, 1, 1)$$,
    'users'' workspaces do not count; the prebuilds in flight are counted by transition'
);

-- The preset becomes inactive: its running prebuild goes, the rest stays.
do $$
begin
    perform fixture.new_version('t', 'v2');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:running'],
    'inactive preset: only the running prebuild is deleted'
);

select results_eq(
    $$select pending_cancelable, actual from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$values (0, 1)$$,
    'no build of a user and no picked-up build counts as cancelable'
);

update prebuilds.workspaces set deleted = true where name = 'running';

select is_empty(
    $$select * from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    'stopped, failed, canceled, in-flight and users'' workspaces alone keep no preset considered'
);

select * from finish();
rollback;
