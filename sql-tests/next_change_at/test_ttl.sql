-- next_change_at (SPEC 6.1), TTL: a running prebuild expires just after ttl_seconds; nothing
-- else is due without a TTL, and an already expired prebuild is not a future change.
begin;
select plan(5);

create temp table ids on commit drop as
select
    fixture.active_preset('web', 2, 3600) as ttl_preset,
    fixture.active_preset('api', 2) as plain_preset;

select is(
    prebuilds.next_change_at('2025-06-02 10:30Z'), null::timestamptz,
    'nothing time-driven: null'
);

do $$ begin perform fixture.prebuild(ids.plain_preset, '2025-06-02 09:00Z') from ids; end $$;
select is(
    prebuilds.next_change_at('2025-06-02 10:30Z'), null::timestamptz,
    'a prebuild without a TTL never expires by itself'
);

do $$ begin perform fixture.prebuild(ids.ttl_preset, '2025-06-02 10:00Z') from ids; end $$;
do $$ begin perform fixture.prebuild(ids.ttl_preset, '2025-06-02 10:20Z') from ids; end $$;
select is(
    prebuilds.next_change_at('2025-06-02 10:30Z'), '2025-06-02 11:00:00.000001Z'::timestamptz,
    'the oldest prebuild expires first, just after its hour'
);
select is(
    (
        select ps.expired from prebuilds.preset_state_at('2025-06-02 11:00:00.000001Z') as ps
        inner join ids on ps.preset_id = ids.ttl_preset
    ),
    1,
    'and the plan sees it expired at that instant'
);
select is(
    prebuilds.next_change_at('2025-06-02 11:00:00.000001Z'),
    '2025-06-02 11:20:00.000001Z'::timestamptz,
    'once it expired, the next one'
);

select * from finish();
rollback;
