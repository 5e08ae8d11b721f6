-- Trigger function: a preset's scheduling_timezone must be '' (no schedules) or an IANA time zone
-- name this server knows (SPEC 2). Called by the trigger presets_check_timezone.
-- PostgreSQL's `at time zone` (what timezone_error asks) also takes abbreviations ('PST': a fixed
-- offset, without daylight saving time), POSIX specs ('UTC+3', which it reads as three hours
-- *west* of Greenwich) and names in any case. A name is an IANA name when the TimeZone setting
-- accepts it and spells it the same way (it answers a zone file's own spelling, and rejects
-- abbreviations); a name with digits may be a POSIX spec or an offset, and is looked up in
-- pg_timezone_names (which reads every zone file: tens of milliseconds, so only for those).
-- Zone files that are not Area/Location names are refused too: abbreviations and POSIX rules
-- kept as files ('CET', 'EST5EDT', 'GMT', 'posixrules') and the posix/ and right/ trees; 'UTC'
-- is the one exception.

create function prebuilds.check_preset_timezone()
returns trigger
language plpgsql
set search_path = ''
-- Restores the session's TimeZone when the function returns: set_config below changes it.
set timezone = 'UTC'
as $$
declare
    v_zone text := new.scheduling_timezone;
    v_error text;
    v_spelling text;
begin
    if v_zone = '' or (tg_op = 'UPDATE' and v_zone = old.scheduling_timezone) then
        return new;
    end if;
    v_error := prebuilds.timezone_error(v_zone);
    if v_error is null then
        begin
            perform pg_catalog.set_config('TimeZone', v_zone, true);
            v_spelling := pg_catalog.current_setting('TimeZone');
        exception
            when invalid_parameter_value then
                v_spelling := null;
        end;
        if v_spelling ~ '[0-9]' and not exists (
            select from pg_catalog.pg_timezone_names as z where z.name = v_spelling
        ) then
            v_spelling := null;
        end if;
        if v_spelling is not null and v_spelling <> 'UTC' and (
            v_spelling !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)+$'
            or v_spelling ~ '^(posix|right|SystemV)/'
        ) then
            v_error := quote_literal(v_zone) || ' is not an IANA Area/Location time zone name'
                || ' (abbreviations and POSIX rules change meaning; use e.g. Europe/Paris or UTC)';
        elsif v_spelling is distinct from v_zone then
            v_error := quote_literal(v_zone) || ' is not an IANA time zone name'
                || coalesce(' (did you mean ' || quote_literal(v_spelling) || '?)', '');
        end if;
    end if;
    if v_error is not null then
        raise exception 'invalid preset %: %', quote_literal(new.name), v_error
            using errcode = 'check_violation',
                  hint = 'Use an IANA name such as Europe/Paris, or '''' for no schedules.';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_preset_timezone() is
'Trigger: rejects a scheduling_timezone that is not an IANA Area/Location time zone name the '
'server knows (or UTC).';
