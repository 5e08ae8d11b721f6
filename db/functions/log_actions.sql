-- Log the actions of a run that apply_action did not log: failed actions (after their own
-- transaction rolled back) and informational backoff notes. Called by the driver, in one
-- statement per batch; a row already logged (its action committed after all) is kept as it is.
-- Applied and skipped outcomes are written only by apply_action, with the action itself.

create function prebuilds.log_actions(p_run_id bigint, p_rows jsonb)
returns int
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_count int;
begin
    if jsonb_typeof(p_rows) is distinct from 'array' then
        raise exception 'log_actions: p_rows must be a JSON array of action rows'
            using errcode = 'invalid_parameter_value';
    end if;
    if exists (
        select from jsonb_to_recordset(p_rows) as r (action text, outcome text)
        where not coalesce(
            r.outcome = 'failed' and r.action <> 'backoff'
            or r.outcome = 'noted' and r.action = 'backoff',
            false
        )
    ) then
        raise exception 'log_actions: only failed actions and noted backoff rows are logged here '
            '(apply_action logs the others)'
            using errcode = 'invalid_parameter_value';
    end if;
    insert into prebuilds.reconciliation_action_log (
        run_id, seq, preset_id, action, workspace_id, reason, outcome, error
    )
    select p_run_id, r.seq, r.preset_id, r.action, r.workspace_id, r.reason, r.outcome, r.error
    from jsonb_to_recordset(p_rows) as r (
        seq int, preset_id uuid, action text, workspace_id uuid, reason text, outcome text,
        error text
    )
    on conflict (run_id, seq) do nothing;
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

comment on function prebuilds.log_actions(bigint, jsonb) is
'Logs failed actions and noted backoff rows of run p_run_id (p_rows: a JSON array of {seq, '
'preset_id, action, workspace_id, reason, outcome, error}); returns how many were new.';

revoke execute on function prebuilds.log_actions(bigint, jsonb) from public;
grant execute on function prebuilds.log_actions(bigint, jsonb) to prebuilds_reconciler;
