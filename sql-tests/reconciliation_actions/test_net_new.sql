-- An empty pool gets `desired` creates, each with a null workspace and the preset's id (SPEC 4.4).
begin;
select plan(6);

create temp table ids on commit drop as
select fixture.active_preset('t', 3) as preset;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:default', 'create:default', 'create:default'],
    'empty pool of 3: three creates'
);

select results_eq(
    $$
    select seq, action, workspace_id, preset_id
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    order by seq
    $$,
    $$
    select n, 'create', null::uuid, ids.preset
    from ids cross join generate_series(1, 3) as n
    $$,
    'creates are numbered 1..3, carry the preset and no workspace'
);

select results_eq(
    $$select distinct reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    $$values ('missing: 0 running, 0 starting, 3 desired')$$,
    'the reason says what is missing'
);

select results_eq(
    $$
    select organization_name, template_name, template_version_name, preset_name
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    limit 1
    $$,
    $$values ('acme', 't', 'v1', 'default')$$,
    'actions name the organization, template, version and preset'
);

select results_eq(
    $$
    select is_active, desired, actual, eligible, starting, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (true, 3, 0, 0, 0, null::text, 3)$$,
    'preset_state: 0 of 3, three creates planned, nothing blocked'
);

update prebuilds.presets set desired_instances = 0;

select is_empty(
    $$select * from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    'a pool of 0 needs nothing'
);

select * from finish();
rollback;
