-- publish_template_version (SPEC 7): a version and its presets in one call, organization and
-- template created when new, activation when asked; the same call again is a no-op.
begin;
select plan(20);

create temp table published (step text, id uuid) on commit drop;

insert into published
select
    'v1' as step,
    prebuilds.publish_template_version(
        'acme', 'web', 'v1',
        '[
            {"name": "small", "parameters": {"cpu": 2, "image": "web:1"}, "desired_instances": 2,
             "ttl_seconds": 3600},
            {"name": "large", "scheduling_timezone": "Europe/Paris",
             "schedules": [{"cron": "* 9-18 * * 1-5", "instances": 3},
                           {"cron": "* 19-23 * * 1-5", "instances": 1}]},
            {"name": "manual"}
        ]'
    ) as id;

select is(
    (select count(*)::int from prebuilds.organizations where name = 'acme'), 1,
    'the organization is created'
);
select results_eq(
    $$
    select t.name, t.active_version_id, t.deleted, t.deprecated
    from prebuilds.templates as t
    $$,
    $$select 'web', (select id from published where step = 'v1'), false, false$$,
    'the template is created, with v1 active'
);
select results_eq(
    $$select v.id, v.name from prebuilds.template_versions as v$$,
    $$select id, 'v1' from published where step = 'v1'$$,
    'the version id is returned'
);
select results_eq(
    $$
    select p.name, p.parameters, p.desired_instances, p.ttl_seconds, p.scheduling_timezone
    from prebuilds.presets as p order by p.name
    $$,
    $$
    values
    ('large', '{}'::jsonb, null::int, null::int, 'Europe/Paris'),
    ('manual', '{}', null, null, ''),
    ('small', '{"cpu": 2, "image": "web:1"}', 2, 3600, '')
    $$,
    'the presets, with parameters ({} when not given) and pool settings'
);
select results_eq(
    $$
    select s.cron_expression, s.desired_instances
    from prebuilds.preset_schedules as s order by s.created_at
    $$,
    $$values ('* 9-18 * * 1-5', 3), ('* 19-23 * * 1-5', 1)$$,
    'the schedules, in the order given'
);
select results_eq(
    $$select preset_name, desired from prebuilds.preset_state_at('2025-06-02 10:00Z') order by 1$$,
    $$values ('large', 3), ('small', 2)$$,
    'the plan sees the pools (large by its schedule on a Monday noon in Paris)'
);

insert into published
select
    'v1 again' as step,
    prebuilds.publish_template_version(
        'acme', 'web', 'v1',
        '[{"name": "manual"}, {"name": "large", "desired_instances": 7},
          {"name": "small", "parameters": {"image": "web:1", "cpu": 2}}]'
    ) as id;
select is(
    (select id from published where step = 'v1 again'),
    (select id from published where step = 'v1'),
    'the same version with the same presets again returns the same id'
);
select results_eq(
    $$select p.name, p.desired_instances from prebuilds.presets as p order by p.name$$,
    $$values ('large', null::int), ('manual', null), ('small', 2)$$,
    'and changes nothing: pool settings are configure_preset''s (SPEC 7)'
);
select is(
    (select count(*)::int from prebuilds.template_versions), 1, 'no second version'
);

insert into published
select
    'v2 inactive' as step,
    prebuilds.publish_template_version(
        'acme', 'web', 'v2', '[{"name": "small", "desired_instances": 1}]', false
    ) as id;
select is(
    (select active_version_id from prebuilds.templates),
    (select id from published where step = 'v1'),
    'p_activate false leaves the active version alone'
);
select isnt(
    (select id from published where step = 'v2 inactive'),
    (select id from published where step = 'v1'),
    'v2 is a version of its own'
);
select is(
    (select count(*)::int from prebuilds.templates), 1, 'of the same template'
);

insert into published
select
    'v2 activated' as step,
    prebuilds.publish_template_version(
        'acme', 'web', 'v2', '[{"name": "small", "desired_instances": 1}]'
    ) as id;
select is(
    (select active_version_id from prebuilds.templates),
    (select id from published where step = 'v2 inactive'),
    'publishing v2 again with p_activate activates it (a retried call ends the same way)'
);

insert into published
select
    'v1 rollback' as step,
    prebuilds.publish_template_version(
        'acme', 'web', 'v1',
        '[{"name": "manual"}, {"name": "large"}, {"name": "small",
          "parameters": {"image": "web:1", "cpu": 2}}]'
    ) as id;
select is(
    (select active_version_id from prebuilds.templates),
    (select id from published where step = 'v1'),
    'and publishing v1 again makes it active again: a rollback'
);

insert into published
select
    'globex' as step,
    prebuilds.publish_template_version('globex', 'web', 'v1', '[]') as id;
select is(
    (select count(*)::int from prebuilds.organizations), 2,
    'another organization is created when new'
);
select is(
    (select count(*)::int from prebuilds.templates where name = 'web'), 2,
    'with its own template of the same name'
);
select is(
    (
        select count(*)::int from prebuilds.presets as p
        where p.template_version_id = (select id from published where step = 'globex')
    ),
    0, 'a version may have no presets'
);

update prebuilds.templates set deleted = true
where organization_id = (select id from prebuilds.organizations where name = 'globex');
insert into published
select
    'globex after delete' as step,
    prebuilds.publish_template_version('globex', 'web', 'v1', '[]') as id;
select isnt(
    (select id from published where step = 'globex after delete'),
    (select id from published where step = 'globex'),
    'a deleted template''s name is used by a new template'
);

update prebuilds.templates set deprecated = true where name = 'web' and not deleted;
insert into published
select
    'deprecated' as step,
    prebuilds.publish_template_version('acme', 'web', 'v3', '[{"name": "small"}]') as id;
select is(
    (
        select active_version_id from prebuilds.templates as t
        inner join prebuilds.organizations as o on t.organization_id = o.id where o.name = 'acme'
    ),
    (select id from published where step = 'deprecated'),
    'a deprecated template gets new versions'
);
select is(
    (
        select deprecated from prebuilds.templates as t
        inner join prebuilds.organizations as o on t.organization_id = o.id where o.name = 'acme'
    ),
    true,
    'and stays deprecated until deprecate_template(..., false)'
);

select * from finish();
rollback;
