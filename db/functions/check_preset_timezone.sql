-- Trigger function: a preset's scheduling_timezone must be '' (no schedules) or a zone this server
-- knows. Called by the trigger presets_check_timezone.

create function prebuilds.check_preset_timezone()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if new.scheduling_timezone <> '' and prebuilds.timezone_error(new.scheduling_timezone) is not null then
        raise exception 'invalid preset %: %', quote_literal(new.name),
            prebuilds.timezone_error(new.scheduling_timezone)
            using errcode = 'check_violation',
                  hint = 'Use an IANA name such as Europe/Paris, or '''' for no schedules.';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_preset_timezone() is
'Trigger: rejects a scheduling_timezone the server does not know.';
