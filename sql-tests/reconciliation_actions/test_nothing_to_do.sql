-- A pool at its desired size with every prebuild eligible: the plan is empty (SPEC 4.4).
begin;
select plan(6);

create temp table ids on commit drop as
select fixture.active_preset('t', 2) as preset;

do $$
begin
    perform fixture.prebuild(ids.preset, '2025-06-02 10:00Z', p_name => 'a') from ids;
    perform fixture.prebuild(ids.preset, '2025-06-02 11:00Z', p_name => 'b') from ids;
end;
$$;

select is_empty(
    $$select * from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    'desired met and all eligible: no actions'
);

select results_eq(
    $$
    select is_active, desired, actual, eligible, expired, extraneous, starting, blocked_reason,
           creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (true, 2, 2, 2, 0, 0, 0, null::text, 0)$$,
    'the preset is shown full: 2 of 2 running and eligible, nothing blocked or planned'
);

select results_eq(
    $$select preset_id from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$select preset from ids$$,
    'the preset is under consideration (active, with a pool)'
);

select is_empty(
    $$select * from prebuilds.reconciliation_actions_at('2025-06-09 12:00Z')$$,
    'without a ttl, a week later there is still nothing to do'
);

select is_empty(
    'select * from prebuilds.reconciliation_actions',
    'the view (now) agrees: no actions'
);

select results_eq(
    'select preset_id, desired, actual, eligible from prebuilds.preset_state',
    $$select preset, 2, 2, 2 from ids$$,
    'the view preset_state (now) shows the same full pool'
);

select * from finish();
rollback;
