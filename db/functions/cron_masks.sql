-- A cron expression as prebuilds.cron_masks, or null when it is not valid
-- (prebuilds.cron_expression_error says why). Generates preset_schedules.masks and is used by
-- cron_matches and schedules_overlap, so the plan and the helpers agree by construction.

create function prebuilds.cron_masks(p_expression text)
returns prebuilds.cron_masks
language sql
immutable
parallel safe
begin atomic
    select
        case
            when prebuilds.cron_expression_error(p_expression) is null
                then
                    row(
                        prebuilds.cron_field_mask(f.fields[2], 0, 23),
                        prebuilds.cron_field_mask(f.fields[3], 1, 31),
                        prebuilds.cron_field_mask(f.fields[4], 1, 12),
                        -- 7 is Sunday too: fold bit 7 onto bit 0.
                        (prebuilds.cron_field_mask(f.fields[5], 0, 7) & 127)
                        | ((prebuilds.cron_field_mask(f.fields[5], 0, 7) >> 7) & 1),
                        f.fields[3] = '*',
                        f.fields[5] = '*'
                    )::prebuilds.cron_masks
        end as masks
    from (
        select
            regexp_split_to_array(
                regexp_replace(p_expression, '^\s+|\s+$', '', 'g'), '\s+'
            ) as fields
    ) as f;
end;

comment on function prebuilds.cron_masks(text) is
'The bit masks of a valid `* HOUR DOM MONTH DOW` expression; null when it is invalid.';
