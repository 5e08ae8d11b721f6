-- Demand-based pool size (SPEC 6.3): desired = clamp(max(base, demand), min, max) with
-- demand = ceil(claims in demand_window × median build time / window), at fixed instants.
begin;
select plan(22);

create temp table ids on commit drop as
select fixture.active_preset('web', null) as preset;
update prebuilds.presets set min_instances = 1, max_instances = 10
where id = (select ids.preset from ids);

-- The size and its reason for the preset at p_now.
create function pg_temp.size(p_now timestamptz)
returns table (desired int, demand int, desired_reason text)
language sql
as $$
    select s.desired, s.demand, s.desired_reason
    from prebuilds.preset_state_at(p_now) as s
    where s.preset_id = (select ids.preset from ids);
$$;

-- No claims, no builds: demand 0, the pool kept at min_instances, the build time the default.
select results_eq(
    $$select * from pg_temp.size('2025-06-02 12:00Z')$$,
    $$values (
        1, 0, 'demand: 0 claims in 1h × 10m builds (default_build_time) = 0 (min 1, max 10)'
    )$$,
    'no history: demand 0, desired = min_instances, default build time'
);
select is(
    (
        select count(*)::int from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
        where action = 'create'
    ),
    1, 'a demand-sized pool with no history creates min_instances'
);

-- Three successful prebuild starts in the last 24 h taking 12, 18 and 30 minutes: median 18m.
create temp table builds on commit drop as
select
    fixture.prebuild(ids.preset, at) as ws,
    d
from ids,
    (
        values
        ('2025-06-02 09:00Z'::timestamptz, interval '12 minutes'),
        ('2025-06-02 09:10Z', interval '18 minutes'),
        ('2025-06-02 09:20Z', interval '30 minutes')
    ) as b (at, d);
update prebuilds.provisioner_jobs as j
set completed_at = j.created_at + b.d
from builds as b
where j.id = fixture.latest_job(b.ws);
-- Not counted: a failed start (2 h), a start older than 24 h (3 h), a start of a person (1 h).
create temp table other_builds on commit drop as
select
    fixture.prebuild(ids.preset, '2025-06-02 09:30Z', 'failed') as ws,
    interval '2 hours' as d
from ids
union all
select
    fixture.prebuild(ids.preset, '2025-06-01 11:59Z') as ws,
    interval '3 hours' as d
from ids
union all
select
    fixture.prebuild(ids.preset, '2025-06-02 09:40Z', p_owner => fixture.user('alice')) as ws,
    interval '1 hour' as d
from ids;
update prebuilds.provisioner_jobs as j
set completed_at = j.created_at + b.d
from other_builds as b
where j.id = fixture.latest_job(b.ws);

-- 12 claims in the hour before 12:00 (8 hits, 4 misses, over two shards and two minutes); the
-- bucket of 11:00 started an hour before: outside the window, like every older one.
insert into prebuilds.claim_stats (preset_id, bucket, shard, hits, misses)
select
    ids.preset,
    c.bucket,
    c.shard,
    c.hits,
    c.misses
from ids,
    (
        values
        ('2025-06-02 11:30Z'::timestamptz, 0, 5, 1),
        ('2025-06-02 11:30Z', 3, 1, 2),
        ('2025-06-02 11:59Z', 0, 2, 1),
        ('2025-06-02 11:00Z', 0, 50, 50),
        ('2025-06-02 09:00Z', 0, 500, 0),
        ('2025-06-02 12:01Z', 0, 70, 0)
    ) as c (bucket, shard, hits, misses);

select results_eq(
    $$select * from pg_temp.size('2025-06-02 12:00Z')$$,
    $$values (4, 4, 'demand: 12 claims in 1h × 18m builds = 4 (min 1, max 10)')$$,
    '12 claims in 1h × 18m builds: ceil(3.6) = 4 (old, future and other claims ignored)'
);
select is(
    (select s.demand from pg_temp.size('2025-06-02 11:59:59Z') as s),
    ceil((50 + 50 + 5 + 1 + 1 + 2 + 2 + 1) * 18 / 60.0)::int,
    'at 11:59:59 the 11:00 bucket started less than an hour ago: counted'
);
select is(
    (select s.demand from pg_temp.size('2025-06-02 12:00Z') as s), 4,
    'at 12:00 the 11:00 bucket started exactly an hour ago: no longer counted'
);

-- The build time: the median over the window of 24 hours before p_now.
select is(
    (select s.desired_reason from pg_temp.size('2025-06-03 09:05Z') as s),
    'demand: 0 claims in 1h × 24m builds = 0 (min 1, max 10)',
    'a day later the 09:00 start has left the 24 h window: median of 18m and 30m = 24m'
);
select is(
    (select s.desired_reason from pg_temp.size('2025-06-03 09:30Z') as s),
    'demand: 0 claims in 1h × 10m builds (default_build_time) = 0 (min 1, max 10)',
    'no successful prebuild start in the last 24 h: the default build time'
);
update prebuilds.settings set default_build_time = '25 minutes';
select is(
    (select s.desired_reason from pg_temp.size('2025-06-03 09:30Z') as s),
    'demand: 0 claims in 1h × 25m builds (default_build_time) = 0 (min 1, max 10)',
    'settings.default_build_time is that default'
);

