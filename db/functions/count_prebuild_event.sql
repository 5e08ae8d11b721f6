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
