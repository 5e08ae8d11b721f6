-- Pool settings are validated when written, with messages naming the column (issue 7).

create trigger presets_check_pool
before insert or update of name, desired_instances, ttl_seconds on prebuilds.presets
for each row execute function prebuilds.check_preset_pool();

comment on trigger presets_check_pool on prebuilds.presets is
'Rejects a name, desired_instances or ttl_seconds that breaks its rule, with a message naming it.';
