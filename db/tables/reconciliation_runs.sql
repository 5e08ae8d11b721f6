-- One row per reconciliation cycle that held the lock and applied its plan.
-- Written by the driver through its write pool; read by operators in psql.

create table prebuilds.reconciliation_runs (
    id bigint generated always as identity primary key,
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    status text not null default 'running'
    check (status in ('running', 'succeeded', 'failed', 'paused', 'interrupted', 'abandoned')),
    hostname text not null default '',
    pid int,
    actions_planned int not null default 0 check (actions_planned >= 0),
    actions_applied int not null default 0 check (actions_applied >= 0),
    actions_skipped int not null default 0 check (actions_skipped >= 0),
    actions_failed int not null default 0 check (actions_failed >= 0),
    plan_ms double precision,
    error text,
    lock_key bigint,
    lock_pid int,
    lock_token int,
    actions_deferred int not null default 0 check (actions_deferred >= 0)
);

create index reconciliation_runs_started_at_idx on prebuilds.reconciliation_runs (started_at);

comment on table prebuilds.reconciliation_runs is
'Reconciliation cycles, one row each. A run whose driver died is marked abandoned by the next '
'cycle that takes the lock.';
comment on column prebuilds.reconciliation_runs.id is 'Primary key, increasing.';
comment on column prebuilds.reconciliation_runs.started_at is 'When the cycle started applying.';
comment on column prebuilds.reconciliation_runs.finished_at is 'When the cycle finished.';
comment on column prebuilds.reconciliation_runs.status is
'running, succeeded (every action applied or skipped), failed (an action or the cycle failed, '
'or it lost the lock), paused (nothing planned: reconciliation is paused), interrupted (stopped '
'by a signal after the action in flight) or abandoned (its driver died; found by a later '
'cycle, with the counts of its action log).';
comment on column prebuilds.reconciliation_runs.hostname is 'Host the driver ran on.';
comment on column prebuilds.reconciliation_runs.pid is 'Process id of the driver.';
comment on column prebuilds.reconciliation_runs.actions_planned is
'Rows read from reconciliation_actions, backoff rows included.';
comment on column prebuilds.reconciliation_runs.actions_applied is
'Actions whose function did the work.';
comment on column prebuilds.reconciliation_runs.actions_skipped is
'Actions whose function found nothing to do any more (null or false), e.g. a prebuild claimed '
'meanwhile.';
comment on column prebuilds.reconciliation_runs.actions_failed is 'Actions that raised an error.';
comment on column prebuilds.reconciliation_runs.plan_ms is
'Milliseconds spent taking the lock and reading the plan.';
comment on column prebuilds.reconciliation_runs.error is 'Why the cycle failed, when it did.';
comment on column prebuilds.reconciliation_runs.lock_key is
'The advisory lock this run held (driver/locks.py RECONCILE).';
comment on column prebuilds.reconciliation_runs.lock_pid is
'Backend pid of the connection that held the lock (for operators).';
comment on column prebuilds.reconciliation_runs.lock_token is
'Random token the lock transaction holds locked (see take_reconcile_lock); every action checks '
'it is still held.';
comment on column prebuilds.reconciliation_runs.actions_deferred is
'Actions left for later cycles by settings.max_actions_per_cycle.';
comment on index prebuilds.reconciliation_runs_started_at_idx is 'Recent cycles first; pruning.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.reconciliation_runs
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
