-- Does the transaction (p_pid, p_vxid) still hold the advisory lock p_key? The reconciler's
-- licence to write: called by start_run and apply_action before every write of a cycle.
-- pg_locks shows a bigint key as its high and low 32 bits (classid, objid) with objsubid 1; the
-- virtual transaction id makes a pid reused after a server restart never pass for the holder.

create function prebuilds.reconcile_lock_held(p_key bigint, p_pid int, p_vxid text)
returns bool
language sql
stable
set search_path = ''
begin atomic
    select exists(
        select
        from pg_catalog.pg_locks as l
        where
            l.locktype = 'advisory'
            and l.granted
            and l.objsubid = 1
            and l.classid = ((p_key >> 32) & 4294967295)::oid
            and l.objid = (p_key & 4294967295)::oid
            and l.pid = p_pid
            and l.virtualtransaction = p_vxid
    );
end;

comment on function prebuilds.reconcile_lock_held(bigint, int, text) is
'True while the transaction p_vxid of backend p_pid holds the advisory lock p_key (a '
'reconciler''s licence to write).';
