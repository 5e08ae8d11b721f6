-- A value that breaks a rule gets a message naming the column and the rule, not a dump of the
-- row (issue 7), and nothing stored changes.
begin;
select plan(6);

create temp table ids on commit drop as
select fixture.active_preset('web', 2) as preset;

select throws_ok(
    'update prebuilds.presets set desired_instances = 2000000',
    '23514',
    'invalid preset ''default'': desired_instances must be between 0 and 10000, or null for no '
    || 'pool (got 2000000)',
    'desired_instances out of range names the column, the rule and the value'
);
select throws_ok(
    'update prebuilds.presets set ttl_seconds = 30',
    '23514',
    'invalid preset ''default'': ttl_seconds must be null or 0 (no TTL), or at least 60 (got 30)',
    'a TTL under a minute names the rule'
);
select throws_ok(
    $$update prebuilds.presets set name = repeat('x', 201)$$,
    '23514',
    null,
    'an absurdly long preset name is refused'
);
select throws_ok(
    $$update prebuilds.settings set backoff_interval = '-1 minute'$$,
    '23514',
    'invalid setting: backoff_interval must be positive (got -00:01:00)',
    'a negative backoff_interval names the setting'
);
select throws_ok(
    'update prebuilds.settings set max_actions_per_cycle = 0',
    '23514',
    'invalid setting: max_actions_per_cycle must be between 1 and 100000 (got 0)',
    'max_actions_per_cycle 0 names the setting'
);
select results_eq(
    $$select desired_instances, ttl_seconds from prebuilds.presets$$,
    $$values (2, null::int)$$,
    'nothing stored changed'
);

select * from finish();
rollback;
