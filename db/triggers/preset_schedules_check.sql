-- Schedules are validated when written (SPEC 4.3); the plan still copes with bad data that got
-- in another way (a time zone later dropped from the server, a concurrent overlapping insert).

create trigger preset_schedules_check
before insert or update on prebuilds.preset_schedules
for each row execute function prebuilds.check_preset_schedule();

comment on trigger preset_schedules_check on prebuilds.preset_schedules is
'Rejects invalid expressions, unknown time zones and overlapping schedules.';
