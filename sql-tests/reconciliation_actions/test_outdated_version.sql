-- A new active version: the old version's running prebuild is deleted while the active version's
-- preset creates (SPEC 4.1, 4.4).
begin;
select plan(6);

do $$
declare
    v_old uuid := fixture.active_preset('t', 1);
begin
    perform fixture.prebuild(v_old, '2025-06-02 10:00Z', p_name => 'old');
    perform fixture.preset(fixture.new_version('t', 'v2'), 'default', 1);
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:old', 'create:default'],
    'the outdated prebuild is deleted, then the active preset creates'
);

select results_eq(
    $$
    select action, workspace_id, preset_id, reason
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where action = 'delete'
    $$,
    $$
    select 'delete', fixture.ws('old'), fixture.preset_of('t', 'v1'),
           'outdated version v1 (active: v2)'
    $$,
    'the delete names the workspace, the old preset and why'
);

select results_eq(
    $$
    select preset_id, template_version_name
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where action = 'create'
    $$,
    $$select fixture.preset_of('t', 'v2'), 'v2'$$,
    'the create is for the preset of the active version'
);

select results_eq(
    $$
    select template_version_name, is_active, desired, actual, eligible, extraneous,
           blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values ('v1', false, 0, 1, 0, 0, null::text, 0), ('v2', true, 1, 0, 0, 0, null, 1)$$,
    'preset_state: v1 inactive (desired 0, not eligible), v2 active and empty'
);

-- The old prebuild is gone (its delete succeeded): v1 has nothing to clean up.
update prebuilds.workspaces set deleted = true where id = fixture.ws('old');

select results_eq(
    $$select template_version_name from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$values ('v2')$$,
    'once its prebuild is deleted, the outdated preset leaves preset_state'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:default'],
    'and only the create remains'
);

select * from finish();
rollback;
