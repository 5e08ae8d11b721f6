-- create_prebuild's re-check counts against the schedule in force (SPEC 4.3), not only
-- desired_instances, and it does so with the generic plans it caches for every preset: the
-- calls below, one session, alternate between presets with and without schedules.
begin;
select plan(6);

create temp table p on commit drop as
select
    fixture.timezone(fixture.active_preset('scheduled_zero', 2), 'UTC') as zero,
    fixture.timezone(fixture.active_preset('scheduled_three', 1), 'UTC') as three,
    fixture.active_preset('plain', 1) as plain,
    fixture.active_preset('no_zone', 1) as no_zone;

create temp table schedules on commit drop as
select fixture.schedule(p.zero, '* * * * *', 0) as id from p
union all
select fixture.schedule(p.three, '* * * * *', 3) from p
union all
select fixture.schedule(p.no_zone, '* * * * *', 3) from p;

create temp table made on commit drop as
select
    g.n,
    'plain' as preset,
    prebuilds.create_prebuild(p.plain) as ws
from p, generate_series(1, 2) as g (n);
insert into made
select
    g.n,
    'zero' as preset,
    prebuilds.create_prebuild(p.zero) as ws
from p, generate_series(1, 2) as g (n);
insert into made
select
    g.n,
    'three' as preset,
    prebuilds.create_prebuild(p.three) as ws
from p, generate_series(1, 4) as g (n);
insert into made
select
    g.n,
    'no_zone' as preset,
    prebuilds.create_prebuild(p.no_zone) as ws
from p, generate_series(1, 2) as g (n);

select is(
    (select count(ws)::int from made where preset = 'plain'), 1,
    'a preset without schedules is filled to desired_instances (1) and no further'
);
select is(
    (select count(ws)::int from made where preset = 'zero'), 0,
    'a schedule in force that wants 0 stops every create, whatever desired_instances says (2)'
);
select is(
    (select count(ws)::int from made where preset = 'three'), 3,
    'a schedule in force that wants 3 fills past desired_instances (1) to 3 and no further'
);
select is(
    (select count(ws)::int from made where preset = 'no_zone'), 1,
    'schedules without a scheduling_timezone are ignored: desired_instances (1) holds'
);
select is(
    (select array_agg(n order by n) from made where preset = 'three' and ws is null), array[4],
    'only the create past the schedule''s size is skipped'
);
select ok(
    (
        select 'plan_cache_mode=force_generic_plan' = any(f.proconfig) from pg_proc as f
        where f.oid = 'prebuilds.create_prebuild(uuid)'::regprocedure
    ),
    'create_prebuild runs its cached generic plans (the schedule lookup is not planned per call)'
);

select * from finish();
rollback;
