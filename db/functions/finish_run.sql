-- Record how a run ended. Called by the driver after its last action, also when the run lost
-- its lock (bookkeeping needs no licence). Applied and skipped are counted from the action log,
-- which commits with each action, so an action whose commit the driver never heard of still
-- counts; failed is the larger of the driver's count and the log's, since a failure whose log
-- row could not be written is known only to the driver.

create function prebuilds.finish_run(
    p_run_id bigint, p_status text, p_failed int, p_error text
)
returns void
language sql
volatile
security definer
set search_path = ''
begin atomic
    update prebuilds.reconciliation_runs as r
    set
        finished_at = clock_timestamp(),
        status = p_status,
        actions_applied = c.applied,
        actions_skipped = c.skipped,
        actions_failed = greatest(c.failed, p_failed),
        error = p_error
    from (
        select
            count(*) filter (where l.outcome = 'applied')::int as applied,
            count(*) filter (where l.outcome = 'skipped')::int as skipped,
            count(*) filter (where l.outcome = 'failed')::int as failed
        from prebuilds.reconciliation_action_log as l
        where l.run_id = p_run_id
    ) as c
    where r.id = p_run_id and r.status in ('running', 'abandoned');
end;

comment on function prebuilds.finish_run(bigint, text, int, text) is
'Ends run p_run_id with p_status, counting applied and skipped actions from the action log.';

revoke execute on function prebuilds.finish_run(bigint, text, int, text) from public;
grant execute on function prebuilds.finish_run(bigint, text, int, text) to prebuilds_reconciler;
