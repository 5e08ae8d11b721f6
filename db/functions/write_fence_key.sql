-- The write fence of a reconcile lock key: the same 64 bits as two int4 halves, which
-- PostgreSQL keeps in a keyspace of its own (pg_locks.objsubid 2), so no new key is registered.
-- Every action takes it shared; start_run takes it exclusive (see start_run, apply_action). The
-- low half alone is also the class of the plan transactions' token locks (take_reconcile_lock).
-- No `set search_path`: a `begin atomic` body is parsed and bound when the function is created,
-- so the setting protected nothing, and it kept the planner from inlining the function into its
-- callers (every action called it three times; PostgreSQL 15 planned each call afresh).

create function prebuilds.write_fence_key(p_key bigint, p_half int)
returns int
language sql
immutable
parallel safe
begin atomic
    select (case when p_half = 1 then p_key >> 32 else p_key end)::bit(32)::int;
end;

comment on function prebuilds.write_fence_key(bigint, int) is
'Half p_half (1: high, 2: low 32 bits) of the reconcile lock key, as the int4 pair of the write '
'fence lock.';
