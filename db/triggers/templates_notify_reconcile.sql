-- Wakes the reconciler loops when a template's active version, deprecation or deletion changes
-- (SPEC 6.1). Payload `template <id>`.

create trigger templates_notify_reconcile
after update on prebuilds.templates
referencing old table as old_rows new table as new_rows
for each statement execute function prebuilds.notify_plan_change('template', 'id');

comment on trigger templates_notify_reconcile on prebuilds.templates is
'Notifies prebuilds_reconcile (`template <id>`) after an update that changed templates.';
