-- last_invalidated_at (SPEC 4.2): prebuilds created before it are expired, deleted and replaced in
-- the same plan; one created exactly at the invalidation instant is kept.
begin;
select plan(5);

set local timezone = 'UTC';

do $$
declare
    v_p uuid := fixture.active_preset('t', 3);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'before');
    perform fixture.prebuild(v_p, '2025-06-02 11:00Z', p_name => 'exact');
    perform fixture.prebuild(v_p, '2025-06-02 11:30Z', p_name => 'after');
    update prebuilds.presets set last_invalidated_at = '2025-06-02 11:00Z' where id = v_p;
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:before', 'create:default'],
    'the prebuild from before the invalidation is deleted and replaced'
);

select results_eq(
    $$
    select workspace_id, reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where action = 'delete'
    $$,
    $$
    values (fixture.ws('before'), 'expired: created before invalidation at 2025-06-02 11:00:00+00')
    $$,
    'the reason names the invalidation'
);

select results_eq(
    $$
    select desired, actual, expired, eligible, extraneous, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (3, 3, 1, 2, 0, 1)$$,
    'preset_state: 1 of 3 running expired, 2 eligible, 1 create'
);

-- Invalidating again later expires every prebuild: all three go and three replace them.
update prebuilds.presets set last_invalidated_at = '2025-06-02 11:45Z';

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array[
        'delete:before', 'delete:exact', 'delete:after',
        'create:default', 'create:default', 'create:default'
    ],
    'a later invalidation expires all three, deleted oldest first, and three creates follow'
);

select results_eq(
    $$
    select expired, eligible, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (3, 0, 3)$$,
    'nothing is eligible after the invalidation'
);

select * from finish();
rollback;
