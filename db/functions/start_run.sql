-- Record the start of a reconciliation cycle (SPEC 4.6), called by the driver on a write
-- connection after it read the plan and before its first action. In one transaction:
--   1. the write fence: wait (exclusive lock on the fence key) until every write of an earlier
--      run that was already in flight has committed, so two runs never apply at the same time;
--   2. check that the plan transaction (its token p_lock_token) still holds the lock;
--   3. mark runs left `running` as abandoned: whoever ran them no longer holds the lock;
--   4. insert the run.

create function prebuilds.start_run(
    p_lock_key bigint,
    p_lock_pid int,
    p_lock_token int,
    p_hostname text,
    p_pid int,
    p_actions_planned int,
    p_actions_deferred int,
    p_plan_ms double precision
)
returns bigint
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_run_id bigint;
begin
    perform pg_catalog.pg_advisory_xact_lock(
        prebuilds.write_fence_key(p_lock_key, 1), prebuilds.write_fence_key(p_lock_key, 2)
    );
    if not prebuilds.reconcile_lock_held(p_lock_key, p_lock_token) then
        raise exception 'lost the reconcile lock before the run started (backend % is gone)',
            p_lock_pid
            using errcode = 'PBL01';
    end if;

    update prebuilds.reconciliation_runs as r
    set
        status = 'abandoned',
        finished_at = clock_timestamp(),
        actions_applied = c.applied,
        actions_skipped = c.skipped,
        actions_failed = c.failed,
        error = format(
            'abandoned: the driver (%s, pid %s) died or lost its connection mid-cycle',
            r.hostname, coalesce(r.pid::text, '?')
        )
    from (
        select
            r2.id,
            count(*) filter (where l.outcome = 'applied')::int as applied,
            count(*) filter (where l.outcome = 'skipped')::int as skipped,
            count(*) filter (where l.outcome = 'failed')::int as failed
        from prebuilds.reconciliation_runs as r2
        left join prebuilds.reconciliation_action_log as l on l.run_id = r2.id
        where r2.status = 'running'
        group by r2.id
    ) as c
    where r.id = c.id;

    insert into prebuilds.reconciliation_runs (
        hostname, pid, actions_planned, actions_deferred, plan_ms, lock_key, lock_pid, lock_token
    )
    values (
        p_hostname, p_pid, p_actions_planned, p_actions_deferred, p_plan_ms, p_lock_key,
        p_lock_pid, p_lock_token
    )
    returning id into v_run_id;
    return v_run_id;
end;
$$;

comment on function prebuilds.start_run(
    bigint, int, int, text, int, int, int, double precision
) is
'Starts a run of the plan transaction (token p_lock_token) that holds lock p_lock_key: '
'waits for earlier runs'' writes in flight, marks dead runs abandoned, returns the new run id. '
'Raises SQLSTATE PBL01 when the lock is no longer held.';

revoke execute on function prebuilds.start_run(
    bigint, int, int, text, int, int, int, double precision
) from public;
grant execute on function prebuilds.start_run(
    bigint, int, int, text, int, int, int, double precision
) to prebuilds_reconciler;
