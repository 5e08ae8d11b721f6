-- publish_template_version (SPEC 7): bad input is rejected as a whole, with a message naming the
-- preset and the field, and nothing stored changes. Each case is one call; the first preset of
-- a list is valid where the bad one is not first, so a half-written version would show.
begin;
select plan(47);

create temp table v1 on commit drop as
select prebuilds.publish_template_version(
    'acme', 'web', 'v1', '[{"name": "small", "desired_instances": 1}]'
) as id;

create temp table stored_before on commit drop as
select md5(string_agg(t::text, ',' order by t::text)) as digest
from (
    select o.name from prebuilds.organizations as o
    union all
    select t.name || t.deleted || coalesce(t.active_version_id::text, '')
    from prebuilds.templates as t
    union all
    select v.name from prebuilds.template_versions as v
    union all
    select p::text from prebuilds.presets as p
    union all
    select s.cron_expression from prebuilds.preset_schedules as s
) as t (t);

create temp table cases (
    n serial,
    description text,
    organization text default 'acme',
    template text default 'web',
    version text default 'v2',
    presets text,
    activate bool default true,
    code text default '22023',
    message text
) on commit drop;

insert into cases (description, organization, presets, message) values
(
    'an empty organization name', '', '[]',
    'invalid organization name: must be 1 to 200 characters (got 0)'
),
('a null organization name', null, '[]', 'invalid organization name: must not be null'),
(
    'an organization name with a newline', E'ac\nme', '[]',
    'invalid organization name: must not contain control characters ("\n" at position 3)'
);
insert into cases (description, template, presets, message) values
(
    'a template name of 201 characters', repeat('t', 201), '[]',
    'invalid template name: must be 1 to 200 characters (got 201)'
);
insert into cases (description, version, presets, message) values
('an empty version name', '', '[]', 'invalid version name: must be 1 to 200 characters (got 0)');
insert into cases (description, presets, activate, message) values
('p_activate null', '[]', null, 'invalid p_activate: must be true or false, not null');
insert into cases (description, presets, message) values
(
    'presets not a list', '{"name": "a"}',
    'invalid presets: must be a JSON array of preset objects (got {"name": "a"})'
),
('presets null', null, 'invalid presets: must be a JSON array of preset objects (got null)'),
(
    'a preset that is not an object', '["small"]',
    'invalid preset #1: must be a JSON object with the keys name, parameters, desired_instances, '
    || 'ttl_seconds, scheduling_timezone, schedules, min_instances, max_instances (got "small")'
),
(
    'an unknown key', '[{"name": "a"}, {"name": "b", "desired": 2}]',
    'invalid preset ''b'': unknown key "desired" (expected name, parameters, desired_instances, '
    || 'ttl_seconds, scheduling_timezone, schedules, min_instances, max_instances)'
),
(
    'max_instances as a string', '[{"name": "a", "max_instances": "9"}]',
    'invalid preset ''a'': max_instances must be a whole number or null (got "9")'
),
(
    'a missing name', '[{"name": "a"}, {"desired_instances": 1}]',
    'invalid preset #2: name is required'
),
(
    'a name that is not a string',
    '[{"name": 7}]',
    'invalid preset #1: name must be a string (got 7)'
),
(
    'duplicate names', '[{"name": "a"}, {"name": "b"}, {"name": "a"}]',
    'invalid preset ''a'': name is used by more than one preset'
),
(
    'parameters not an object', '[{"name": "a", "parameters": ["x"]}]',
    'invalid preset ''a'': parameters must be a JSON object (got ["x"])'
),
(
    'parameters null', '[{"name": "a", "parameters": null}]',
    'invalid preset ''a'': parameters must be a JSON object (got null)'
),
(
    'desired_instances as a string', '[{"name": "a", "desired_instances": "3"}]',
    'invalid preset ''a'': desired_instances must be a whole number or null (got "3")'
),
(
    'desired_instances with a fraction', '[{"name": "a", "desired_instances": 1.5}]',
    'invalid preset ''a'': desired_instances must be a whole number or null (got 1.5)'
),
(
    'desired_instances true', '[{"name": "a", "desired_instances": true}]',
    'invalid preset ''a'': desired_instances must be a whole number or null (got true)'
),
(
    'desired_instances past int', '[{"name": "a", "desired_instances": 1e20}]',
    'invalid preset ''a'': desired_instances is out of range (got 100000000000000000000)'
),
(
    'ttl_seconds as a string', '[{"name": "a", "ttl_seconds": "60"}]',
    'invalid preset ''a'': ttl_seconds must be a whole number or null (got "60")'
),
(
    'scheduling_timezone as a number', '[{"name": "a", "scheduling_timezone": 1}]',
    'invalid preset ''a'': scheduling_timezone must be a string, an IANA time zone name (got 1)'
),
(
    'schedules not a list', '[{"name": "a", "schedules": {"cron": "* 9 * * *"}}]',
    'invalid preset ''a'': schedules must be a list of {"cron", "instances"} objects or null (got '
    || '{"cron": "* 9 * * *"})'
),
(
    'a schedule that is not an object', '[{"name": "a", "schedules": ["* 9 * * *"]}]',
    'invalid preset ''a'': schedule #1: must be an object {"cron", "instances"} (got "* 9 * * *")'
),
(
    'a schedule with an unknown key',
    '[{"name": "a", "schedules": [{"cron": "* 9 * * *", "instances": 1, "tz": "UTC"}]}]',
    'invalid preset ''a'': schedule #1: unknown key "tz" (expected cron, instances)'
),
(
    'a schedule without cron', '[{"name": "a", "schedules": [{"instances": 1}]}]',
    'invalid preset ''a'': schedule #1: cron must be a string such as "* 9-18 * * 1-5" (got '
    || 'nothing)'
),
(
    'a schedule without instances', '[{"name": "a", "schedules": [{"cron": "* 9 * * *"}]}]',
    'invalid preset ''a'': schedule #1: instances must be a whole number (got nothing)'
),
(
    'schedule instances above 10000',
    '[{"name": "a", "scheduling_timezone": "UTC", "schedules": [{"cron": "* 8 * * *", '
    || '"instances": 1}, {"cron": "* 9 * * *", "instances": 10001}]}]',
    'invalid preset ''a'': schedule #2: instances must be between 0 and 10000 (got 10001)'
);
insert into cases (description, presets, code, message) values
(
    'an empty name', '[{"name": ""}]', '23514',
    'invalid preset '''': name must be 1 to 200 characters (got 0)'
),
(
    'a name of 201 characters',
    jsonb_build_array(jsonb_build_object('name', repeat('n', 201)))::text,
    '23514',
    'invalid preset ''' || repeat('n', 60) || ''': name must be 1 to 200 characters (got 201)'
),
(
    'negative desired_instances',
    '[{"name": "a"}, {"name": "b", "desired_instances": -1}]',
    '23514',
    'invalid preset ''b'': desired_instances must be between 0 and 10000, or null for no pool '
    || '(got -1)'
),
(
    'desired_instances above 10000', '[{"name": "a", "desired_instances": 10001}]', '23514',
    'invalid preset ''a'': desired_instances must be between 0 and 10000, or null for no pool (got '
    || '10001)'
),
(
    'min_instances above max_instances',
    '[{"name": "a", "min_instances": 3, "max_instances": 2}]', '23514',
    'invalid preset ''a'': min_instances (3) must not exceed max_instances (2)'
),
(
    'a ttl of 30 seconds', '[{"name": "a", "ttl_seconds": 30}]', '23514',
    'invalid preset ''a'': ttl_seconds must be null or 0 (no TTL), or at least 60 (got 30)'
),
(
    'a negative ttl', '[{"name": "a", "ttl_seconds": -60}]', '23514',
    'invalid preset ''a'': ttl_seconds must be null or 0 (no TTL), or at least 60 (got -60)'
),
(
    'an abbreviation as time zone', '[{"name": "a", "scheduling_timezone": "CET"}]', '23514',
    'invalid preset ''a'': scheduling_timezone ''CET'' is not an IANA Area/Location time zone name '
    || '(abbreviations and POSIX rules change meaning; use e.g. Europe/Paris or UTC)'
),
(
    'an unknown time zone', '[{"name": "a", "scheduling_timezone": "Mars/Olympus_Mons"}]', '23514',
    'invalid preset ''a'': scheduling_timezone unknown time zone ''Mars/Olympus_Mons'''
),
(
    'a bad cron expression',
    '[{"name": "a", "scheduling_timezone": "UTC", "schedules": [{"cron": "* 25 * * *", '
    || '"instances": 1}]}]', '23514',
    'invalid preset ''a'': schedule #1: invalid schedule ''* 25 * * *'': hour field: ''25'' is '
    || 'outside 0-23'
),
(
    'a cron expression with a minute', '[{"name": "a", "scheduling_timezone": "UTC", '
    || '"schedules": [{"cron": "0 9 * * *", "instances": 1}]}]', '23514',
    'invalid preset ''a'': schedule #1: invalid schedule ''0 9 * * *'': minute field must be *, '
    || 'got ''0'''
),
(
    'overlapping schedules',
    '[{"name": "a", "scheduling_timezone": "UTC", "schedules": [{"cron": "* 9-18 * * *", '
    || '"instances": 1}, {"cron": "* 10 * * 1", "instances": 2}]}]', '23514',
    'invalid preset ''a'': schedule #2: invalid schedule ''* 10 * * 1'': it overlaps schedule '
    || '''* 9-18 * * *'' of the same preset'
);
insert into cases (description, presets, message) values
(
    'schedules without a time zone', '[{"name": "a", "schedules": [{"cron": "* 9 * * *", '
    || '"instances": 1}]}]',
    'invalid preset ''a'': schedules need a scheduling_timezone (an IANA name such as Europe/Paris)'
);
-- Re-publishing v1: checked like a first publish, then compared.
insert into cases (description, version, presets, code, message) values
(
    'v1 again with a bad value', 'v1', '[{"name": "small", "desired_instances": 10001}]', '23514',
    'invalid preset ''small'': desired_instances must be between 0 and 10000, or null for no pool '
    || '(got 10001)'
),
(
    'v1 again with other parameters',
    'v1',
    '[{"name": "small", "parameters": {"cpu": 4}}]',
    '22023',
    'version ''v1'' of template ''web'' in organization ''acme'' is already published with other '
    || 'presets: versions are immutable (publish a new version)'
),
(
    'v1 again with another preset', 'v1', '[{"name": "small"}, {"name": "large"}]', '22023',
    'version ''v1'' of template ''web'' in organization ''acme'' is already published with other '
    || 'presets: versions are immutable (publish a new version)'
),
(
    'v1 again without its preset', 'v1', '[]', '22023',
    'version ''v1'' of template ''web'' in organization ''acme'' is already published with other '
    || 'presets: versions are immutable (publish a new version)'
);

select
    throws_ok(
        format(
            'select prebuilds.publish_template_version(%L, %L, %L, %L::jsonb, %L)',
            c.organization, c.template, c.version, c.presets, c.activate
        ),
        c.code,
        c.message,
        c.description
    )
from cases as c
order by c.n;

select is(
    (
        select md5(string_agg(t::text, ',' order by t::text))
        from (
            select o.name from prebuilds.organizations as o
            union all
            select t.name || t.deleted || coalesce(t.active_version_id::text, '')
            from prebuilds.templates as t
            union all
            select v.name from prebuilds.template_versions as v
            union all
            select p::text from prebuilds.presets as p
            union all
            select s.cron_expression from prebuilds.preset_schedules as s
        ) as t (t)
    ),
    (select b.digest from stored_before as b),
    'nothing stored changed'
);
select is(
    (select count(*)::int from cases), 45, 'every case above ran (the plan counts them)'
);

select * from finish();
rollback;
