"""Migrations build exactly what db/ describes, and go down and up again cleanly."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from prebuilds import dbsource, migrations
from tests.fixtures import clone_database, drop_database, with_database

# Everything an object in schema prebuilds can differ by, as comparable text.
SNAPSHOT_QUERIES = {
    "columns": """
        select c.table_name, c.column_name, c.data_type, c.is_nullable,
               coalesce(c.column_default, ''), coalesce(c.generation_expression, ''),
               c.ordinal_position::text
        from information_schema.columns as c
        where c.table_schema = 'prebuilds'
    """,
    "constraints": """
        select r.relname, con.conname, pg_get_constraintdef(con.oid)
        from pg_constraint as con
        left join pg_class as r on r.oid = con.conrelid
        where con.connamespace = 'prebuilds'::regnamespace
    """,
    "indexes": "select indexname, indexdef from pg_indexes where schemaname = 'prebuilds'",
    "functions": """
        select p.oid::regprocedure::text, pg_get_functiondef(p.oid)
        from pg_proc as p where p.pronamespace = 'prebuilds'::regnamespace
    """,
    "views": """
        select viewname, definition from pg_views where schemaname = 'prebuilds'
    """,
    "triggers": """
        select t.tgname, pg_get_triggerdef(t.oid)
        from pg_trigger as t join pg_class as c on c.oid = t.tgrelid
        where c.relnamespace = 'prebuilds'::regnamespace and not t.tgisinternal
    """,
    "types": """
        select t.typname, t.typtype::text from pg_type as t
        where t.typnamespace = 'prebuilds'::regnamespace
    """,
    "comments": """
        select c.relname, coalesce(a.attname, ''), d.description
        from pg_description as d
        join pg_class as c on c.oid = d.objoid and d.classoid = 'pg_class'::regclass
        left join pg_attribute as a on a.attrelid = c.oid and a.attnum = d.objsubid
        where c.relnamespace = 'prebuilds'::regnamespace
        union all
        select p.oid::regprocedure::text, '', d.description
        from pg_description as d join pg_proc as p on p.oid = d.objoid
        where p.pronamespace = 'prebuilds'::regnamespace
        union all
        select t.typname, '', d.description
        from pg_description as d join pg_type as t on t.oid = d.objoid
        where t.typnamespace = 'prebuilds'::regnamespace
    """,
    # Who may do what (SPEC 7): every grant on the schema, its tables, views and functions, with
    # never-granted objects shown as their defaults (so a revoke-then-grant-back compares equal).
    "privileges": """
        with objects as (
            select 'schema' as kind, n.nspname as name,
                   coalesce(n.nspacl, acldefault('n', n.nspowner)) as acl
            from pg_namespace as n where n.nspname = 'prebuilds'
            union all
            select 'relation', c.relname, coalesce(c.relacl, acldefault('r', c.relowner))
            from pg_class as c
            where c.relnamespace = 'prebuilds'::regnamespace and c.relkind in ('r', 'v', 'S')
            union all
            select 'function', p.oid::regprocedure::text,
                   coalesce(p.proacl, acldefault('f', p.proowner))
            from pg_proc as p where p.pronamespace = 'prebuilds'::regnamespace
        )
        select o.kind, o.name,
               case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end,
               a.privilege_type
        from objects as o cross join lateral aclexplode(o.acl) as a
    """,
    "data": """
        select 'users', u.id::text || ' ' || u.username || ' ' || u.is_system::text, ''
        from prebuilds.users as u
        union all
        select 'settings', s::text, '' from prebuilds.settings as s
    """,
}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {
            name: sorted(conn.execute(sql).fetchall()) for name, sql in SNAPSHOT_QUERIES.items()
        }


@pytest.fixture
def empty_db(server_url: str) -> Any:
    name = clone_database(server_url, "template0")
    yield with_database(server_url, name)
    drop_database(server_url, name)


def test_head_builds_exactly_what_db_describes(db_url: str, empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(dbsource.schema_script())
    from_db_dir = snapshot(empty_db)
    from_migrations = snapshot(db_url)
    for part in SNAPSHOT_QUERIES:
        assert from_migrations[part] == from_db_dir[part], (
            f"alembic head and db/ differ in {part}: after changing db/, write a new "
            "revision and run `prebuilds freeze <revision>` (README: Adding a migration)"
        )


def test_upgrade_downgrade_upgrade(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    first = snapshot(empty_db)
    migrations.downgrade(empty_db, "base")
    with psycopg.connect(empty_db) as conn:
        left = conn.execute(
            "select count(*) from pg_namespace where nspname = 'prebuilds'"
        ).fetchone()
        version = conn.execute("select count(*) from alembic_version").fetchone()
    assert left == (0,), "downgrade base left the prebuilds schema behind"
    assert version == (0,)
    migrations.upgrade(empty_db)
    assert snapshot(empty_db) == first


def test_driver_expects_the_head_revision() -> None:
    assert migrations.head_revision() == migrations.EXPECTED_REVISION


def test_every_sql_file_in_db_is_installed() -> None:
    assert dbsource.unlisted_files() == [], "add these files to db/manifest.txt"


def test_every_object_is_commented(conn: psycopg.Connection[Any]) -> None:
    missing = conn.execute(
        """
        select 'table ' || c.relname
        from pg_class as c
        where c.relnamespace = 'prebuilds'::regnamespace and c.relkind in ('r', 'v')
          and obj_description(c.oid, 'pg_class') is null
        union all
        select 'column ' || c.relname || '.' || a.attname
        from pg_class as c join pg_attribute as a on a.attrelid = c.oid
        where c.relnamespace = 'prebuilds'::regnamespace and c.relkind in ('r', 'v')
          and a.attnum > 0 and not a.attisdropped
          and col_description(c.oid, a.attnum) is null
        union all
        select 'function ' || p.oid::regprocedure::text
        from pg_proc as p
        where p.pronamespace = 'prebuilds'::regnamespace
          and obj_description(p.oid, 'pg_proc') is null
        """
    ).fetchall()
    assert missing == []


def test_each_downgrade_restores_exactly_what_its_revision_built(empty_db: str) -> None:
    revisions = migrations.revisions()
    built = {}
    for revision in revisions:
        migrations.upgrade(empty_db, revision)
        built[revision] = snapshot(empty_db)
    for revision in reversed(revisions[:-1]):
        migrations.downgrade(empty_db, revision)
        assert snapshot(empty_db) == built[revision], f"downgrade to {revision} differs"
