-- settings.max_actions_per_cycle (issue 7): work past it is marked deferred, in plan order, and
-- backoff notes are never deferred.
begin;
select plan(4);

create temp table ids on commit drop as
select
    fixture.active_preset('a', 4) as a,
    fixture.active_preset('b', 3) as b;
update prebuilds.settings set max_actions_per_cycle = 5;

select is(
    (select count(*)::int from prebuilds.reconciliation_actions_at(now())), 7, 'seven creates'
);
select results_eq(
    $$select seq from prebuilds.reconciliation_actions_at(now()) where deferred order by seq$$,
    $$values (6), (7)$$,
    'the two past the limit are deferred'
);
select results_eq(
    $$select count(*)::int from prebuilds.reconciliation_actions_at(now())
      where not deferred group by preset_id order by 1$$,
    $$values (2), (3)$$,
    'interleaving spreads the first five over both presets'
);
update prebuilds.settings set max_actions_per_cycle = 100;
select is(
    (select count(*)::int from prebuilds.reconciliation_actions where deferred), 0,
    'under the limit nothing is deferred (the view too)'
);

select * from finish();
rollback;
