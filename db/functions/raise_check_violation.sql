-- Re-raise a validation error with a message that names more (the preset, the field), keeping
-- the original hint when there was one. Called by write_preset_pool.

create function prebuilds.raise_check_violation(p_message text, p_hint text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
    if coalesce(p_hint, '') = '' then
        raise exception '%', p_message using errcode = 'check_violation';
    end if;
    raise exception '%', p_message using errcode = 'check_violation', hint = p_hint;
end;
$$;

comment on function prebuilds.raise_check_violation(text, text) is
'Raises check_violation with message p_message and hint p_hint (none when empty).';
