-- Take the reconciler's advisory lock for the rest of this transaction, if it is free, and a
-- token lock that identifies this transaction: an exclusive lock on (low half of the key, a
-- random int). The run row records the token; every write checks that it is still held
-- (reconcile_lock_held). Called by the driver's plan transaction.

create function prebuilds.take_reconcile_lock(p_key bigint)
returns table (acquired bool, holder_pid int, holder_token int)
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    acquired := pg_catalog.pg_try_advisory_xact_lock(p_key);
    holder_pid := pg_catalog.pg_backend_pid();
    if acquired then
        loop
            holder_token := (1 + floor(random() * 2147483646))::int;
            -- Another live token with the same value (odds 1 in 2^31) is simply skipped.
            exit when pg_catalog.pg_try_advisory_xact_lock(
                prebuilds.write_fence_key(p_key, 2), holder_token
            );
        end loop;
    end if;
    return next;
end;
$$;

comment on function prebuilds.take_reconcile_lock(bigint) is
'Tries pg_try_advisory_xact_lock(p_key); when acquired, also locks a random token that '
'identifies this transaction and returns it with the backend pid, for the run to record.';

revoke execute on function prebuilds.take_reconcile_lock(bigint) from public;
grant execute on function prebuilds.take_reconcile_lock(bigint) to prebuilds_reconciler;
