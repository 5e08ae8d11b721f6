-- Apply one planned action of a run and log its outcome, in one transaction (SPEC 4.6). Called
-- by the driver's write connections, one call per action. The action is applied only while the
-- run's plan transaction still holds the reconcile lock (checked after taking the write fence
-- shared, so a later run's start_run waits for this transaction): a driver whose plan connection
-- died stops at its next action, whatever its write connections can still reach.

create function prebuilds.apply_action(
    p_run_id bigint,
    p_seq int,
    p_action text,
    p_preset_id uuid,
    p_workspace_id uuid,
    p_reason text
)
returns table (outcome text, workspace_id uuid)
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_run prebuilds.reconciliation_runs;
    v_started timestamptz;
begin
    select r.* into v_run from prebuilds.reconciliation_runs as r where r.id = p_run_id;
    if not found then
        raise exception 'no reconciliation run %', p_run_id using errcode = 'PBL01';
    end if;
    perform pg_catalog.pg_advisory_xact_lock_shared(
        prebuilds.write_fence_key(v_run.lock_key, 1), prebuilds.write_fence_key(v_run.lock_key, 2)
    );
    v_started := clock_timestamp();
    if not prebuilds.reconcile_lock_held(v_run.lock_key, v_run.lock_token) then
        raise exception 'run % lost the reconcile lock (its plan connection, backend %, is gone)',
            p_run_id, v_run.lock_pid
            using errcode = 'PBL01';
    end if;

    case p_action
        when 'create' then
            workspace_id := prebuilds.create_prebuild(p_preset_id);
            outcome := case when workspace_id is null then 'skipped' else 'applied' end;
        when 'delete' then
            workspace_id := p_workspace_id;
            outcome := case when prebuilds.delete_prebuild(p_workspace_id)
                            then 'applied' else 'skipped' end;
        when 'cancel' then
            workspace_id := p_workspace_id;
            outcome := case when prebuilds.cancel_prebuild(p_workspace_id)
                            then 'applied' else 'skipped' end;
        when 'fail_job' then
            workspace_id := p_workspace_id;
            outcome := case when prebuilds.fail_job(p_workspace_id)
                            then 'applied' else 'skipped' end;
        else
            raise exception 'unknown action %', quote_literal(p_action)
                using errcode = 'invalid_parameter_value';
    end case;

    insert into prebuilds.reconciliation_action_log (
        run_id, seq, preset_id, action, workspace_id, reason, outcome, started_at
    )
    values (
        p_run_id, p_seq, p_preset_id, p_action, workspace_id, p_reason, outcome, v_started
    );
    return next;
end;
$$;

comment on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text) is
'Applies one action (create, delete, cancel or fail_job) of run p_run_id and logs its outcome, '
'if the run still holds the reconcile lock (else SQLSTATE PBL01); returns applied or skipped '
'and the workspace.';

revoke execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text) from public;
grant execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text)
to prebuilds_reconciler;
