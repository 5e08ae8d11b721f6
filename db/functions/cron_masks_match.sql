-- Do a schedule's masks match a local wall-clock time? (SPEC 4.3) Minute is always `*`, so an hour
-- range is continuous: `9-18` holds from 09:00:00 to 18:59:59. When both day fields are
-- restricted, either one matching is enough (the usual cron rule). A single expression: the
-- planner inlines it into the plan query.

create function prebuilds.cron_masks_match(p_masks prebuilds.cron_masks, p_local timestamp)
returns bool
language sql
immutable
parallel safe
return
((p_masks).hours >> extract(hour from p_local)::int) & 1 = 1
and ((p_masks).months >> extract(month from p_local)::int) & 1 = 1
and case
    when (p_masks).any_day_of_month or (p_masks).any_day_of_week
        then
            ((p_masks).days_of_month >> extract(day from p_local)::int) & 1 = 1
            and ((p_masks).days_of_week >> extract(dow from p_local)::int) & 1 = 1
    else
        ((p_masks).days_of_month >> extract(day from p_local)::int) & 1 = 1
        or ((p_masks).days_of_week >> extract(dow from p_local)::int) & 1 = 1
end;

comment on function prebuilds.cron_masks_match(prebuilds.cron_masks, timestamp) is
'True when a schedule''s masks match the local wall-clock time p_local.';
