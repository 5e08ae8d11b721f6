-- configure_preset (SPEC 7): the same validation and messages as publish_template_version, for
-- the pool settings; name and parameters cannot change; an error changes nothing.
begin;
select plan(19);

create temp table ids on commit drop as
select
    prebuilds.publish_template_version(
        'acme', 'web', 'v1',
        '[{"name": "small", "desired_instances": 2, "ttl_seconds": 3600,
           "scheduling_timezone": "UTC",
           "schedules": [{"cron": "* 9-18 * * *", "instances": 4}]}]'
    ) as version;

create temp table stored_before on commit drop as
select
    (select p::text from prebuilds.presets as p) as preset,
    (select string_agg(s::text, ',') from prebuilds.preset_schedules as s) as schedules;

create temp table cases (n serial, description text, pool text, code text, message text)
on commit drop;
insert into cases (description, pool, code, message) values
(
    'not an object', '[]', '22023',
    'invalid preset ''small'': must be a JSON object with the keys desired_instances, ttl_seconds, '
    || 'scheduling_timezone, schedules, min_instances, max_instances (got [])'
),
(
    'null', null, '22023',
    'invalid preset ''small'': must be a JSON object with the keys desired_instances, ttl_seconds, '
    || 'scheduling_timezone, schedules, min_instances, max_instances (got null)'
),
(
    'a new name', '{"name": "big"}', '22023',
    'invalid preset ''small'': name cannot be changed: versions are immutable (publish a new '
    || 'version)'
),
(
    'new parameters', '{"parameters": {}}', '22023',
    'invalid preset ''small'': parameters cannot be changed: versions are immutable (publish a new '
    || 'version)'
),
(
    'an unknown key', '{"desired_instances": 1, "ttl": 60}', '22023',
    'invalid preset ''small'': unknown key "ttl" (expected desired_instances, ttl_seconds, '
    || 'scheduling_timezone, schedules, min_instances, max_instances)'
),
(
    'min_instances without max_instances', '{"min_instances": 1}', '23514',
    'invalid preset ''small'': min_instances (1) needs max_instances: demand sizing is on only '
    || 'with a maximum'
),
(
    'min_instances above max_instances', '{"min_instances": 5, "max_instances": 4}', '23514',
    'invalid preset ''small'': min_instances (5) must not exceed max_instances (4)'
),
(
    'max_instances above 10000', '{"max_instances": 10001}', '23514',
    'invalid preset ''small'': max_instances must be between 0 and 10000, or null for no demand '
    || 'sizing (got 10001)'
),
(
    'max_instances as a fraction', '{"max_instances": 2.5}', '22023',
    'invalid preset ''small'': max_instances must be a whole number or null (got 2.5)'
),
(
    'desired_instances as a string', '{"desired_instances": "1"}', '22023',
    'invalid preset ''small'': desired_instances must be a whole number or null (got "1")'
),
(
    'desired_instances above 10000', '{"desired_instances": 10001}', '23514',
    'invalid preset ''small'': desired_instances must be between 0 and 10000, or null for no pool '
    || '(got 10001)'
),
(
    'a ttl of 59 seconds', '{"ttl_seconds": 59}', '23514',
    'invalid preset ''small'': ttl_seconds must be null or 0 (no TTL), or at least 60 (got 59)'
),
(
    'a bad time zone', '{"scheduling_timezone": "europe/paris"}', '23514',
    'invalid preset ''small'': scheduling_timezone ''europe/paris'' is not an IANA time zone name '
    || '(did you mean ''Europe/Paris''?)'
),
(
    'no time zone while schedules remain', '{"scheduling_timezone": ""}', '22023',
    'invalid preset ''small'': schedules need a scheduling_timezone (an IANA name such as '
    || 'Europe/Paris)'
),
(
    'a bad cron expression', '{"schedules": [{"cron": "* 9-18 * *", "instances": 1}]}', '23514',
    'invalid preset ''small'': schedule #1: invalid schedule ''* 9-18 * *'': cron expression '
    || 'needs 5 fields (minute hour day-of-month month day-of-week), got 4 in ''* 9-18 * *'''
),
(
    'schedule instances negative', '{"schedules": [{"cron": "* 9 * * *", "instances": -1}]}',
    '22023', 'invalid preset ''small'': schedule #1: instances must be between 0 and 10000 (got -1)'
);

select
    throws_ok(
        format(
            'select prebuilds.configure_preset((select id from prebuilds.presets), %L::jsonb)',
            c.pool
        ),
        c.code,
        c.message,
        c.description
    )
from cases as c
order by c.n;

select throws_ok(
    $$select prebuilds.configure_preset('00000000-0000-0000-0000-000000000000', '{}')$$,
    'P0002',
    'no preset with id 00000000-0000-0000-0000-000000000000',
    'an unknown preset'
);
select results_eq(
    $$
    select
        (select p::text from prebuilds.presets as p),
        (select string_agg(s::text, ',') from prebuilds.preset_schedules as s)
    $$,
    $$select preset, schedules from stored_before$$,
    'nothing stored changed'
);
select is((select count(*)::int from cases), 16, 'every case above ran (the plan counts them)');

select * from finish();
rollback;
