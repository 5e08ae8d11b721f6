-- next_change_at (SPEC 6.1) for demand-sized presets (SPEC 6.3): the demand changes when the
-- oldest counted claim bucket leaves demand_window, the build time when the oldest counted build
-- leaves the last 24 hours. Presets without max_instances offer neither.
begin;
select plan(5);

create temp table ids on commit drop as
select fixture.active_preset('web', null) as preset;
insert into prebuilds.claim_stats (preset_id, bucket, hits, misses)
select
    ids.preset,
    b.bucket,
    1 as hits,
    0 as misses
from ids,
    (values ('2025-06-02 10:05Z'::timestamptz), ('2025-06-02 10:20Z')) as b (bucket);

select is(
    prebuilds.next_change_at('2025-06-02 10:30Z'), null::timestamptz,
    'without max_instances claims change nothing by themselves'
);

update prebuilds.presets set max_instances = 5 where id = (select ids.preset from ids);
select is(
    prebuilds.next_change_at('2025-06-02 10:30Z'), '2025-06-02 11:05Z'::timestamptz,
    'the 10:05 bucket leaves the one-hour window at 11:05'
);
select is(
    prebuilds.next_change_at('2025-06-02 11:05Z'), '2025-06-02 11:20Z'::timestamptz,
    'then the 10:20 bucket'
);

do $$ begin perform fixture.prebuild(ids.preset, '2025-06-02 09:00Z') from ids; end $$;
select is(
    prebuilds.next_change_at('2025-06-02 11:30Z'), '2025-06-03 09:00Z'::timestamptz,
    'a counted build leaves the 24 hours of the build-time median'
);
update prebuilds.settings set demand_window = '15 minutes';
select is(
    prebuilds.next_change_at('2025-06-02 10:30Z'), '2025-06-02 10:35Z'::timestamptz,
    'the window is settings.demand_window: the 10:20 bucket leaves at 10:35'
);

select * from finish();
rollback;
