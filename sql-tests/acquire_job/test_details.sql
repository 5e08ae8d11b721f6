-- acquire_job returns what a provisioner builds (issue 8): workspace, owner, organization,
-- template, version and preset names, and the preset's parameters. A delete builds the preset
-- of its build; a build without any preset gets '' and {}. Parameters must be a JSON object.
begin;
select plan(5);

do $$
declare
    v_p uuid := fixture.active_preset('web', 2);
    v_alice uuid := fixture.user('alice');
    v_ws uuid;
begin
    update prebuilds.presets
    set parameters = '{"cpu": 4, "region": "eu-west", "image": {"tag": "1.2"}}'
    where id = v_p;
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'starting', p_name => 'prebuild-a');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'deleting', p_name => 'prebuild-b');
    -- A person's workspace that never had a preset, with a queued stop.
    insert into prebuilds.workspaces (organization_id, template_id, owner_id, name)
    select t.organization_id, t.id, v_alice, 'alice-ws'
    from prebuilds.templates as t where t.name = 'web'
    returning id into v_ws;
    insert into prebuilds.provisioner_jobs (id, initiator_id, created_at)
    values ('00000000-0000-0000-0000-00000000000a', v_alice, '2025-06-02 09:00Z');
    insert into prebuilds.workspace_builds (
        workspace_id, build_number, template_version_id, preset_id, transition, initiator_id,
        job_id
    )
    select v_ws, 1, t.active_version_id, null, 'stop', v_alice,
        '00000000-0000-0000-0000-00000000000a'
    from prebuilds.templates as t where t.name = 'web';
end;
$$;

create temp table got on commit drop as
select
    n,
    a.*
from generate_series(1, 3) as n
cross join lateral prebuilds.acquire_job('w' || n) as a;

select results_eq(
    $$
    select
        workspace_name, owner_name, organization_name, template_name, template_version_name,
        preset_name, parameters, transition
    from got where n = 1
    $$,
    $$values ('alice-ws', 'alice', 'acme', 'web', 'v1', '', '{}'::jsonb, 'stop')$$,
    'a person''s job first; without a preset: empty preset name, parameters {}'
);

select results_eq(
    $$
    select
        workspace_name, owner_name, organization_name, template_name, template_version_name,
        preset_name, parameters, transition, build_number, preset_id
    from got where n in (2, 3) order by workspace_name
    $$,
    $$
    values
    (
        'prebuild-a', 'prebuilds', 'acme', 'web', 'v1', 'default',
        '{"cpu": 4, "region": "eu-west", "image": {"tag": "1.2"}}'::jsonb, 'start', 1,
        fixture.preset_of('web')
    ),
    (
        'prebuild-b', 'prebuilds', 'acme', 'web', 'v1', 'default',
        '{"cpu": 4, "region": "eu-west", "image": {"tag": "1.2"}}'::jsonb, 'delete', 2,
        fixture.preset_of('web')
    )
    $$,
    'a prebuild''s start and delete: the system user''s names, the preset and its parameters'
);

select is(
    (select count(*)::int from got where job_id is not null and workspace_id is not null),
    3,
    'every acquired job names its job and workspace'
);

select throws_ok(
    $$update prebuilds.presets set parameters = '["cpu", 4]' where name = 'default'$$,
    '23514',
    null,
    'parameters must be a JSON object (check_violation)'
);

create temp table plain on commit drop as
select fixture.preset(fixture.version(fixture.template('plain'), 'v1'), 'p') as id;

select is(
    (select p.parameters from prebuilds.presets as p inner join plain on p.id = plain.id),
    '{}'::jsonb,
    'a preset created without parameters has {}'
);

select * from finish();
rollback;