-- Clamping.
update prebuilds.presets set max_instances = 3 where id = (select ids.preset from ids);
select results_eq(
    $$select * from pg_temp.size('2025-06-02 12:00Z')$$,
    $$values (3, 4, 'demand: 12 claims in 1h × 18m builds = 4 (min 1, max 3)')$$,
    'demand above max_instances: desired = max_instances'
);
update prebuilds.presets set min_instances = 6, max_instances = 8
where id = (select ids.preset from ids);
select is(
    (select s.desired from pg_temp.size('2025-06-02 12:00Z') as s), 6,
    'demand below min_instances: desired = min_instances'
);
update prebuilds.presets set min_instances = null, max_instances = 8
where id = (select ids.preset from ids);
select is(
    (select s.desired from pg_temp.size('2025-06-02 13:30Z') as s), 0,
    'no min_instances and no recent claims: the pool may shrink to 0'
);

-- The base: desired_instances (or a schedule) above demand wins; max_instances still caps it.
update prebuilds.presets set desired_instances = 6 where id = (select ids.preset from ids);
select results_eq(
    $$select * from pg_temp.size('2025-06-02 12:00Z')$$,
    $$values (
        6, 4, 'desired_instances above demand: 12 claims in 1h × 18m builds = 4 (min 0, max 8)'
    )$$,
    'desired_instances above demand: desired = desired_instances'
);
update prebuilds.presets set desired_instances = 9 where id = (select ids.preset from ids);
select is(
    (select s.desired from pg_temp.size('2025-06-02 12:00Z') as s), 8,
    'desired_instances above max_instances: capped at max_instances'
);
update prebuilds.presets set desired_instances = 2 where id = (select ids.preset from ids);
select is(
    (select s.desired from pg_temp.size('2025-06-02 12:00Z') as s), 4,
    'desired_instances below demand: demand wins'
);
create temp table schedule_set on commit drop as
select
    fixture.timezone(ids.preset, 'UTC') as zone_set,
    fixture.schedule(ids.preset, '* 8-18 * * *', 7) as schedule_id
from ids;
select results_eq(
    $$select * from pg_temp.size('2025-06-02 12:00Z')$$,
    $$values (
        7, 4,
        'schedule ''* 8-18 * * *'' in force above demand: 12 claims in 1h × 18m builds = 4 '
        || '(min 0, max 8)'
    )$$,
    'a schedule in force is the base'
);

-- demand_window: the same claims over a window of 2 hours halve the rate.
update prebuilds.settings set demand_window = '2 hours';
select is(
    (select s.demand from pg_temp.size('2025-06-02 12:00Z') as s),
    ceil((12 + 100) * 18 / 120.0)::int,
    'demand_window of 2 h: the 11:00 bucket counts again, the rate is per 2 h'
);
update prebuilds.settings set demand_window = '1 hour';

-- Without max_instances: no demand, the reasons of SPEC 6.3.
update prebuilds.presets set max_instances = null, min_instances = null
where id = (select ids.preset from ids);
select results_eq(
    $$select * from pg_temp.size('2025-06-02 12:00Z')$$,
    $$values (7, null::int, 'schedule ''* 8-18 * * *'' in force')$$,
    'not demand-sized: the schedule in force, no demand'
);
select results_eq(
    $$select * from pg_temp.size('2025-06-02 20:00Z')$$,
    $$values (2, null::int, 'desired_instances')$$,
    'not demand-sized and no schedule in force: desired_instances'
);

-- A preset with only max_instances has a pool (SPEC 4.1).
create temp table only_max on commit drop as
select fixture.active_preset('api', null) as preset;
update prebuilds.presets set max_instances = 5 where id = (select o.preset from only_max as o);
select results_eq(
    $$select desired, demand from prebuilds.preset_state_at('2025-06-02 12:00Z')
      where preset_id = (select o.preset from only_max as o)$$,
    $$values (0, 0)$$,
    'max_instances alone makes a pool: considered, desired 0 without claims'
);

-- Inactive: desired 0, and the reason says why.
create temp table v2 on commit drop as select fixture.new_version('web', 'v2');
select is(
    (select s.desired_reason from pg_temp.size('2025-06-02 12:00Z') as s),
    'inactive: outdated version v1 (active: v2)',
    'an inactive preset says why it wants nothing'
);

-- create_prebuild's re-check sizes the pool like the plan: claims now make room for creates.
create temp table live on commit drop as
select fixture.active_preset('live', null) as preset;
update prebuilds.presets set max_instances = 3 where id = (select l.preset from live as l);
select is(
    (select prebuilds.create_prebuild(l.preset) from live as l), null,
    'no claims, no min_instances: create_prebuild refuses (desired 0)'
);
insert into prebuilds.claim_stats (preset_id, bucket, hits, misses)
select
    l.preset,
    date_trunc('minute', now()) as bucket,
    0 as hits,
    12 as misses
from live as l;
select isnt(
    (select prebuilds.create_prebuild(l.preset) from live as l), null,
    '12 misses this minute × 10m default builds / 1h = 2: create_prebuild creates'
);

select * from finish();
rollback;
