-- The settings row cannot be deleted or truncated (issue 7: a missing row stopped every cycle).

create trigger settings_keep_row
before delete on prebuilds.settings
for each row execute function prebuilds.keep_settings_row();

create trigger settings_keep_row_truncate
before truncate on prebuilds.settings
for each statement execute function prebuilds.keep_settings_row();

comment on trigger settings_keep_row on prebuilds.settings is
'Refuses to delete the settings row.';
comment on trigger settings_keep_row_truncate on prebuilds.settings is
'Refuses to truncate the settings table.';
