-- An instant as wall-clock time in a time zone, or null when the zone is unknown to this server
-- (`at time zone` would raise). Stable, not immutable, so the planner never evaluates it early
-- with a bad zone. Used by preset_schedule_at.

create function prebuilds.local_time(p_at timestamptz, p_timezone text)
returns timestamp
language plpgsql
stable
set search_path = ''
as $$
begin
    return p_at at time zone p_timezone;
exception
    when invalid_parameter_value then
        return null;
end;
$$;

comment on function prebuilds.local_time(timestamptz, text) is
'p_at as local wall-clock time in p_timezone; null when the server does not know the zone.';
