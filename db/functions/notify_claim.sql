-- Internal: wake the reconciler loops after a claim (SPEC 6.1), one claim at a time. A NOTIFY
-- serialises commits: from its PreCommit to the end of its commit (the WAL flush included) a
-- notifying transaction holds a database-wide lock, so one notification per claim made
-- concurrent claims commit one by one (bench/claims.py: 8 claimers, 703 → 207 claims/s).
-- Here only the claim holding the notifier key (driver/locks.py CLAIM_NOTIFIER) notifies; claims
-- committing meanwhile rely on its notification, which is sent at its commit, hence after they
-- took the in-flight key (CLAIMS_IN_FLIGHT) shared; the cycle it starts waits for every holder
-- of that key to finish (wait_for_claims) before it reads the plan, so it sees them too.
-- Keys: 8102650153177017189 = CLAIM_NOTIFIER, 8102650152842191213 = CLAIMS_IN_FLIGHT.

create function prebuilds.notify_claim(p_what text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    perform pg_catalog.pg_advisory_xact_lock_shared(8102650152842191213);
    if pg_catalog.pg_try_advisory_xact_lock(8102650153177017189) then
        perform prebuilds.notify_reconcile(p_what);
    end if;
end;
$$;

comment on function prebuilds.notify_claim(text) is
'Internal: marks the claim in flight (CLAIMS_IN_FLIGHT, shared) and notifies prebuilds_reconcile '
'with p_what unless another claim in flight holds CLAIM_NOTIFIER and will notify at its commit.';
