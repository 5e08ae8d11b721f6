-- Does a schedule's cron expression match an instant, read in a time zone? (SPEC 4.3)
-- For psql and tests; the plan matches the masks stored with each schedule, through the same
-- cron_masks_match. Null when the expression is invalid.

create function prebuilds.cron_matches(p_expression text, p_timezone text, p_at timestamptz)
returns bool
language sql
immutable
parallel safe
return prebuilds.cron_masks_match(
    prebuilds.cron_masks(p_expression), p_at at time zone p_timezone
);

comment on function prebuilds.cron_matches(text, text, timestamptz) is
'True when the schedule `* HOUR DOM MONTH DOW` matches p_at read in time zone p_timezone; null '
'when the expression is invalid.';
