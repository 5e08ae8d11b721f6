-- Wakes the reconciler loops when the settings row changes (SPEC 6.1). Payload `settings`.

create trigger settings_notify_reconcile
after update on prebuilds.settings
referencing old table as old_rows new table as new_rows
for each statement execute function prebuilds.notify_plan_change('settings');

comment on trigger settings_notify_reconcile on prebuilds.settings is
'Notifies prebuilds_reconcile (`settings`) after an update that changed the settings row.';
