-- A name passed to a platform function (organization, template, version, username): 1 to 200
-- characters, no control characters, the same rule as the command line's. Called by the
-- functions of the platform's contract (SPEC 7) before they write anything.

create function prebuilds.check_name_argument(p_what text, p_value text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_control text := substring(p_value from '[[:cntrl:]]');
begin
    if p_value is null then
        raise exception 'invalid %: must not be null', p_what
            using errcode = 'invalid_parameter_value';
    end if;
    if p_value = '' or char_length(p_value) > 200 then
        raise exception 'invalid %: must be 1 to 200 characters (got %)', p_what,
            char_length(p_value)
            using errcode = 'invalid_parameter_value';
    end if;
    if v_control is not null then
        raise exception 'invalid %: must not contain control characters (% at position %)',
            p_what, pg_catalog.to_json(v_control), position(v_control in p_value)
            using errcode = 'invalid_parameter_value';
    end if;
end;
$$;

comment on function prebuilds.check_name_argument(text, text) is
'Raises unless p_value is 1 to 200 characters without control characters; p_what names it in '
'the message.';
