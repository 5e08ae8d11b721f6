-- Pause (true) or resume (false) reconciliation for the whole deployment: while paused, cycles
-- plan and apply nothing (SPEC 4.4). Called by the platform and `prebuilds pause` / `resume`.

create function prebuilds.set_reconciliation_paused(p_paused bool)
returns bool
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_paused bool;
begin
    if p_paused is null then
        raise exception 'invalid p_paused: must be true or false, not null'
            using errcode = 'invalid_parameter_value';
    end if;
    update prebuilds.settings as s
    set reconciliation_paused = p_paused
    returning s.reconciliation_paused into v_paused;
    return v_paused;
end;
$$;

comment on function prebuilds.set_reconciliation_paused(bool) is
'Sets settings.reconciliation_paused; returns the value now in force, null when the settings row '
'is missing.';

revoke execute on function prebuilds.set_reconciliation_paused(bool) from public;
grant execute on function prebuilds.set_reconciliation_paused(bool) to prebuilds_platform;
