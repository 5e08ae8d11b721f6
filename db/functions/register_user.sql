-- Register a person who may own workspaces (claim a prebuild); returns the user's id, the same
-- one every time for the same username. Called by the platform.

create function prebuilds.register_user(p_username text)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_id uuid;
    v_system bool;
begin
    perform prebuilds.check_name_argument('username', p_username);
    insert into prebuilds.users (username) values (p_username)
    on conflict (username) do nothing;
    select u.id, u.is_system into strict v_id, v_system
    from prebuilds.users as u where u.username = p_username;
    if v_system then
        raise exception 'invalid username: % is a system account', quote_literal(p_username)
            using errcode = 'invalid_parameter_value';
    end if;
    return v_id;
end;
$$;

comment on function prebuilds.register_user(text) is
'Id of the user p_username, created when new (never a system account).';

revoke execute on function prebuilds.register_user(text) from public;
grant execute on function prebuilds.register_user(text) to prebuilds_platform;
