-- Is a time zone name known to this server? Null when it is, else why not. Catches the error
-- rather than reading pg_timezone_names, which loads every zone file on each call.

create function prebuilds.timezone_error(p_timezone text)
returns text
language plpgsql
stable
set search_path = ''
as $$
begin
    if coalesce(p_timezone, '') = '' then
        return 'no scheduling_timezone';
    end if;
    perform now() at time zone p_timezone;
    return null;
exception
    when invalid_parameter_value then
        return 'unknown time zone ' || quote_literal(p_timezone);
end;
$$;

comment on function prebuilds.timezone_error(text) is
'Null when p_timezone is a time zone this server knows; otherwise why it cannot be used.';
