-- Coder's definition of overlapping preset schedules, on masks: they share an hour and a month,
-- and a day — of the week when either day-of-month is `*`, of the month when either day-of-week
-- is `*`, either otherwise. Overlapping schedules make a preset fall back to desired_instances
-- (SPEC 4.3).

create function prebuilds.cron_masks_overlap(p_a prebuilds.cron_masks, p_b prebuilds.cron_masks)
returns bool
language sql
immutable
parallel safe
return
(p_a).hours & (p_b).hours <> 0
and (p_a).months & (p_b).months <> 0
and case
    when (p_a).any_day_of_month or (p_b).any_day_of_month
        then (p_a).days_of_week & (p_b).days_of_week <> 0
    when (p_a).any_day_of_week or (p_b).any_day_of_week
        then (p_a).days_of_month & (p_b).days_of_month <> 0
    else
        (p_a).days_of_week & (p_b).days_of_week <> 0
        or (p_a).days_of_month & (p_b).days_of_month <> 0
end;

comment on function prebuilds.cron_masks_overlap(prebuilds.cron_masks, prebuilds.cron_masks) is
'True when two schedules overlap by Coder''s definition (common hour, month and day).';
