-- A schedule's cron expression as bit masks: bit n of `hours` is set when hour n matches, and so
-- on. Parsed once when a schedule is written (preset_schedules.masks), so matching an instant and
-- comparing two schedules are a few bit operations, with no parsing in the plan.

create type prebuilds.cron_masks as (
    hours bigint,
    days_of_month bigint,
    months bigint,
    days_of_week bigint,
    any_day_of_month bool,
    any_day_of_week bool
);

comment on type prebuilds.cron_masks is
'A valid `* HOUR DOM MONTH DOW` expression as bit masks (bit n = value n matches).';
comment on column prebuilds.cron_masks.hours is 'Bits 0-23: the hours that match.';
comment on column prebuilds.cron_masks.days_of_month is 'Bits 1-31: the days of the month.';
comment on column prebuilds.cron_masks.months is 'Bits 1-12: the months.';
comment on column prebuilds.cron_masks.days_of_week is 'Bits 0-6: the days of the week, 0 Sunday.';
comment on column prebuilds.cron_masks.any_day_of_month is
'The day-of-month field is `*` (for the rule on two restricted day fields).';
comment on column prebuilds.cron_masks.any_day_of_week is 'The day-of-week field is `*`.';
