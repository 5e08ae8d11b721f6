-- Retention (settings.run_retention): delete the oldest expired runs (and their action log), a
-- bounded batch per call, so a long backlog is worked off over a few cycles rather than in one
-- long transaction. Called by the driver after each run.

create function prebuilds.prune_runs()
returns int
language sql
volatile
security definer
set search_path = ''
begin atomic
    with
    expired as (
        select r.id
        from prebuilds.reconciliation_runs as r
        where r.started_at < now() - (select s.run_retention from prebuilds.settings as s)
        order by r.id
        limit 1000
    ),

    pruned as (
        delete from prebuilds.reconciliation_runs as r
        using expired
        where r.id = expired.id
        returning r.id
    )

    select count(*)::int from pruned;
end;

comment on function prebuilds.prune_runs() is
'Deletes up to 1000 of the oldest runs older than settings.run_retention; returns how many.';

revoke execute on function prebuilds.prune_runs() from public;
grant execute on function prebuilds.prune_runs() to prebuilds_reconciler;
