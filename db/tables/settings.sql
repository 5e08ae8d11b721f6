-- Deployment-wide reconciler settings: exactly one row, created by the migration.
-- Written by operators (prebuilds pause/resume, or plain update); read by the plan.

create table prebuilds.settings (
    singleton bool primary key default true check (singleton),
    reconciliation_paused bool not null default false,
    backoff_interval interval not null default '1 minute'
    check (backoff_interval > interval '0'),
    backoff_lookback interval not null default '1 hour'
    check (backoff_lookback > interval '0'),
    failure_hard_limit int not null default 3 check (failure_hard_limit >= 0),
    max_pending_creates int check (max_pending_creates between 1 and 100000),
    run_retention interval not null default '30 days'
    check (run_retention >= interval '1 hour'),
    max_actions_per_cycle int not null default 1000
    check (max_actions_per_cycle between 1 and 100000),
    claim_stats_retention interval not null default '7 days'
    check (claim_stats_retention >= interval '1 hour'),
    demand_window interval not null default '1 hour'
    check (demand_window between interval '1 minute' and interval '7 days'),
    default_build_time interval not null default '10 minutes'
    check (default_build_time between interval '1 second' and interval '1 day'),
    delete_retry_interval interval not null default '1 minute'
    check (delete_retry_interval > interval '0'),
    delete_retry_limit int not null default 5 check (delete_retry_limit between 0 and 100),
    job_heartbeat_timeout interval not null default '5 minutes'
    check (job_heartbeat_timeout > interval '0'),
    job_pending_timeout interval not null default '30 minutes'
    check (job_pending_timeout > interval '0'),
    hard_limit_cooldown interval default '1 hour'
    check (hard_limit_cooldown > interval '0'),
    failed_prebuild_retention interval
    check (failed_prebuild_retention > interval '0')
);

comment on table prebuilds.settings is
'Reconciler settings; a single row, which cannot be deleted (update it instead).';
comment on column prebuilds.settings.singleton is 'Always true: keeps the table at one row.';
comment on column prebuilds.settings.reconciliation_paused is
'When true the reconciler plans and applies nothing.';
comment on column prebuilds.settings.backoff_interval is
'Each recent failure delays the next create of its preset by this much (linear backoff).';
comment on column prebuilds.settings.backoff_lookback is
'Failures older than this no longer count for backoff.';
comment on column prebuilds.settings.failure_hard_limit is
'A preset whose this-many most recent builds all failed stops creating until resumed; 0 disables.';
comment on column prebuilds.settings.max_pending_creates is
'Cap on prebuild start jobs pending or running in the whole deployment; null means no cap.';
comment on column prebuilds.settings.run_retention is
'Cycles (and their action rows) older than this are pruned by the driver.';
comment on column prebuilds.settings.max_actions_per_cycle is
'A cycle applies at most this many actions (cancels, deletes, creates); the rest wait for the '
'next cycle, so no plan holds the lock for long.';
comment on column prebuilds.settings.claim_stats_retention is
'claim_stats buckets older than this are pruned by the driver.';
comment on column prebuilds.settings.demand_window is
'Demand sizing (SPEC 6.3): the claims (hits and misses) of this window before now estimate the '
'claim rate; 1 minute to 7 days.';
comment on column prebuilds.settings.default_build_time is
'Demand sizing (SPEC 6.3): the build time assumed for a preset with no successful prebuild in the '
'last 24 hours; 1 second to 1 day.';
comment on column prebuilds.settings.delete_retry_interval is
'Base of the exponential backoff between attempts to delete a prebuild whose delete failed: '
'retry n waits delete_retry_interval * 2^(n-1) after the failure, at most one hour.';
comment on column prebuilds.settings.delete_retry_limit is
'Retries of a failed delete; a prebuild whose delete failed more often than this is quarantined '
'(no more retries, counted in preset_state.quarantined). 0 = never retry.';
comment on column prebuilds.settings.job_heartbeat_timeout is
'A running prebuild job whose last heartbeat (provisioner_jobs.updated_at) is older than this is '
'hung: the reconciler fails it.';
comment on column prebuilds.settings.job_pending_timeout is
'A prebuild job that no provisioner picked up for this long is hung: the reconciler fails it.';
comment on column prebuilds.settings.hard_limit_cooldown is
'A hard-limited preset gets one probe build this long after its last failure; null = only '
'resume_preset clears a hard limit.';
comment on column prebuilds.settings.failed_prebuild_retention is
'Failed and stopped prebuilds whose latest build finished longer ago than this are deleted; '
'null = kept for investigation.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.settings
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
