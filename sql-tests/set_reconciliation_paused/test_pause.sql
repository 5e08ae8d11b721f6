-- set_reconciliation_paused: pauses and resumes the whole deployment (SPEC 4.4).
begin;
select plan(5);

create temp table ids on commit drop as
select prebuilds.publish_template_version(
    'acme', 'web', 'v1', '[{"name": "small", "desired_instances": 1}]'
) as version;

select is(prebuilds.set_reconciliation_paused(true), true, 'pause returns the value in force');
select is(
    (select count(*)::int from prebuilds.reconciliation_actions_at(now())), 0,
    'while paused nothing is planned'
);
select is(prebuilds.set_reconciliation_paused(false), false, 'resume');
select is(
    (select count(*)::int from prebuilds.reconciliation_actions_at(now())), 1,
    'the create is planned again'
);
select throws_ok(
    $$select prebuilds.set_reconciliation_paused(null)$$, '22023',
    'invalid p_paused: must be true or false, not null', 'null is refused'
);

select * from finish();
rollback;
