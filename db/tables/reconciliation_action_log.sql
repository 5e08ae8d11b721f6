-- The outcome of every action of every recorded cycle.
-- Written by the driver in the same transaction as the action (or right after it, on failure).

create table prebuilds.reconciliation_action_log (
    run_id bigint not null references prebuilds.reconciliation_runs (id) on delete cascade,
    seq int not null,
    preset_id uuid not null,
    action text not null
    constraint reconciliation_action_log_action_check
    check (action in ('cancel', 'fail_job', 'delete', 'create', 'backoff')),
    workspace_id uuid,
    reason text not null,
    outcome text not null check (outcome in ('applied', 'skipped', 'failed', 'noted')),
    error text,
    finished_at timestamptz not null default clock_timestamp(),
    started_at timestamptz,
    primary key (run_id, seq)
);

comment on table prebuilds.reconciliation_action_log is
'What each planned action did. No foreign keys to presets or workspaces: the log outlives them.';
comment on column prebuilds.reconciliation_action_log.run_id is 'The cycle.';
comment on column prebuilds.reconciliation_action_log.seq is
'Position in the plan (reconciliation_actions.seq).';
comment on column prebuilds.reconciliation_action_log.preset_id is 'Preset the action was for.';
comment on column prebuilds.reconciliation_action_log.action is
'cancel, fail_job, delete, create or backoff.';
comment on column prebuilds.reconciliation_action_log.workspace_id is
'Workspace acted on; for an applied create, the workspace created.';
comment on column prebuilds.reconciliation_action_log.reason is 'Why the plan asked for it.';
comment on column prebuilds.reconciliation_action_log.outcome is
'applied, skipped (nothing to do any more), failed (error) or noted (backoff rows).';
comment on column prebuilds.reconciliation_action_log.error is 'Error message of a failed action.';
comment on column prebuilds.reconciliation_action_log.started_at is
'When the action passed its lock check and started (null for failures logged afterwards).';
comment on column prebuilds.reconciliation_action_log.finished_at is 'When the action finished.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.reconciliation_action_log
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
