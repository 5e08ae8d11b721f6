-- Revision 0006. Written by hand above the marker, in sections (one per piece of work).

-- >>> sharded preset_counters (issue 9, the claim path under load) -------------------------------
-- Existing rows become shard 0 of their preset; the counts keep their meaning (sum the shards).
drop function prebuilds.count_prebuild_event(uuid, text);
alter table prebuilds.preset_counters
add column shard smallint not null default 0 check (shard between 0 and 15);
alter table prebuilds.preset_counters
drop constraint preset_counters_pkey,
add primary key (preset_id, shard);
comment on table prebuilds.preset_counters is
'Lifetime prebuild events per preset, in up to 16 shard rows per preset (sum them): the source '
'of the prebuilds_*_total metrics.';
comment on column prebuilds.preset_counters.shard is
'pg_backend_pid() % 16 of the backends that counted into this row: spreads concurrent claims of '
'one preset over rows. Meaningless on its own; a preset''s count is the sum over its shards.';
-- <<< sharded preset_counters ---------------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/count_prebuild_event.sql
-- Internal: add one to a preset's lifetime counter, in the transaction of the event itself.
-- The row is the preset's shard for this backend (pg_backend_pid() % 16): claims of one preset
-- from concurrent connections update different rows instead of queueing on one until commit
-- (bench/claims.py measured it). Readers sum the shards.

create function prebuilds.count_prebuild_event(p_preset_id uuid, p_event text)
returns void
language sql
volatile
begin atomic
    insert into prebuilds.preset_counters as c (preset_id, shard, created, failed, claimed)
    values (
        p_preset_id,
        pg_backend_pid() % 16,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int
    )
    on conflict (preset_id, shard) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed;
end;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed or claimed) for a preset, in '
'the shard row of the calling backend.';

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
