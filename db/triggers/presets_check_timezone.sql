-- Time zones are validated when written (SPEC 4.3).

create trigger presets_check_timezone
before insert or update of scheduling_timezone on prebuilds.presets
for each row execute function prebuilds.check_preset_timezone();

comment on trigger presets_check_timezone on prebuilds.presets is
'Rejects a scheduling_timezone that is not an IANA time zone name the server knows.';
