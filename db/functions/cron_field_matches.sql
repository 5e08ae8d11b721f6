-- One field of a schedule's cron expression against one calendar value (SPEC 4.3).
-- Fields are `*`, a number, a range `a-b`, or a comma list of those; no steps, no names.
-- For the day-of-week field 7 is Sunday too, so `5-7` is Friday to Sunday.

create function prebuilds.cron_field_matches(p_field text, p_value int, p_is_dow bool)
returns bool
language sql
immutable
parallel safe
return p_field = '*' or exists (
    select
    from unnest(string_to_array(p_field, ',')) as item (part)
    cross join
        lateral (
            select
                split_part(item.part, '-', 1)::int as low,
                coalesce(
                    nullif(split_part(item.part, '-', 2), ''), split_part(item.part, '-', 1)
                )::int
                    as high
        ) as r
    where
        p_value between r.low and r.high
        or (p_is_dow and p_value = 0 and 7 between r.low and r.high)
);

comment on function prebuilds.cron_field_matches(text, int, bool) is
'True when one cron field (`*`, n, a-b or a comma list) admits p_value; p_is_dow makes 7 mean '
'Sunday. Expects a field that prebuilds.cron_expression_error accepted.';
