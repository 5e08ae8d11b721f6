-- Internal: record one call of claim_prebuild (SPEC 6.2), in the claim's own transaction: its
-- minute in claim_stats and the preset's lifetime counter (claimed or missed), each in the shard
-- row of the calling backend, so concurrent claims of one preset never queue on one row.
-- PL/pgSQL, not `begin atomic`, so the upsert's plan is cached per backend: PostgreSQL 15 plans
-- a SQL function's body on every call (as count_prebuild_event did before revision 0011).

create function prebuilds.count_claim(p_preset_id uuid, p_hit bool)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    insert into prebuilds.claim_stats as c (preset_id, bucket, shard, hits, misses)
    values (
        p_preset_id,
        pg_catalog.date_trunc('minute', pg_catalog.now()),
        pg_catalog.pg_backend_pid() % 16,
        p_hit::int,
        (not p_hit)::int
    )
    on conflict (preset_id, bucket, shard) do update
        set
            hits = c.hits + excluded.hits,
            misses = c.misses + excluded.misses;
    perform prebuilds.count_prebuild_event(
        p_preset_id, case when p_hit then 'claimed' else 'missed' end
    );
end;
$$;

comment on function prebuilds.count_claim(uuid, bool) is
'Internal: counts a claim (p_hit) or a miss of a preset in claim_stats (this minute) and in '
'preset_counters (lifetime), in the shard rows of the calling backend.';
