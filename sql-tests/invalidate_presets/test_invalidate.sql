-- invalidate_presets: the presets of the template's active version (or the one named) expire
-- their prebuilds (SPEC 4.2); presets of other versions are left alone.
begin;
select plan(7);

create temp table ids on commit drop as
select
    prebuilds.publish_template_version(
        'acme', 'web', 'v1', '[{"name": "small", "desired_instances": 1}]'
    ) as v1,
    prebuilds.publish_template_version(
        'acme', 'web', 'v2',
        '[{"name": "small", "desired_instances": 1}, {"name": "large", "desired_instances": 1}]'
    ) as v2;

select is(prebuilds.invalidate_presets('acme', 'web', 'large'), 1, 'one preset by name');
select results_eq(
    $$
    select v.name, p.name, p.last_invalidated_at = now()
    from prebuilds.presets as p join prebuilds.template_versions as v
        on v.id = p.template_version_id
    order by 1, 2
    $$,
    $$values ('v1', 'small', null::bool), ('v2', 'large', true), ('v2', 'small', null)$$,
    'only that preset of the active version'
);
select is(prebuilds.invalidate_presets('acme', 'web'), 2, 'all presets of the active version');
select is(
    (select count(*)::int from prebuilds.presets where last_invalidated_at = now()), 2,
    'v1''s preset is not touched'
);
select throws_ok(
    $$select prebuilds.invalidate_presets('acme', 'web', 'medium')$$, 'P0002',
    'no preset ''medium'' on the active version of template ''web'' in organization ''acme''',
    'an unknown preset'
);
select throws_ok(
    $$select prebuilds.invalidate_presets('acme', 'api')$$, 'P0002',
    'no such template ''api'' in organization ''acme''', 'an unknown template'
);
select throws_ok(
    $$select prebuilds.invalidate_presets('acme', 'web', '')$$, '22023',
    'invalid preset name: must be 1 to 200 characters (got 0)', 'an empty preset name'
);

select * from finish();
rollback;
