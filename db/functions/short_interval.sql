-- Internal: an interval as an operator reads it in a reason, to the second: 1h, 18m, 1h30m, 45s,
-- 2d3h. Used by pool_size_at's desired_reason.

create function prebuilds.short_interval(p_interval interval)
returns text
language sql
immutable
parallel safe
return (
    select
        case
            when x.s <= 0 then '0s'
            else
                concat(
                    nullif(x.s / 86400, 0) || 'd',
                    nullif(x.s % 86400 / 3600, 0) || 'h',
                    nullif(x.s % 3600 / 60, 0) || 'm',
                    nullif(x.s % 60, 0) || 's'
                )
        end
    from (select round(extract(epoch from p_interval))::bigint as s) as x
);

comment on function prebuilds.short_interval(interval) is
'Internal: p_interval rounded to the second and written as 2d3h, 1h30m, 18m, 45s (0s for none).';
