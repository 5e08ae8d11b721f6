-- delete_template: soft delete (templates.deleted); its presets become inactive, so the plan
-- deletes their prebuilds (SPEC 4.1); safe to call twice; a name that never existed is an error.
begin;
select plan(8);

create temp table ids on commit drop as
select prebuilds.publish_template_version(
    'acme', 'web', 'v1', '[{"name": "small", "desired_instances": 1}]'
) as version;
create temp table ws on commit drop as
select fixture.prebuild(p.id, now() - interval '1 hour') as id from prebuilds.presets as p;

select is(
    prebuilds.delete_template('acme', 'web'), true, 'the first call deletes the template'
);
select results_eq(
    $$select deleted, deprecated from prebuilds.templates$$,
    $$values (true, false)$$,
    'the row stays, marked deleted'
);
select results_eq(
    $$select action, workspace_id from prebuilds.reconciliation_actions_at(now())$$,
    $$select 'delete', id from ws$$,
    'the next cycle deletes its prebuild'
);
select is(prebuilds.delete_template('acme', 'web'), false, 'a second call does nothing');
select throws_ok(
    $$select prebuilds.delete_template('acme', 'nope')$$, 'P0002',
    'no such template ''nope'' in organization ''acme''', 'a template that never existed'
);
select throws_ok(
    $$select prebuilds.delete_template('', 'web')$$, '22023',
    'invalid organization name: must be 1 to 200 characters (got 0)', 'an empty name'
);
select isnt(
    prebuilds.publish_template_version('acme', 'web', 'v1', '[]'), (select version from ids),
    'the name can be published again, as a new template'
);
select is(
    (select count(*)::int from prebuilds.templates), 2, 'next to the deleted one'
);

select * from finish();
rollback;
