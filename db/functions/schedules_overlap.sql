-- Do two schedules overlap (Coder's definition, see cron_masks_overlap)? For the write-time check
-- and psql; null when either expression is invalid.

create function prebuilds.schedules_overlap(p_a text, p_b text)
returns bool
language sql
immutable
parallel safe
return prebuilds.cron_masks_overlap(prebuilds.cron_masks(p_a), prebuilds.cron_masks(p_b));

comment on function prebuilds.schedules_overlap(text, text) is
'True when two valid schedules overlap by Coder''s definition (common hour, month and day).';
