-- Wakes the reconciler loops when a preset's schedules are added, changed or removed (SPEC 6.1).
-- Payload `schedules <preset id>`. A transition table belongs to one event, hence three triggers.

create trigger preset_schedules_notify_reconcile_insert
after insert on prebuilds.preset_schedules
referencing new table as new_rows
for each statement execute function prebuilds.notify_plan_change('schedules', 'preset_id');

create trigger preset_schedules_notify_reconcile_update
after update on prebuilds.preset_schedules
referencing old table as old_rows new table as new_rows
for each statement execute function prebuilds.notify_plan_change('schedules', 'preset_id');

create trigger preset_schedules_notify_reconcile_delete
after delete on prebuilds.preset_schedules
referencing old table as old_rows
for each statement execute function prebuilds.notify_plan_change('schedules', 'preset_id');

comment on trigger preset_schedules_notify_reconcile_insert on prebuilds.preset_schedules is
'Notifies prebuilds_reconcile (`schedules <preset id>`) after schedules were added.';
comment on trigger preset_schedules_notify_reconcile_update on prebuilds.preset_schedules is
'Notifies prebuilds_reconcile (`schedules <preset id>`) after an update that changed schedules.';
comment on trigger preset_schedules_notify_reconcile_delete on prebuilds.preset_schedules is
'Notifies prebuilds_reconcile (`schedules <preset id>`) after schedules were removed.';
