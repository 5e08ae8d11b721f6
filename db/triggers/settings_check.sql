-- Settings are validated when written, with messages naming the setting (issue 7).

create trigger settings_check
before insert or update on prebuilds.settings
for each row execute function prebuilds.check_settings();

comment on trigger settings_check on prebuilds.settings is
'Rejects a settings value that breaks its rule, with a message naming the setting.';
