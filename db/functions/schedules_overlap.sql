-- Coder's definition of overlapping preset schedules: their hours, months and days overlap, where
-- days overlap on day-of-week when either day-of-month is `*`, on day-of-month when either
-- day-of-week is `*`, and on either when all four are restricted. Overlapping schedules make a
-- preset fall back to desired_instances (SPEC 4.3).

create function prebuilds.schedules_overlap(p_a text, p_b text)
returns bool
language sql
immutable
parallel safe
begin atomic
    select
        prebuilds.cron_fields_overlap(a[2], b[2], 0, 23, false)
        and prebuilds.cron_fields_overlap(a[4], b[4], 1, 12, false)
        and case
            when a[3] = '*' or b[3] = '*' then prebuilds.cron_fields_overlap(a[5], b[5], 0, 6, true)
            when a[5] = '*' or b[5] = '*'
                then prebuilds.cron_fields_overlap(a[3], b[3], 1, 31, false)
            else
                prebuilds.cron_fields_overlap(a[3], b[3], 1, 31, false)
                or prebuilds.cron_fields_overlap(a[5], b[5], 0, 6, true)
        end as overlap
    from
        (
            select regexp_split_to_array(regexp_replace(p_a, '^\s+|\s+$', '', 'g'), '\s+') as a
        ) as pa,
        (
            select regexp_split_to_array(regexp_replace(p_b, '^\s+|\s+$', '', 'g'), '\s+') as b
        ) as pb;
end;

comment on function prebuilds.schedules_overlap(text, text) is
'True when two valid schedules overlap by Coder''s definition (common hour, month and day).';
