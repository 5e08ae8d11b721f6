-- Clear a preset's hard limit (and its backoff) by ignoring the builds before now (SPEC 4.2).
-- Called by operators, through `prebuilds resume-preset` or psql.

create function prebuilds.resume_preset(p_preset_id uuid)
returns bool
language sql
volatile
security definer
set search_path = ''
begin atomic
    with reset as (
        update prebuilds.presets as p
        set failures_reset_at = now()
        where p.id = p_preset_id
        returning p.id
    )

    select exists(select from reset);
end;

comment on function prebuilds.resume_preset(uuid) is
'Sets failures_reset_at to now, so earlier failures no longer count for the hard limit or '
'backoff; false when there is no such preset.';

revoke execute on function prebuilds.resume_preset(uuid) from public;
grant execute on function prebuilds.resume_preset(uuid) to prebuilds_platform;
