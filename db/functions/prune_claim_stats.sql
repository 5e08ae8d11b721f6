-- Retention (settings.claim_stats_retention, SPEC 6.2): delete the oldest expired claim_stats
-- buckets, a bounded batch per call like prune_runs. Called by the driver after each run, in the
-- statement that prunes runs.

create function prebuilds.prune_claim_stats()
returns int
language sql
volatile
security definer
set search_path = ''
begin atomic
    with
    expired as (
        select
            c.preset_id,
            c.bucket,
            c.shard
        from prebuilds.claim_stats as c
        where
            c.bucket
            < now() - (select s.claim_stats_retention from prebuilds.settings as s)
        order by c.bucket
        limit 10000
    ),

    pruned as (
        delete from prebuilds.claim_stats as c
        using expired
        where
            c.preset_id = expired.preset_id
            and c.bucket = expired.bucket
            and c.shard = expired.shard
        returning c.bucket
    )

    select count(*)::int from pruned;
end;

comment on function prebuilds.prune_claim_stats() is
'Deletes up to 10000 of the oldest claim_stats rows older than settings.claim_stats_retention; '
'returns how many.';

revoke execute on function prebuilds.prune_claim_stats() from public;
grant execute on function prebuilds.prune_claim_stats() to prebuilds_reconciler;
