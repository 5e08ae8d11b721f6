-- The licence check and the fence key are inlined into their callers (no `set search_path` on
-- these `begin atomic` helpers, whose bodies are bound at creation): a plan that calls them
-- shows the advisory-lock call itself, not the functions. Each action runs them, and
-- PostgreSQL 15 would otherwise plan each call's body afresh.
begin;
select plan(4);

create temp table plans (caller text, plan text) on commit drop;

do $$
declare
    v_line text;
    v_plan text := '';
begin
    for v_line in execute
        'explain (verbose, costs off) select prebuilds.reconcile_lock_held($1, $2)'
        using 42::bigint, 7
    loop
        v_plan := v_plan || v_line || E'\n';
    end loop;
    insert into plans values ('reconcile_lock_held', v_plan);
    v_plan := '';
    for v_line in execute
        'explain (verbose, costs off) select prebuilds.write_fence_key(g.k, 1) '
        || 'from generate_series(1::bigint, 2::bigint) as g (k)'
    loop
        v_plan := v_plan || v_line || E'\n';
    end loop;
    insert into plans values ('write_fence_key', v_plan);
end;
$$;

select ok(
    (
        select p.plan ~ 'pg_try_advisory_xact_lock_shared' from plans as p
        where p.caller = 'reconcile_lock_held'
    ),
    'reconcile_lock_held: the plan calls pg_try_advisory_xact_lock_shared directly'
);
select ok(
    (
        select p.plan !~ 'reconcile_lock_held|write_fence_key' from plans as p
        where p.caller = 'reconcile_lock_held'
    ),
    'reconcile_lock_held: neither function is called as a function'
);
select ok(
    (
        select p.plan !~ 'write_fence_key' and p.plan ~ '>> 32' from plans as p
        where p.caller = 'write_fence_key'
    ),
    'write_fence_key: its expression is inlined into the caller''s plan'
);
select is(
    prebuilds.write_fence_key(x'0000000100000002'::bigint, 1)
    || ',' || prebuilds.write_fence_key(x'0000000100000002'::bigint, 2)
    || ',' || prebuilds.write_fence_key(-1, 1) || ',' || prebuilds.write_fence_key(-1, 2),
    '1,2,-1,-1',
    'write_fence_key still splits a key into its high and low 32 bits'
);

select * from finish();
rollback;
