begin;
select plan(2);
select is((select count(*) from prebuilds.preset_state)::int, 0, 'empty fleet has no presets');
-- Setup statements must not return rows (pytest-pgtap reads every row as TAP): keep ids in
-- temp tables.
create temp table ids on commit drop as
select fixture.active_preset('t', 2) as preset;
create temp table ws on commit drop as
select fixture.prebuild(ids.preset, '2025-06-02 10:00Z') as id from ids;
select results_eq(
    $$select action from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    $$values ('create')$$,
    'one running of two desired: one create'
);
select * from finish();
rollback;
