-- configure_preset (SPEC 7): changes only the pool settings given; JSON null clears; schedules
-- given replace the preset's schedules.
begin;
select plan(9);

create temp table ids on commit drop as
select
    prebuilds.publish_template_version(
        'acme', 'web', 'v1',
        '[{"name": "small", "parameters": {"cpu": 2}, "desired_instances": 2, "ttl_seconds": 3600,
           "scheduling_timezone": "UTC",
           "schedules": [{"cron": "* 9-18 * * *", "instances": 4}]}]'
    ) as version;

create temp table settings_of (step text, row jsonb) on commit drop;
create function pg_temp.pool() returns jsonb language sql as $$
    select jsonb_build_object(
        'desired_instances', p.desired_instances,
        'ttl_seconds', p.ttl_seconds,
        'scheduling_timezone', p.scheduling_timezone,
        'parameters', p.parameters,
        'schedules', (
            select coalesce(jsonb_agg(s.cron_expression || '=' || s.desired_instances
                order by s.created_at), '[]')
            from prebuilds.preset_schedules as s where s.preset_id = p.id
        )
    )
    from prebuilds.presets as p where p.name = 'small'
$$;

select lives_ok(
    $$select prebuilds.configure_preset(
        (select id from prebuilds.presets where name = 'small'), '{"desired_instances": 5}'
    )$$,
    'desired_instances alone'
);
select is(
    pg_temp.pool(),
    '{"desired_instances": 5, "ttl_seconds": 3600, "scheduling_timezone": "UTC",
      "parameters": {"cpu": 2}, "schedules": ["* 9-18 * * *=4"]}'::jsonb,
    'changes desired_instances and leaves the rest alone'
);
select lives_ok(
    $$select prebuilds.configure_preset(
        (select id from prebuilds.presets where name = 'small'), '{}'
    )$$,
    'an empty object'
);
select is(
    pg_temp.pool() ->> 'desired_instances', '5', 'changes nothing'
);
select lives_ok(
    $$select prebuilds.configure_preset(
        (select id from prebuilds.presets where name = 'small'),
        '{"schedules": [{"cron": "* 8-12 * * 1-5", "instances": 2},
                        {"cron": "* 13-17 * * 1-5", "instances": 3}],
          "scheduling_timezone": "Europe/Berlin"}'
    )$$,
    'schedules and a time zone'
);
select is(
    pg_temp.pool(),
    '{"desired_instances": 5, "ttl_seconds": 3600, "scheduling_timezone": "Europe/Berlin",
      "parameters": {"cpu": 2}, "schedules": ["* 8-12 * * 1-5=2", "* 13-17 * * 1-5=3"]}'::jsonb,
    'schedules given replace the old ones, in the order given'
);
select lives_ok(
    $$select prebuilds.configure_preset(
        (select id from prebuilds.presets where name = 'small'),
        '{"desired_instances": null, "ttl_seconds": null, "schedules": null,
          "scheduling_timezone": null}'
    )$$,
    'null for every key'
);
select is(
    pg_temp.pool(),
    '{"desired_instances": null, "ttl_seconds": null, "scheduling_timezone": "",
      "parameters": {"cpu": 2}, "schedules": []}'::jsonb,
    'null clears: no pool, no TTL, no time zone, no schedules'
);
select is(
    (select count(*)::int from prebuilds.preset_state_at('2025-06-02 10:00Z')), 0,
    'a preset without a pool is no longer considered'
);

select * from finish();
rollback;
