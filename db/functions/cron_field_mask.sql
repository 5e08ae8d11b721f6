-- One field of a valid cron expression (`*`, n, a-b or a comma list) as a bit mask of the values
-- it admits between p_low and p_high. Used by cron_masks.

create function prebuilds.cron_field_mask(p_field text, p_low int, p_high int)
returns bigint
language sql
immutable
parallel safe
begin atomic
    select bit_or(1::bigint << v.value) as mask
    from unnest(string_to_array(p_field, ',')) as item (part)
    cross join lateral regexp_match(item.part, '^(\d{1,2})(?:-(\d{1,2}))?$') as m (bounds)
    cross join lateral generate_series(
        case when item.part = '*' then p_low else m.bounds[1]::int end,
        case when item.part = '*' then p_high else coalesce(m.bounds[2], m.bounds[1])::int end
    ) as v (value);
end;

comment on function prebuilds.cron_field_mask(text, int, int) is
'Bit mask of the values in p_low..p_high that a valid cron field admits.';
