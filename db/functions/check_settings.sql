-- Trigger function: the settings row is checked when written, with a message that names the
-- setting and its rule (the CHECK constraints stay as the backstop). Called by the trigger
-- settings_check.

create function prebuilds.check_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_problem text;
begin
    if new.backoff_interval <= interval '0' then
        v_problem := format('backoff_interval must be positive (got %s)', new.backoff_interval);
    elsif new.backoff_lookback <= interval '0' then
        v_problem := format('backoff_lookback must be positive (got %s)', new.backoff_lookback);
    elsif new.failure_hard_limit < 0 then
        v_problem := format(
            'failure_hard_limit must be 0 (disabled) or more (got %s)', new.failure_hard_limit
        );
    elsif new.max_pending_creates not between 1 and 100000 then
        v_problem := format(
            'max_pending_creates must be between 1 and 100000, or null for no cap (got %s)',
            new.max_pending_creates
        );
    elsif new.run_retention < interval '1 hour' then
        v_problem := format('run_retention must be at least 1 hour (got %s)', new.run_retention);
    elsif new.max_actions_per_cycle not between 1 and 100000 then
        v_problem := format(
            'max_actions_per_cycle must be between 1 and 100000 (got %s)',
            new.max_actions_per_cycle
        );
    elsif new.claim_stats_retention < interval '1 hour' then
        v_problem := format(
            'claim_stats_retention must be at least 1 hour (got %s)', new.claim_stats_retention
        );
    elsif new.demand_window not between interval '1 minute' and interval '7 days' then
        v_problem := format(
            'demand_window must be between 1 minute and 7 days (got %s)', new.demand_window
        );
    elsif new.default_build_time not between interval '1 second' and interval '1 day' then
        v_problem := format(
            'default_build_time must be between 1 second and 1 day (got %s)',
            new.default_build_time
        );
    elsif new.delete_retry_interval <= interval '0' then
        v_problem := format(
            'delete_retry_interval must be positive (got %s)', new.delete_retry_interval
        );
    elsif new.delete_retry_limit not between 0 and 100 then
        v_problem := format(
            'delete_retry_limit must be between 0 (never retry) and 100 (got %s)',
            new.delete_retry_limit
        );
    elsif new.job_heartbeat_timeout <= interval '0' then
        v_problem := format(
            'job_heartbeat_timeout must be positive (got %s)', new.job_heartbeat_timeout
        );
    elsif new.job_pending_timeout <= interval '0' then
        v_problem := format(
            'job_pending_timeout must be positive (got %s)', new.job_pending_timeout
        );
    elsif new.hard_limit_cooldown <= interval '0' then
        v_problem := format(
            'hard_limit_cooldown must be positive, or null for no probe (got %s)',
            new.hard_limit_cooldown
        );
    elsif new.failed_prebuild_retention <= interval '0' then
        v_problem := format(
            'failed_prebuild_retention must be positive, or null to keep failed and stopped '
            'prebuilds (got %s)',
            new.failed_prebuild_retention
        );
    end if;
    if v_problem is not null then
        raise exception 'invalid setting: %', v_problem
            using errcode = 'check_violation', table = 'settings', schema = 'prebuilds';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_settings() is
'Trigger: rejects a settings value that breaks its rule, with a message naming the setting.';
