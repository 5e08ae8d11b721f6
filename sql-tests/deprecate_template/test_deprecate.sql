-- deprecate_template: a deprecated template's presets are inactive (SPEC 4.1), undone with
-- p_deprecated = false; unknown names and null are refused, and change nothing.
begin;
select plan(9);

create temp table ids on commit drop as
select prebuilds.publish_template_version(
    'acme', 'web', 'v1', '[{"name": "small", "desired_instances": 1}]'
) as version;

select lives_ok(
    $$select prebuilds.deprecate_template('acme', 'web')$$, 'deprecate'
);
select is((select deprecated from prebuilds.templates), true, 'the template is deprecated');
select is(
    (select count(*)::int from prebuilds.preset_state_at(now())), 0,
    'its pool is no longer considered'
);
select lives_ok(
    $$select prebuilds.deprecate_template('acme', 'web')$$, 'deprecating again is harmless'
);
select lives_ok(
    $$select prebuilds.deprecate_template('acme', 'web', false)$$, 'undo'
);
select is((select deprecated from prebuilds.templates), false, 'the template is live again');
select throws_ok(
    $$select prebuilds.deprecate_template('acme', 'nope')$$, 'P0002',
    'no such template ''nope'' in organization ''acme''', 'an unknown template'
);
select throws_ok(
    $$select prebuilds.deprecate_template('initech', 'web')$$, 'P0002',
    'no such organization ''initech''', 'an unknown organization'
);
select throws_ok(
    $$select prebuilds.deprecate_template('acme', 'web', null)$$, '22023',
    'invalid p_deprecated: must be true or false, not null', 'null'
);

select * from finish();
rollback;
