-- The settings of SPEC 5: their defaults, and a bad value rejected with a message naming the
-- setting and its rule (the settings row is unchanged).
begin;
select plan(9);

select results_eq(
    $$
    select delete_retry_interval, delete_retry_limit, job_heartbeat_timeout, job_pending_timeout,
           hard_limit_cooldown, failed_prebuild_retention
    from prebuilds.settings
    $$,
    $$
    values (
        interval '1 minute', 5, interval '5 minutes', interval '30 minutes', interval '1 hour',
        null::interval
    )
    $$,
    'the defaults of SPEC 5'
);

select throws_ok(
    $$update prebuilds.settings set delete_retry_interval = '0 seconds'$$,
    '23514',
    'invalid setting: delete_retry_interval must be positive (got 00:00:00)',
    'delete_retry_interval must be positive'
);
select throws_ok(
    $$update prebuilds.settings set delete_retry_limit = -1$$,
    '23514',
    'invalid setting: delete_retry_limit must be between 0 (never retry) and 100 (got -1)',
    'delete_retry_limit must not be negative'
);
select throws_ok(
    $$update prebuilds.settings set delete_retry_limit = 101$$,
    '23514',
    'invalid setting: delete_retry_limit must be between 0 (never retry) and 100 (got 101)',
    'delete_retry_limit has a ceiling'
);
select throws_ok(
    $$update prebuilds.settings set job_heartbeat_timeout = '-5 minutes'$$,
    '23514',
    'invalid setting: job_heartbeat_timeout must be positive (got -00:05:00)',
    'job_heartbeat_timeout must be positive'
);
select throws_ok(
    $$update prebuilds.settings set job_pending_timeout = '0'$$,
    '23514',
    'invalid setting: job_pending_timeout must be positive (got 00:00:00)',
    'job_pending_timeout must be positive'
);
select throws_ok(
    $$update prebuilds.settings set hard_limit_cooldown = '0'$$,
    '23514',
    'invalid setting: hard_limit_cooldown must be positive, or null for no probe (got 00:00:00)',
    'hard_limit_cooldown must be positive or null'
);
select throws_ok(
    $$update prebuilds.settings set failed_prebuild_retention = '-1 day'$$,
    '23514',
    'invalid setting: failed_prebuild_retention must be positive, or null to keep failed and '
    || 'stopped prebuilds (got -1 days)',
    'failed_prebuild_retention must be positive or null'
);

update prebuilds.settings set hard_limit_cooldown = null, failed_prebuild_retention = '7 days';
select results_eq(
    $$select hard_limit_cooldown, failed_prebuild_retention from prebuilds.settings$$,
    $$values (null::interval, interval '7 days')$$,
    'null cooldown and a retention are accepted'
);

select * from finish();
rollback;
