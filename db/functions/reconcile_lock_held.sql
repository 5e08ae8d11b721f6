-- Does the plan transaction of a run still hold its lock? The reconciler's licence to write:
-- called by start_run and apply_action before every write of a cycle. The plan transaction
-- holds, besides the reconcile lock, an exclusive lock on a token of its own (a random int in
-- the two-int keyspace, class: the low half of the key; see take_reconcile_lock). Asking for
-- that token shared fails exactly while the plan transaction is alive: one lock-manager call,
-- no scan of pg_locks, and no other reconciler (which has a token of its own) can pass for it.
-- When it succeeds the caller raises, which releases it. No `set search_path` (bound at
-- creation, see write_fence_key), so callers get it inlined.

create function prebuilds.reconcile_lock_held(p_key bigint, p_token int)
returns bool
language sql
volatile
begin atomic
    select not pg_catalog.pg_try_advisory_xact_lock_shared(
        prebuilds.write_fence_key(p_key, 2), p_token
    );
end;

comment on function prebuilds.reconcile_lock_held(bigint, int) is
'True while the plan transaction that took lock p_key with token p_token is alive (its token '
'lock cannot be shared); the licence every write of a run checks. Call it in a transaction '
'that ends soon: when false it holds the token shared until then.';
