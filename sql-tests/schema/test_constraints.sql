-- Bad data gets a clear error at write time (SPEC 2): CHECK constraints, unique keys.
begin;
select plan(18);

create temp table ids on commit drop as
select fixture.active_preset('t', 1) as preset;

create temp table ver on commit drop as
select
    v.id,
    v.template_id
from prebuilds.template_versions as v
inner join prebuilds.presets as p on v.id = p.template_version_id
inner join ids on p.id = ids.preset;

select throws_ok(
    $$insert into prebuilds.presets (template_version_id, name, desired_instances)
      select id, 'neg', -1 from ver$$,
    '23514',
    null,
    'a negative desired_instances is rejected'
);

select throws_ok(
    $$update prebuilds.presets set desired_instances = -1$$,
    '23514',
    null,
    'also on update'
);

select throws_ok(
    $$insert into prebuilds.presets (template_version_id, name, ttl_seconds)
      select id, 'ttl30', 30 from ver$$,
    '23514',
    null,
    'a ttl_seconds of 30 (below 60, not 0) is rejected'
);

select throws_ok(
    $$insert into prebuilds.presets (template_version_id, name, ttl_seconds)
      select id, 'ttl-neg', -60 from ver$$,
    '23514',
    null,
    'a negative ttl_seconds is rejected'
);

select lives_ok(
    $$insert into prebuilds.presets (template_version_id, name, ttl_seconds)
      select id, 'ttl' || coalesce(t::text, 'null'), t
      from ver cross join (values (0), (null), (60), (86400)) as x (t)$$,
    'ttl_seconds of 0, null, 60 and 86400 are accepted'
);

select throws_ok(
    $$insert into prebuilds.presets (template_version_id, name) select id, 'default' from ver$$,
    '23505',
    null,
    'a second preset named default on the same version is rejected'
);

select lives_ok(
    $$
    insert into prebuilds.presets (template_version_id, name)
    select fixture.version(template_id, 'v2', false), 'default' from ver
    $$,
    'the same preset name on another version is fine'
);

select throws_ok(
    $$select fixture.build(fixture.prebuild(preset, now()), 'restart', 'pending', now()) from ids$$,
    '23514',
    null,
    'an unknown transition is rejected'
);

select throws_ok(
    $$
    insert into prebuilds.workspace_agents (job_id, lifecycle_state)
    select fixture.latest_job(fixture.prebuild(preset, now())), 'sleepy' from ids
    $$,
    '23514',
    null,
    'an unknown agent lifecycle state is rejected'
);

select throws_ok(
    $$insert into prebuilds.settings default values$$,
    '23505',
    null,
    'a second settings row is rejected'
);

select throws_ok(
    $$insert into prebuilds.settings (singleton) values (false)$$,
    '23514',
    null,
    'a settings row that is not the singleton is rejected'
);

select throws_ok(
    $$update prebuilds.settings set failure_hard_limit = -1$$,
    '23514',
    null,
    'a negative failure_hard_limit is rejected'
);

select throws_ok(
    $$update prebuilds.settings set backoff_interval = '-1 minute'$$,
    '23514',
    null,
    'a negative backoff_interval is rejected'
);

select throws_ok(
    $$select fixture.template('t')$$,
    '23505',
    null,
    'a second live template named t in the same organization is rejected'
);

select lives_ok(
    $$select fixture.template('t', 'other-org')$$,
    'the same template name in another organization is fine'
);

update prebuilds.templates set deleted = true
where name = 't' and organization_id = (select id from prebuilds.organizations where name = 'acme');

select lives_ok(
    $$select fixture.template('t')$$,
    'once the old template is deleted its name can be reused'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 9-17 * * 1-5', -1 from ids$$,
    '23514',
    null,
    'a negative scheduled desired_instances is rejected'
);

select throws_ok(
    $$insert into prebuilds.workspaces (organization_id, template_id, owner_id, name)
      select t.organization_id, t.id, gen_random_uuid(), 'orphan' from prebuilds.templates as t
      limit 1$$,
    '23503',
    null,
    'a workspace of an unknown owner is rejected (foreign key)'
);

select * from finish();
rollback;
