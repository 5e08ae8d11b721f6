-- Revision 0012. Written by hand above the marker, in sections (one per piece of work).

-- >>> count_claim's plan cached (issue 9, the claim path on PostgreSQL 15) ------------------------
drop function prebuilds.count_claim(uuid, bool);
-- <<< count_claim's plan cached --------------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/count_claim.sql
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

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
