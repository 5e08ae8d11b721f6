-- Called by `prebuilds run` before each cycle, in a transaction of its own: wait until every
-- claim in flight (holding CLAIMS_IN_FLIGHT shared, see notify_claim) has committed or rolled
-- back, so the cycle's snapshot sees the claims whose notification another claim sent. Waits at
-- most p_timeout_ms; false when that was not enough (a claim inside a long transaction): the
-- loop then runs the cycle and another one shortly after. New claims queue behind the wait, so
-- it is short.

create function prebuilds.wait_for_claims(p_timeout_ms int)
returns bool
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    perform pg_catalog.set_config('lock_timeout', p_timeout_ms || 'ms', true);
    perform pg_catalog.pg_advisory_xact_lock(8102650152842191213);
    return true;
exception
    when lock_not_available then
        return false;
end;
$$;

comment on function prebuilds.wait_for_claims(int) is
'Waits up to p_timeout_ms for the claims in flight to end (CLAIMS_IN_FLIGHT exclusive, for the '
'rest of the transaction); false on timeout.';

revoke execute on function prebuilds.wait_for_claims(int) from public;
grant execute on function prebuilds.wait_for_claims(int) to prebuilds_reconciler;
