-- Which presets are considered (SPEC 4.1): active ones with a pool, and any with a running
-- prebuild or a queued initial build to cancel. Presets that need nothing on old versions, active
-- presets without a pool and presets of deprecated templates with nothing to clean up are absent.
begin;
select plan(3);

do $$
declare
    v_t uuid := fixture.template('big');
    v_v1 uuid := fixture.version(v_t, 'v1');
    v_p1 uuid := fixture.preset(v_v1, 'idle', 2);
    v_v2 uuid := fixture.version(v_t, 'v2');
    v_p2 uuid := fixture.preset(v_v2, 'with-running', 2);
    v_p2q uuid := fixture.preset(v_v2, 'with-queued', 2);
    v_p2f uuid := fixture.preset(v_v2, 'in-flight-only', 2);
    v_v3 uuid := fixture.version(v_t, 'v3');
    v_p3 uuid := fixture.preset(v_v3, 'pool', 1);
    v_p3n uuid := fixture.preset(v_v3, 'no-pool');
    v_p3r uuid := fixture.preset(v_v3, 'pool-removed');
    v_dep uuid := fixture.active_preset('deprecated', 1);
    v_i int;
begin
    -- Old presets with history only: stopped, failed, users' workspaces, deleted prebuilds.
    perform fixture.prebuild(v_p1, '2025-06-01 10:00Z', 'stopped');
    perform fixture.prebuild(v_p1, '2025-06-01 10:00Z', 'failed');
    perform fixture.prebuild(v_p1, '2025-06-01 10:00Z', p_owner => fixture.user('alice'));
    for v_i in 1..20 loop
        perform fixture.prebuild(v_p1, '2025-06-01 10:00Z', p_name => 'gone-' || v_i);
    end loop;
    update prebuilds.workspaces set deleted = true where name like 'gone-%';

    perform fixture.prebuild(v_p2, '2025-06-01 10:00Z', p_name => 'running');
    perform fixture.prebuild(v_p2q, '2025-06-01 10:00Z', 'starting', p_name => 'queued');
    -- In flight and alive (not hung, SPEC 5.2): nothing to do for an inactive preset.
    perform fixture.prebuild(v_p2f, '2025-06-02 11:58Z', 'provisioning');
    perform fixture.prebuild(v_p2f, '2025-06-02 11:58Z', 'deleting');
    perform fixture.prebuild(v_p3r, '2025-06-01 10:00Z', p_name => 'removed');
    perform fixture.prebuild(v_p3n, '2025-06-01 10:00Z', 'stopped');
    update prebuilds.templates set deprecated = true where id = (
        select v.template_id from prebuilds.template_versions as v
        inner join prebuilds.presets as p on v.id = p.template_version_id
        where p.id = v_dep
    );
end;
$$;

select results_eq(
    $$
    select template_name, template_version_name, preset_name, is_active
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('big', 'v2', 'with-queued', false),
        ('big', 'v2', 'with-running', false),
        ('big', 'v3', 'pool', true),
        ('big', 'v3', 'pool-removed', true)
    $$,
    'only presets with a pool on the active version or with cleanup to do are considered'
);

select is(
    (select count(*)::int from prebuilds.preset_state_at('2025-06-02 12:00Z')),
    (
        select count(distinct preset_id)::int
        from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    ),
    'here every preset under consideration has an action'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['cancel:queued', 'delete:running', 'delete:removed', 'create:pool'],
    'the plan: cancel and delete for the old presets, delete for the removed pool, then create'
);

select * from finish();
rollback;
