-- Every statement the driver sends, by name (`-- name: x` starts a query; driver/queries.py
-- loads them). Parameters are psycopg named placeholders.

-- name: take_lock
-- The plan transaction's first statement. Its limits are transaction-local (set_config(…, true)),
-- so they hold behind PgBouncer in transaction mode too: the plan read's statement_timeout, the
-- lock_timeout, and an idle_in_transaction_session_timeout that makes the server end the lock
-- transaction of a driver that froze (a keepalive statement runs every second while applying).
-- The lock is transaction-scoped: released when this read-only transaction ends, after the writes.
select
    l.acquired,
    l.holder_pid,
    l.holder_token,
    set_config('statement_timeout', %(statement_timeout_ms)s || 'ms', true) as statement_timeout,
    set_config('lock_timeout', %(lock_timeout_ms)s || 'ms', true) as lock_timeout,
    set_config(
        'idle_in_transaction_session_timeout', %(idle_timeout_ms)s || 'ms', true
    ) as idle_timeout
from prebuilds.take_reconcile_lock(%(key)s) as l;

-- name: keepalive
-- Sent on the plan connection every second while the writers apply: keeps the lock transaction
-- from looking idle and notices at once when the connection (and so the lock) is gone.
select 1 as alive;

-- name: read_plan
-- The cycle's only read: schema revision, settings and every planned action, one statement.
-- One row even when the plan is empty (then the action columns are null). Actions past
-- settings.max_actions_per_cycle are counted, not read: later cycles apply them.
-- Read by position (driver/model.py: Plan.from_rows): the four header columns, then
-- PlannedAction's fields in their order.
select
    p.paused,
    p.schema_revision,
    p.max_actions_per_cycle,
    p.deferred_count,
    p.seq,
    p.preset_id,
    p.action,
    p.workspace_id,
    p.reason,
    p.organization_name,
    p.template_name,
    p.template_version_name,
    p.preset_name,
    p.backoff_until
from (
    select
        s.reconciliation_paused as paused,
        (select v.version_num from alembic_version as v) as schema_revision,
        s.max_actions_per_cycle,
        (count(*) filter (where a.deferred) over ())::int as deferred_count,
        a.seq,
        a.preset_id,
        a.action,
        a.workspace_id,
        a.reason,
        a.organization_name,
        a.template_name,
        a.template_version_name,
        a.preset_name,
        a.backoff_until,
        a.deferred
    from prebuilds.settings as s
    left join prebuilds.reconciliation_actions as a on true
) as p
where not coalesce(p.deferred, false)
order by p.seq;

-- name: next_change
-- `prebuilds run`, after a cycle, on the idle plan connection: how long until the plan changes by
-- the clock alone (SPEC 6.1), measured on the server's clock; null when nothing is due.
select extract(epoch from prebuilds.next_change_at(now()) - now())::float8 as seconds;

-- name: wait_for_claims
-- `prebuilds run`, before each cycle's plan transaction, in a transaction of its own on the plan
-- connection: the claims in flight end first (see prebuilds.notify_claim).
select prebuilds.wait_for_claims(%(timeout_ms)s) as waited;

-- name: listen
-- `prebuilds run`'s own listen connection (driver/wake.py): the loop's wake-up call, and the
-- channel of its self-test.
listen prebuilds_reconcile;
listen prebuilds_reconcile_probe;

-- name: unlisten
-- Before closing a listen connection whose self-test failed (a pooler may hand its server
-- connection on).
unlisten *;

-- name: probe_notify
-- The listen self-test, sent on the plan connection: it must arrive on the listen connection.
select pg_notify('prebuilds_reconcile_probe', %(token)s) as sent;

