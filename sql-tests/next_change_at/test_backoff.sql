-- next_change_at (SPEC 6.1), backoff: creates wait until last failure + failures x
-- backoff_interval, and the count drops when a failure leaves backoff_lookback.
begin;
select plan(5);

create temp table ids on commit drop as
select fixture.active_preset('web', 1) as preset;

do $$ begin perform fixture.prebuild(ids.preset, '2025-06-02 10:00Z', 'failed') from ids; end $$;
do $$ begin perform fixture.prebuild(ids.preset, '2025-06-02 10:10Z', 'failed') from ids; end $$;

select is(
    prebuilds.next_change_at('2025-06-02 10:10:30Z'),
    (select ps.backoff_until from prebuilds.preset_state_at('2025-06-02 10:10:30Z') as ps),
    'the end of the backoff, as preset_state says it'
);
select is(
    prebuilds.next_change_at('2025-06-02 10:10:30Z'), '2025-06-02 10:12Z'::timestamptz,
    'two failures, one minute each, after the last one'
);
select is(
    prebuilds.next_change_at('2025-06-02 10:12Z'), '2025-06-02 11:00Z'::timestamptz,
    'after the backoff: the first failure leaves the lookback'
);
select is(
    prebuilds.next_change_at('2025-06-02 11:05Z'), '2025-06-02 11:10Z'::timestamptz,
    'then the second'
);
select is(
    prebuilds.next_change_at('2025-06-02 11:10Z'), null::timestamptz,
    'failures older than the lookback are no future change'
);

select * from finish();
rollback;
