-- Time-of-day pool sizes for a preset (`* HOUR DOM MONTH DOW` in the preset's time zone).
-- Written by the platform; evaluated by preset_schedule_at. Each expression is parsed once, on
-- write, into generated columns, so the plan only tests bits.

create table prebuilds.preset_schedules (
    id uuid primary key default gen_random_uuid(),
    preset_id uuid not null references prebuilds.presets (id) on delete cascade,
    cron_expression text not null check (cron_expression <> ''),
    desired_instances int not null check (desired_instances between 0 and 10000),
    created_at timestamptz not null default clock_timestamp(),
    expression_error text generated always as (
        prebuilds.cron_expression_error(cron_expression)
    ) stored,
    masks prebuilds.cron_masks generated always as (prebuilds.cron_masks(cron_expression)) stored
);

create index preset_schedules_preset_id_idx on prebuilds.preset_schedules (preset_id);

comment on table prebuilds.preset_schedules is
'Schedules that override a preset''s desired_instances while their cron expression matches.';
comment on column prebuilds.preset_schedules.id is 'Primary key.';
comment on column prebuilds.preset_schedules.preset_id is 'The preset whose pool size this sets.';
comment on column prebuilds.preset_schedules.cron_expression is
'Cron expression `* HOUR DOM MONTH DOW`, read in the preset''s scheduling_timezone.';
comment on column prebuilds.preset_schedules.desired_instances is
'Pool size while the expression matches.';
comment on index prebuilds.preset_schedules_preset_id_idx is
'Finds the schedules of one preset.';
comment on column prebuilds.preset_schedules.created_at is
'When the schedule was written; when two schedules match, the earlier one wins.';
comment on column prebuilds.preset_schedules.expression_error is
'Why cron_expression is invalid, or null (generated). Writes are checked by a trigger; a row '
'written around it makes its preset fall back to desired_instances.';
comment on column prebuilds.preset_schedules.masks is
'cron_expression as bit masks, parsed once on write (generated; null when invalid).';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.preset_schedules
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
