-- Every table, view, column and function of schema prebuilds carries `comment on` (SPEC 3);
-- so do the schema itself and its composite type (whose attributes count as columns).
begin;
select plan(6);

select is_empty(
    $$
    select c.relname
    from pg_class as c
    inner join pg_namespace as n on c.relnamespace = n.oid
    where
        n.nspname = 'prebuilds'
        and c.relkind in ('r', 'p', 'v', 'm', 'f')
        and obj_description(c.oid, 'pg_class') is null
    $$,
    'every table and view has a comment'
);

select is_empty(
    $$
    select c.relname || '.' || a.attname
    from pg_class as c
    inner join pg_namespace as n on c.relnamespace = n.oid
    inner join pg_attribute as a on c.oid = a.attrelid
    where
        n.nspname = 'prebuilds'
        and c.relkind in ('r', 'p', 'v', 'm', 'f', 'c')
        and a.attnum > 0
        and not a.attisdropped
        and col_description(c.oid, a.attnum) is null
    $$,
    'every column of every table, view and composite type has a comment'
);

select is_empty(
    $$
    select p.oid::regprocedure::text
    from pg_proc as p
    inner join pg_namespace as n on p.pronamespace = n.oid
    where n.nspname = 'prebuilds' and obj_description(p.oid, 'pg_proc') is null
    $$,
    'every function has a comment'
);

select is_empty(
    $$
    select t.typname
    from pg_type as t
    inner join pg_namespace as n on t.typnamespace = n.oid
    left join pg_class as c on t.typrelid = c.oid
    where
        n.nspname = 'prebuilds'
        and t.typtype in ('c', 'd', 'e')
        and coalesce(c.relkind, 'c') = 'c'
        and obj_description(t.oid, 'pg_type') is null
    $$,
    'every type defined on its own has a comment'
);

select isnt(
    obj_description('prebuilds'::regnamespace, 'pg_namespace'),
    null,
    'the schema has a comment'
);

select isnt_empty(
    $$
    select from pg_proc as p
    inner join pg_namespace as n on p.pronamespace = n.oid
    where n.nspname = 'prebuilds' and p.proname = 'reconciliation_actions_at'
    $$,
    'the checks above do look at schema prebuilds'
);

select * from finish();
rollback;
