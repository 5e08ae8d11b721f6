-- Pool sizes have a sane upper bound (issue 7): 10,000 per preset and per schedule, so a typo
-- cannot plan millions of creates.
begin;
select plan(4);

create temp table ids on commit drop as
select fixture.active_preset('web', 1) as preset;

select lives_ok(
    'update prebuilds.presets set desired_instances = 10000 where id = (select preset from ids)',
    '10,000 is allowed'
);
select throws_ok(
    'update prebuilds.presets set desired_instances = 10001 where id = (select preset from ids)',
    '23514', null, '10,001 is refused'
);
select throws_ok(
    'update prebuilds.presets set desired_instances = 2147483647 '
    || 'where id = (select preset from ids)',
    '23514', null, 'the largest int is refused'
);
select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 9-17 * * *', 20000 from ids$$,
    '23514', null, 'a schedule above 10,000 is refused'
);

select * from finish();
rollback;
