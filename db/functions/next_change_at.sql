-- When does the plan next change by itself (SPEC 6.1)? The earliest instant after p_now at which
-- a rule driven by the clock alone flips, with no write at all; null when none is known. The loop
-- (`prebuilds run`) sleeps until then, unless a notification or its --interval wakes it first.
-- The rules are in next_change_after; this PL/pgSQL wrapper plans them once per connection, as
-- reconciliation_actions_at does the plan (planning them cost more than running them).

create function prebuilds.next_change_at(p_now timestamptz)
returns timestamptz
language plpgsql
stable
security definer
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
    return (select n.at from prebuilds.next_change_after(p_now) as n);
end;
$$;

comment on function prebuilds.next_change_at(timestamptz) is
'The earliest instant after p_now at which the plan changes with no write (a TTL expiry, the '
'end of a backoff, a schedule boundary, claims or builds leaving the demand windows, a delete '
'retry, a job timeout, a hard-limit cooldown, a retention); null when none is known. prebuilds '
'run wakes then.';

revoke execute on function prebuilds.next_change_at(timestamptz) from public;
grant execute on function prebuilds.next_change_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
