-- Does a schedule's cron expression match an instant, read in a time zone? (SPEC 4.3)
-- Minute is always `*`, so an hour range is continuous: `9-18` holds from 09:00:00 to 18:59:59.
-- When both day fields are restricted, either one matching is enough (the usual cron rule).

create function prebuilds.cron_matches(p_expression text, p_timezone text, p_at timestamptz)
returns bool
language sql
immutable
parallel safe
begin atomic
    select
        prebuilds.cron_field_matches(f[2], extract(hour from local_time)::int, false)
        and prebuilds.cron_field_matches(f[4], extract(month from local_time)::int, false)
        and case
            when f[3] <> '*' and f[5] <> '*'
                then
                    prebuilds.cron_field_matches(f[3], extract(day from local_time)::int, false)
                    or prebuilds.cron_field_matches(f[5], extract(dow from local_time)::int, true)
            else
                prebuilds.cron_field_matches(f[3], extract(day from local_time)::int, false)
                and prebuilds.cron_field_matches(f[5], extract(dow from local_time)::int, true)
        end as matches
    from
        (
            select
                regexp_split_to_array(
                    regexp_replace(p_expression, '^\s+|\s+$', '', 'g'), '\s+'
                ) as f
        ) as parsed,
        (select p_at at time zone p_timezone as local_time) as t;
end;

comment on function prebuilds.cron_matches(text, text, timestamptz) is
'True when the schedule `* HOUR DOM MONTH DOW` matches p_at read in time zone p_timezone. Expects '
'an expression that prebuilds.cron_expression_error accepted and a valid time zone.';
