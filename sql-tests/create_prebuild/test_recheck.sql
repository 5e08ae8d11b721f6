-- create_prebuild re-checks under a lock on the preset (SPEC 4.5): null, and nothing inserted,
-- when the preset is not active any more or already has enough prebuilds (running unexpired or
-- starting). Expired, stopped and failed prebuilds do not count.
begin;
select plan(12);

do $$
declare
    v_old uuid := fixture.active_preset('outdated', 1);
    v_full uuid := fixture.active_preset('full', 1);
    v_exp uuid := fixture.active_preset('expiring', 1, 3600);
    v_stop uuid := fixture.active_preset('stopped', 1);
begin
    perform fixture.preset(fixture.new_version('outdated', 'v2'), 'default', 1);
    perform fixture.active_preset('deprecated', 1);
    update prebuilds.templates set deprecated = true where name = 'deprecated';
    perform fixture.active_preset('deleted', 1);
    update prebuilds.templates set deleted = true where name = 'deleted';
    perform fixture.active_preset('no-pool', null);
    perform fixture.active_preset('zero', 0);
    perform fixture.prebuild(v_full, now() - interval '1 hour');
    perform fixture.prebuild(v_exp, now() - interval '2 hours');
    perform fixture.prebuild(v_stop, now() - interval '1 hour', 'stopped');
    perform fixture.prebuild(v_stop, now() - interval '1 hour', 'failed');
end;
$$;

create temp table before on commit drop as
select count(*) as n from prebuilds.workspaces;

select is(
    prebuilds.create_prebuild(fixture.preset_of('outdated', 'v1')),
    null,
    'a preset of an outdated version: null'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('deprecated')),
    null,
    'a preset of a deprecated template: null'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('deleted')),
    null,
    'a preset of a deleted template: null'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('no-pool')),
    null,
    'a preset without a pool (desired_instances null): null'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('zero')),
    null,
    'a pool of 0: null'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('full')),
    null,
    'a pool already full with a running prebuild: null'
);

select is(
    prebuilds.create_prebuild(gen_random_uuid()),
    null,
    'an unknown preset: null'
);

select is(
    (select count(*) from prebuilds.workspaces),
    (select n from before),
    'none of these inserted anything'
);

select isnt(
    prebuilds.create_prebuild(fixture.preset_of('expiring')),
    null,
    'an expired prebuild does not count: a replacement is created'
);

select isnt(
    prebuilds.create_prebuild(fixture.preset_of('stopped')),
    null,
    'stopped and failed prebuilds do not count'
);

select isnt(
    prebuilds.create_prebuild(fixture.preset_of('outdated', 'v2')),
    null,
    'the active version''s preset gets its prebuild'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('outdated', 'v2')),
    null,
    'calling again: the starting prebuild fills the pool, null'
);

select * from finish();
rollback;