-- name: schema_revision
-- Only for commands that do not read a plan (the demo's setup); cycles use read_plan.
select version_num as schema_revision from alembic_version;

-- name: local_limits
-- The first statement of an operator command's or a dry run's transaction: its timeouts, local
-- to the transaction, so they never stay on a server connection that a pooler hands on.
select
    set_config('statement_timeout', %(statement_timeout_ms)s || 'ms', true) as statement_timeout,
    set_config('lock_timeout', %(lock_timeout_ms)s || 'ms', true) as lock_timeout;

-- name: start_run
-- Two statements in one message (client-side binding, simple protocol), which PostgreSQL runs
-- as one implicit transaction: the timeouts are local to it, and statement_timeout is re-armed
-- for the second statement. start_run waits for earlier runs' writes in flight, checks the lock
-- and marks dead runs abandoned.
select
    set_config('statement_timeout', %(statement_timeout_ms)s || 'ms', true) as statement_timeout,
    set_config('lock_timeout', %(lock_timeout_ms)s || 'ms', true) as lock_timeout;
select prebuilds.start_run(
    %(lock_key)s, %(lock_pid)s, %(lock_token)s, %(hostname)s, %(pid)s, %(actions_planned)s,
    %(actions_deferred)s, %(plan_ms)s
) as run_id;

-- name: apply_action
-- One action and its log row in one transaction, refused (SQLSTATE PBL01) once the run's plan
-- transaction no longer holds the lock; the workspace acted on when applied, null when skipped.
-- The depth-1 path (driver/cycle.py SerialWrites): sent like start_run, its timeouts first in
-- the same implicit transaction, so the server arms statement_timeout for the call.
select
    set_config('statement_timeout', %(statement_timeout_ms)s || 'ms', true) as statement_timeout,
    set_config('lock_timeout', %(lock_timeout_ms)s || 'ms', true) as lock_timeout;
select prebuilds.apply_action(
    %(run_id)s, %(seq)s, %(action)s, %(preset_id)s, %(workspace_id)s, %(reason)s,
    %(lock_timeout_ms)s
) as workspace_id;

-- name: apply_action_call
-- apply_action as the one statement of its transaction, for the pipelined writers
-- (driver/cycle.py PipelinedWrites): the function sets lock_timeout itself before its first lock;
-- the statement timeout is the writer's deadline, which cancels the call from the client.
select prebuilds.apply_action(
    %(run_id)s, %(seq)s, %(action)s, %(preset_id)s, %(workspace_id)s, %(reason)s,
    %(lock_timeout_ms)s
) as workspace_id;

-- name: logged_outcomes
-- After a write connection broke mid-action: did those actions commit? Their log row says.
select l.seq, l.outcome, l.workspace_id
from prebuilds.reconciliation_action_log as l
where l.run_id = %(run_id)s and l.seq = any(%(seqs)s);

-- name: log_actions
-- Failed actions (after their transaction rolled back) and informational backoff rows, one JSON
-- array per call; a row already logged is kept.
select prebuilds.log_actions(%(run_id)s, %(rows)s) as logged;

-- name: finish_run
select prebuilds.finish_run(%(run_id)s, %(status)s, %(failed)s, %(error)s) as finished;

-- name: acquire_job
-- Simulated provisioner: the provisioner-side functions only.
select job_id, workspace_id, build_number, transition, preset_id, initiator_id
from prebuilds.acquire_job(%(worker_id)s);

-- name: complete_job
select prebuilds.complete_job(%(job_id)s, %(error)s) as completed;

-- name: report_agent_lifecycle
select prebuilds.report_agent_lifecycle(%(job_id)s, %(agent_name)s, %(state)s) as agent_id;

-- name: provision_acquire_job
-- `prebuilds provision`: the next job, with what to build (driver/provision.py Job).
select
    job_id,
    workspace_id,
    build_number,
    transition,
    preset_id,
    initiator_id,
    workspace_name,
    owner_name,
    organization_name,
    template_name,
    template_version_name,
    preset_name,
    parameters
from prebuilds.acquire_job(%(worker_id)s);

-- name: heartbeat_job
-- `prebuilds provision`, every --heartbeat while a job's command runs: false once the job is
-- not ours to run any more (canceled, or failed as hung).
select prebuilds.heartbeat_job(%(job_id)s) as alive;

-- name: prune_runs
-- Retention: the oldest expired cycles (settings.run_retention) and claim counts
-- (settings.claim_stats_retention), a bounded batch of each per cycle.
select
    prebuilds.prune_runs() as pruned,
    prebuilds.prune_claim_stats() as pruned_claim_stats;

-- name: metrics_presets
select
    organization_name,
    template_name,
    preset_name,
    desired,
    actual as running,
    eligible,
    expired,
    starting,
    retrying_deletes,
    quarantined,
    blocked_reason
from prebuilds.preset_state;

-- name: metrics_counters
-- Lifetime counters, and the last cycle that finished without failures (any driver, any host:
-- a cron run that found the lock busy reports the holder's success, not 0).
select
    coalesce(sum(c.created), 0)::bigint as created,
    coalesce(sum(c.failed), 0)::bigint as failed,
    coalesce(sum(c.claimed), 0)::bigint as claimed,
    coalesce(sum(c.hung_failed), 0)::bigint as hung_failed,
    coalesce(sum(c.delete_retried), 0)::bigint as delete_retried,
    (
        select extract(epoch from max(r.finished_at))::float8
        from prebuilds.reconciliation_runs as r
        where r.status in ('succeeded', 'paused')
    ) as last_success
from prebuilds.preset_counters as c;

-- name: metrics_claims
-- Lifetime claims per preset and result (hit, miss), summed over shards, for every preset ever
-- claimed from; by name, as the pool gauges.
select
    o.name as organization_name,
    t.name as template_name,
    p.name as preset_name,
    sum(c.claimed)::bigint as hits,
    sum(c.missed)::bigint as misses
from prebuilds.preset_counters as c
inner join prebuilds.presets as p on c.preset_id = p.id
inner join prebuilds.template_versions as v on p.template_version_id = v.id
inner join prebuilds.templates as t on v.template_id = t.id
inner join prebuilds.organizations as o on t.organization_id = o.id
group by o.name, t.name, p.name
having sum(c.claimed) + sum(c.missed) > 0;

-- name: blocked_presets
-- Pools whose creates are held back, for `plan` and for the summary of a cycle with no work.
select
    organization_name || '/' || template_name || '@' || template_version_name || '/'
    || preset_name as preset,
    blocked_reason,
    backoff_until,
    failures
from prebuilds.preset_state
where blocked_reason in ('hard_limited', 'backoff', 'capped')
order by blocked_reason, organization_name, template_name, template_version_name, preset_name;

-- name: status
-- `prebuilds status`: preset_state, optionally narrowed by names.
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
    creates_planned,
    schedule_note,
    claims_last_hour,
    misses_last_hour,
    demand,
    desired_reason,
    last_error,
    retrying_deletes,
    quarantined,
    -- Percent of the last hour's claims that got a prebuild; null without claims.
    round(
        100.0 * claims_last_hour / nullif(claims_last_hour + misses_last_hour, 0), 1
    )::float8 as hit_rate_last_hour
from prebuilds.preset_state
where
    (%(organization)s::text is null or organization_name = %(organization)s)
    and (%(template)s::text is null or template_name = %(template)s)
    and (%(preset)s::text is null or preset_name = %(preset)s);

-- name: set_paused
-- No row when the settings row is missing.
select p.paused as reconciliation_paused
from prebuilds.set_reconciliation_paused(%(paused)s) as p (paused)
where p.paused is not null;

-- name: find_active_presets
-- Presets of a template's active version, by name, for the operator commands.
select
    p.id as preset_id,
    o.name as organization_name,
    t.name as template_name,
    v.name as template_version_name,
    p.name as preset_name
from prebuilds.templates as t
inner join prebuilds.organizations as o on t.organization_id = o.id
inner join prebuilds.template_versions as v on t.active_version_id = v.id
inner join prebuilds.presets as p on v.id = p.template_version_id
where
    not t.deleted
    and t.name = %(template)s
    and (%(organization)s::text is null or o.name = %(organization)s)
    and (%(preset)s::text is null or p.name = %(preset)s)
order by o.name, p.name;

-- name: resume_preset
select prebuilds.resume_preset(%(preset_id)s) as resumed;

-- name: invalidate_presets
-- Prebuilds created before now expire: the next cycle deletes and replaces them.
select prebuilds.invalidate_presets(
    %(organization)s, %(template)s, %(preset)s
) as invalidated;

-- name: history_runs
select
    id,
    started_at,
    finished_at,
    status,
    actions_planned,
    actions_applied,
    actions_skipped,
    actions_failed,
    plan_ms,
    error
from prebuilds.reconciliation_runs
order by id desc
limit %(limit)s;

-- name: history_failures
-- Presets by name (organization/template@version/preset); the log outlives presets, whose id is
-- then shown instead.
select
    l.run_id,
    l.seq,
    l.action,
    l.preset_id,
    coalesce(
        o.name || '/' || t.name || '@' || v.name || '/' || p.name, l.preset_id::text
    ) as preset,
    l.workspace_id,
    l.reason,
    l.error,
    l.finished_at
from prebuilds.reconciliation_action_log as l
left join prebuilds.presets as p on l.preset_id = p.id
left join prebuilds.template_versions as v on p.template_version_id = v.id
left join prebuilds.templates as t on v.template_id = t.id
left join prebuilds.organizations as o on t.organization_id = o.id
where l.outcome = 'failed' and l.run_id >= %(since_run)s
order by l.run_id desc, l.seq
limit %(limit)s;
