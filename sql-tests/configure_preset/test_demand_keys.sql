-- configure_preset and publish_template_version accept SPEC 6.3's min_instances and max_instances:
-- keys not given are left alone, null clears, and a preset with only max_instances has a pool.
begin;
select plan(6);

create temp table ids on commit drop as
select
    prebuilds.publish_template_version(
        'acme', 'web', 'v1',
        '[{"name": "small", "desired_instances": 2, "min_instances": 1, "max_instances": 8},
          {"name": "burst", "max_instances": 20}]'
    ) as version;

select results_eq(
    $$select name, desired_instances, min_instances, max_instances from prebuilds.presets
      order by name$$,
    $$values ('burst', null::int, null::int, 20), ('small', 2, 1, 8)$$,
    'publish_template_version stores min_instances and max_instances'
);

create temp table small on commit drop as
select p.id from prebuilds.presets as p where p.name = 'small';

select lives_ok(
    $$select prebuilds.configure_preset((select s.id from small as s), '{"max_instances": 12}')$$,
    'configure_preset changes max_instances alone'
);
select results_eq(
    $$select desired_instances, min_instances, max_instances from prebuilds.presets
      where name = 'small'$$,
    $$values (2, 1, 12)$$,
    'the keys not given are left alone'
);
select lives_ok(
    $$select prebuilds.configure_preset(
        (select s.id from small as s), '{"min_instances": null, "max_instances": null}'
    )$$,
    'null clears both (demand sizing off)'
);
select results_eq(
    $$select desired_instances, min_instances, max_instances from prebuilds.presets
      where name = 'small'$$,
    $$values (2, null::int, null::int)$$,
    'cleared: desired_instances sizes the pool again'
);
select results_eq(
    $$select preset_name, desired, desired_reason from prebuilds.preset_state_at(now())
      order by preset_name$$,
    $$values
        ('burst', 0, 'demand: 0 claims in 1h × 10m builds (default_build_time) = 0 (min 0, max 20)'),
        ('small', 2, 'desired_instances')$$,
    'a preset with only max_instances has a pool (SPEC 4.1), sized by demand'
);

select * from finish();
rollback;
