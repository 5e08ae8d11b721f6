-- Apply one planned action of a run and log its outcome, in one transaction (SPEC 4.6). Called
-- by the driver's write connections, one call per action, as the only statement of its
-- transaction. The action is applied only while the run's plan transaction still holds the
-- reconcile lock (checked after taking the write fence shared, so a later run's start_run waits
-- for this transaction): a driver whose plan connection died stops at its next action, whatever
-- its write connections can still reach.
--
-- Shaped for the apply's throughput (issue 9; README "Applying actions"): the lock wait bound
-- arrives as an argument and is set local here, before the first lock is asked for, so the
-- driver sends no separate statement for it; the run's row, the fence and the licence are one
-- statement (the fence first: a CASE evaluates its condition before its result); it returns one
-- value, not a row set.

create function prebuilds.apply_action(
    p_run_id bigint,
    p_seq int,
    p_action text,
    p_preset_id uuid,
    p_workspace_id uuid,
    p_reason text,
    p_lock_timeout_ms int
)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_licensed bool;
    v_lock_pid int;
    v_started timestamptz;
    v_workspace_id uuid;
    v_applied bool;
    v_setting text;
begin
    if p_lock_timeout_ms is not null then
        -- An assignment, not PERFORM: evaluated in place, no query of its own.
        v_setting := pg_catalog.set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    end if;
    select
        r.lock_pid,
        case
            when pg_catalog.pg_advisory_xact_lock_shared(
                prebuilds.write_fence_key(r.lock_key, 1),
                prebuilds.write_fence_key(r.lock_key, 2)
            ) is not null
                then prebuilds.reconcile_lock_held(r.lock_key, r.lock_token)
        end
    into v_lock_pid, v_licensed
    from prebuilds.reconciliation_runs as r
    where r.id = p_run_id;
    if not found then
        raise exception 'no reconciliation run %', p_run_id using errcode = 'PBL01';
    end if;
    -- Null (a run row without its lock key or token) is no licence either.
    if v_licensed is not true then
        raise exception 'run % lost the reconcile lock (its plan connection, backend %, is gone)',
            p_run_id, v_lock_pid
            using errcode = 'PBL01';
    end if;
    v_started := clock_timestamp();

    case p_action
        when 'create' then
            v_workspace_id := prebuilds.create_prebuild(p_preset_id);
            v_applied := v_workspace_id is not null;
        when 'delete' then
            v_applied := prebuilds.delete_prebuild(p_workspace_id);
        when 'cancel' then
            v_applied := prebuilds.cancel_prebuild(p_workspace_id);
        when 'fail_job' then
            v_applied := prebuilds.fail_job(p_workspace_id);
        else
            raise exception 'unknown action %', quote_literal(p_action)
                using errcode = 'invalid_parameter_value';
    end case;
    if p_action <> 'create' then
        v_workspace_id := p_workspace_id;
    end if;

    insert into prebuilds.reconciliation_action_log (
        run_id, seq, preset_id, action, workspace_id, reason, outcome, started_at
    )
    values (
        p_run_id, p_seq, p_preset_id, p_action, v_workspace_id, p_reason,
        case when v_applied then 'applied' else 'skipped' end, v_started
    );
    return case when v_applied then v_workspace_id end;
end;
$$;

comment on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text, int) is
'Applies one action (create, delete, cancel or fail_job) of run p_run_id with lock_timeout '
'p_lock_timeout_ms (null: as set) and logs its outcome, if the run still holds the reconcile '
'lock (else SQLSTATE PBL01); returns the workspace acted on (a create''s new one) when applied, '
'null when skipped.';

revoke execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text, int)
from public;
grant execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text, int)
to prebuilds_reconciler;
