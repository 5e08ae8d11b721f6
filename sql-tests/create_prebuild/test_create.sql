-- create_prebuild (SPEC 4.5): inserts a workspace owned by the system user with a random
-- prebuild-… name, build 1 (start, the preset's version, the preset, initiator system user) and a
-- pending job; returns the workspace id. Repeated calls stop once the pool is full.
begin;
select plan(11);

create temp table ids on commit drop as
select fixture.active_preset('t', 2) as preset;

create temp table created on commit drop as
select prebuilds.create_prebuild(ids.preset) as id from ids;

select isnt((select id from created), null, 'returns the id of the new workspace');

select results_eq(
    $$
    select w.owner_id, w.organization_id, w.template_id, w.deleted, w.created_at
    from prebuilds.workspaces as w inner join created as c on w.id = c.id
    $$,
    $$
    select 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid, t.organization_id, t.id, false, now()
    from prebuilds.templates as t where t.name = 't'
    $$,
    'the workspace is owned by the system user, in the template''s organization, created now'
);

select matches(
    (select w.name from prebuilds.workspaces as w inner join created as c on w.id = c.id),
    '^prebuild-[0-9a-f]+$',
    'it gets a random prebuild-… name'
);

select results_eq(
    $$
    select b.build_number, b.transition, b.template_version_id, b.preset_id, b.initiator_id
    from prebuilds.workspace_builds as b inner join created as c on b.workspace_id = c.id
    $$,
    $$
    select 1, 'start', p.template_version_id, p.id, prebuilds.system_user_id()
    from prebuilds.presets as p inner join ids on p.id = ids.preset
    $$,
    'one build: number 1, start, the preset''s version and the preset, by the system user'
);

select results_eq(
    $$
    select j.status, j.initiator_id, j.worker_id
    from prebuilds.workspace_builds as b
    inner join created as c on b.workspace_id = c.id
    inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
    $$,
    $$values ('pending', prebuilds.system_user_id(), null::text)$$,
    'its job is pending, initiated by the system user'
);

select results_eq(
    $$select current_preset_id from prebuilds.workspaces where id = (select id from created)$$,
    $$select preset from ids$$,
    'the workspace counts in the preset'
);

select results_eq(
    $$
    select starting, creates_planned from prebuilds.preset_state_at(now() + interval '1 minute')
    $$,
    $$values (1, 1)$$,
    'the plan sees it starting and wants one more'
);

insert into created select prebuilds.create_prebuild(ids.preset) from ids;

select is(
    (select count(distinct id)::int from created where id is not null),
    2,
    'a second call creates a second prebuild'
);

insert into created select prebuilds.create_prebuild(ids.preset) from ids;

select is(
    (select count(*)::int from created where id is null),
    1,
    'a third call returns null: two starting fill a pool of 2'
);

select is(
    (select count(*)::int from prebuilds.workspaces),
    2,
    'and inserts nothing'
);

select is_empty(
    $$select * from prebuilds.reconciliation_actions_at(now() + interval '1 minute')$$,
    'the plan has nothing left to do'
);

select * from finish();
rollback;
