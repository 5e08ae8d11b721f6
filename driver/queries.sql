-- Every statement the driver sends, by name (`-- name: x` starts a query; driver/queries.py
-- loads them). Parameters are psycopg named placeholders.

-- name: take_lock
-- Transaction-scoped: released when the read-only plan transaction ends, after the writes.
select pg_try_advisory_xact_lock(%(key)s) as acquired;

-- name: read_plan
-- The cycle's only read: schema revision, pause flag and every planned action, one statement.
-- One row even when the plan is empty (then the action columns are null).
select
    s.reconciliation_paused as paused,
    (select v.version_num from alembic_version as v) as schema_revision,
    a.seq,
    a.preset_id,
    a.action,
    a.workspace_id,
    a.reason,
    a.organization_name,
    a.template_name,
    a.template_version_name,
    a.preset_name,
    a.backoff_until
from prebuilds.settings as s
left join prebuilds.reconciliation_actions as a on true
order by a.seq;

-- name: schema_revision
-- Only for commands that do not read a plan (the demo's setup); cycles use read_plan.
select version_num as schema_revision from alembic_version;

-- name: start_run
insert into prebuilds.reconciliation_runs (hostname, pid, actions_planned, plan_ms)
values (%(hostname)s, %(pid)s, %(actions_planned)s, %(plan_ms)s)
returning id;

-- name: apply_cancel
-- Each apply statement is one transaction (autocommit): the action and its log row together.
insert into prebuilds.reconciliation_action_log (
    run_id, seq, preset_id, action, workspace_id, reason, outcome
)
select
    %(run_id)s, %(seq)s, %(preset_id)s, 'cancel', %(workspace_id)s, %(reason)s,
    case when prebuilds.cancel_prebuild(%(workspace_id)s) then 'applied' else 'skipped' end
returning outcome, workspace_id;

-- name: apply_delete
insert into prebuilds.reconciliation_action_log (
    run_id, seq, preset_id, action, workspace_id, reason, outcome
)
select
    %(run_id)s, %(seq)s, %(preset_id)s, 'delete', %(workspace_id)s, %(reason)s,
    case when prebuilds.delete_prebuild(%(workspace_id)s) then 'applied' else 'skipped' end
returning outcome, workspace_id;

-- name: apply_create
insert into prebuilds.reconciliation_action_log (
    run_id, seq, preset_id, action, workspace_id, reason, outcome
)
select
    %(run_id)s, %(seq)s, %(preset_id)s, 'create', created.workspace_id, %(reason)s,
    case when created.workspace_id is null then 'skipped' else 'applied' end
from (select prebuilds.create_prebuild(%(preset_id)s) as workspace_id) as created
returning outcome, workspace_id;

-- name: log_action
-- Failed actions (after their transaction rolled back) and informational backoff rows.
insert into prebuilds.reconciliation_action_log (
    run_id, seq, preset_id, action, workspace_id, reason, outcome, error
)
values (
    %(run_id)s, %(seq)s, %(preset_id)s, %(action)s, %(workspace_id)s, %(reason)s, %(outcome)s,
    %(error)s
);

-- name: finish_run
update prebuilds.reconciliation_runs
set
    finished_at = clock_timestamp(),
    status = %(status)s,
    actions_applied = %(applied)s,
    actions_skipped = %(skipped)s,
    actions_failed = %(failed)s,
    error = %(error)s
where id = %(run_id)s;

-- name: acquire_job
-- Simulated provisioner: the provisioner-side functions only.
select job_id, workspace_id, build_number, transition, preset_id, initiator_id
from prebuilds.acquire_job(%(worker_id)s);

-- name: complete_job
select prebuilds.complete_job(%(job_id)s, %(error)s) as completed;

-- name: report_agent_lifecycle
select prebuilds.report_agent_lifecycle(%(job_id)s, %(agent_name)s, %(state)s) as agent_id;

-- name: preset_state
select
    preset_id,
    organization_name,
    template_name,
    template_version_name,
    preset_name,
    is_active,
    desired,
    actual,
    eligible,
    expired,
    extraneous,
    starting,
    stopping,
    deleting,
    pending_cancelable,
    failures,
    backoff_until,
    hard_limited,
    blocked_reason,
    creates_planned
from prebuilds.preset_state;
