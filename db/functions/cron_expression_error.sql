-- Validation of a schedule's cron expression (SPEC 4.3): null when valid, else what is wrong.
-- Used when schedules are written (trigger on preset_schedules) and by preset_plan_at, which falls
-- back to desired_instances when bad data is present anyway. Fields are separated by any
-- whitespace (spaces, tabs); whitespace around the expression, such as a pasted newline, is
-- ignored, as cron_matches and schedules_overlap ignore it.

create function prebuilds.cron_expression_error(p_expression text)
returns text
language sql
immutable
parallel safe
begin atomic
    with
    fields as (
        select
            f.field,
            f.n,
            (array['minute', 'hour', 'day-of-month', 'month', 'day-of-week'])[f.n] as label,
            (array[0, 0, 1, 1, 0])[f.n] as low,
            (array[59, 23, 31, 12, 7])[f.n] as high
        from
            unnest(
                regexp_split_to_array(
                    regexp_replace(coalesce(p_expression, ''), '^\s+|\s+$', '', 'g'), '\s+'
                )
            )
            with ordinality as f (field, n)
    ),

    items as (
        select
            fields.n,
            fields.label,
            fields.low,
            fields.high,
            item.part,
            m.bounds[1]::int as first_value,
            coalesce(m.bounds[3], m.bounds[1])::int as last_value
        from fields
        cross join lateral unnest(string_to_array(fields.field, ',')) as item (part)
        cross join
            lateral (
                select regexp_match(item.part, '^(\d{1,2})(-(\d{1,2}))?$') as bounds
            ) as m
        where fields.field <> '*' and fields.n > 1
    )

    select
        case
            when coalesce(p_expression, '') !~ '\S' then 'cron expression is empty'
            when (select count(*) from fields) <> 5
                then 'cron expression needs 5 fields (minute hour day-of-month month '
                    || 'day-of-week), got ' || (select count(*) from fields) || ' in '
                    || quote_literal(p_expression)
            when (select fields.field from fields where fields.n = 1) <> '*'
                then 'minute field must be *, got '
                    || quote_literal((select fields.field from fields where fields.n = 1))
            else (
                select
                    it.label || ' field: ' || quote_literal(it.part)
                    || case
                        when it.first_value is null
                            then ' is not *, a number, a range a-b or a list of those'
                        when it.first_value > it.last_value then ' is a range that runs backwards'
                        else ' is outside ' || it.low || '-' || it.high
                    end
                from items as it
                where
                    it.first_value is null
                    or it.first_value > it.last_value
                    or it.first_value < it.low
                    or it.last_value > it.high
                order by it.n
                limit 1
            )
        end as error;
end;

comment on function prebuilds.cron_expression_error(text) is
'Null when p_expression is a valid schedule (`* HOUR DOM MONTH DOW`: minute *, other fields *, '
'n, a-b or comma lists of those), otherwise a sentence saying what is wrong.';
