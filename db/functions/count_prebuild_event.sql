-- Internal: add one to a preset's lifetime counter, in the transaction of the event itself.
-- The row is the preset's shard for this backend (pg_backend_pid() % 16): claims of one preset
-- from concurrent connections update different rows instead of queueing on one until commit
-- (bench/claims.py measured it). Readers sum the shards. PL/pgSQL, not `begin atomic`, so the
-- upsert's plan is cached per backend: PostgreSQL 15 plans a SQL function's body on every call,
-- which cost every create and claim about 0.1 ms there (bench/apply_pieces.py --functions).
-- No `set search_path`: reached only from functions that run with search_path '' (execute is
-- revoked from public), every name qualified; one configuration save and restore less per call.

create function prebuilds.count_prebuild_event(p_preset_id uuid, p_event text)
returns void
language plpgsql
volatile
as $$
begin
    insert into prebuilds.preset_counters as c (
        preset_id, shard, created, failed, claimed, missed, hung_failed, delete_retried
    )
    values (
        p_preset_id,
        pg_catalog.pg_backend_pid() % 16,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int,
        (p_event = 'missed')::int,
        (p_event = 'hung_failed')::int,
        (p_event = 'delete_retried')::int
    )
    on conflict (preset_id, shard) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed,
            missed = c.missed + excluded.missed,
            hung_failed = c.hung_failed + excluded.hung_failed,
            delete_retried = c.delete_retried + excluded.delete_retried;
end;
$$;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed, claimed, missed, hung_failed or '
'delete_retried) for a preset, in the shard row of the calling backend.';
