-- Downgrade of revision 0006 to 0005. Written by hand above the marker, in sections; below it,
-- the 0005 text of the objects 0006 re-created.

-- >>> sharded preset_counters (issue 9, the claim path under load) -------------------------------
-- The shards of each preset are added up into one row: no count is lost.
drop function prebuilds.count_prebuild_event(uuid, text);
with shards as (
    delete from prebuilds.preset_counters
    returning preset_id, created, failed, claimed
)
insert into prebuilds.preset_counters (preset_id, shard, created, failed, claimed)
select
    shards.preset_id,
    0,
    sum(shards.created),
    sum(shards.failed),
    sum(shards.claimed)
from shards
group by shards.preset_id;
alter table prebuilds.preset_counters drop constraint preset_counters_pkey;
alter table prebuilds.preset_counters drop column shard;
alter table prebuilds.preset_counters add primary key (preset_id);
comment on table prebuilds.preset_counters is
'Lifetime prebuild events per preset: the source of the prebuilds_*_total metrics.';
-- <<< sharded preset_counters ---------------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/count_prebuild_event.sql
-- Internal: add one to a preset's lifetime counter, in the transaction of the event itself.
-- Creates and claims of one preset already serialise on its rows, so the counter row adds no
-- contention worth measuring.

create function prebuilds.count_prebuild_event(p_preset_id uuid, p_event text)
returns void
language sql
volatile
begin atomic
    insert into prebuilds.preset_counters as c (preset_id, created, failed, claimed)
    values (
        p_preset_id,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int
    )
    on conflict (preset_id) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed;
end;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed or claimed) for a preset.';

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
