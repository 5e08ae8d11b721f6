-- Take the reconciler's advisory lock for the rest of this transaction, if it is free, and say
-- which transaction holds it (backend pid and virtual transaction id). Called by the driver's
-- plan transaction; the run row records the holder so that every write can check it.

create function prebuilds.take_reconcile_lock(p_key bigint)
returns table (acquired bool, holder_pid int, holder_vxid text)
language plpgsql
volatile
set search_path = ''
as $$
begin
    acquired := pg_catalog.pg_try_advisory_xact_lock(p_key);
    holder_pid := pg_catalog.pg_backend_pid();
    if acquired then
        select l.virtualtransaction into holder_vxid
        from pg_catalog.pg_locks as l
        where l.locktype = 'advisory'
          and l.pid = holder_pid
          and l.granted
          and l.objsubid = 1
          and l.classid = ((p_key >> 32) & 4294967295)::oid
          and l.objid = (p_key & 4294967295)::oid;
    end if;
    return next;
end;
$$;

comment on function prebuilds.take_reconcile_lock(bigint) is
'Tries pg_try_advisory_xact_lock(p_key); returns whether it was acquired and, if so, the '
'holder''s backend pid and virtual transaction id, which the run records.';
