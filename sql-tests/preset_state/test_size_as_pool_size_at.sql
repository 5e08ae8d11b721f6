-- The plan calls pool_size_at only for presets sized by schedules or demand and sizes the others
-- itself (desired_instances, or 0): both answers, desired and its reason, must be the ones
-- pool_size_at gives for every active preset under consideration.
begin;
select plan(3);

create temp table ids on commit drop as
select
    fixture.active_preset('fixed', 3) as fixed,
    fixture.active_preset('unpooled', null) as unpooled,
    fixture.timezone(fixture.active_preset('scheduled', 1), 'UTC') as scheduled,
    fixture.active_preset('demand', null) as demand;
do $$
begin
    update prebuilds.presets set max_instances = 4 where id = (select ids.demand from ids);
    perform fixture.schedule(ids.scheduled, '* 9-17 * * *', 5) from ids;
    -- A prebuild keeps the pool-less preset under consideration (SPEC 4.1).
    perform fixture.prebuild(ids.unpooled, '2025-06-02 08:00Z') from ids;
end;
$$;

create temp table sized on commit drop as
select
    s.preset_id,
    s.desired,
    s.desired_reason,
    z.desired as size_desired,
    z.desired_reason as size_reason
from prebuilds.preset_state_at('2025-06-02 12:00Z') as s
inner join prebuilds.presets as p on s.preset_id = p.id
cross join
    lateral prebuilds.pool_size_at(
        p.id, p.desired_instances, p.min_instances, p.max_instances, p.scheduling_timezone,
        exists (select from prebuilds.preset_schedules as ps where ps.preset_id = p.id),
        '2025-06-02 12:00Z'
    ) as z
where s.is_active;

select is(
    (select count(*)::int from sized),
    4,
    'all four presets are under consideration'
);
select is_empty(
    $$select * from sized
      where (desired, desired_reason) is distinct from (size_desired, size_reason)$$,
    'preset_state_at sizes every active preset as pool_size_at does'
);
select results_eq(
    $$select s.desired, s.desired_reason from sized as s, ids
      where s.preset_id in (ids.fixed, ids.unpooled) order by s.desired$$,
    $$values (0, 'no desired_instances'), (3, 'desired_instances')$$,
    'the two sized without pool_size_at: desired_instances, and none'
);

select * from finish();
rollback;
