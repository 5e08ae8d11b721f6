-- Do two cron fields admit a common value? Used by schedules_overlap.

create function prebuilds.cron_fields_overlap(
    p_a text, p_b text, p_low int, p_high int, p_is_dow bool
)
returns bool
language sql
immutable
parallel safe
return exists (
    select
    from generate_series(p_low, p_high) as v (value)
    where
        prebuilds.cron_field_matches(p_a, v.value, p_is_dow)
        and prebuilds.cron_field_matches(p_b, v.value, p_is_dow)
);

comment on function prebuilds.cron_fields_overlap(text, text, int, int, bool) is
'True when cron fields p_a and p_b both admit some value in p_low..p_high.';
