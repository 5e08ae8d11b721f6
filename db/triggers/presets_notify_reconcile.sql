-- Wakes the reconciler loops when presets are added or their pool settings, TTL, time zone,
-- invalidation or failure reset change (SPEC 6.1). Payload `preset <id>`. A transition table
-- belongs to one event, hence two triggers.

create trigger presets_notify_reconcile_insert
after insert on prebuilds.presets
referencing new table as new_rows
for each statement execute function prebuilds.notify_plan_change('preset', 'id');

create trigger presets_notify_reconcile_update
after update on prebuilds.presets
referencing old table as old_rows new table as new_rows
for each statement execute function prebuilds.notify_plan_change('preset', 'id');

comment on trigger presets_notify_reconcile_insert on prebuilds.presets is
'Notifies prebuilds_reconcile (`preset <id>`) after presets were added.';
comment on trigger presets_notify_reconcile_update on prebuilds.presets is
'Notifies prebuilds_reconcile (`preset <id>`) after an update that changed presets.';
