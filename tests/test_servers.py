"""Smoke tests of the fault-test servers (tests/servers.py): a private cluster survives fast and
immediate restarts with its data, and PgBouncer reaches any database of the session server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.servers import PrivateDb, RestartableServer, server_major
from tests.support import scalar


def backend_pid(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        pid: int = scalar(conn, "select pg_backend_pid()")
        return pid


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_keeps_data_and_accepts_connections(
    restartable: RestartableServer, server_url: str, mode: str
) -> None:
    assert server_major(restartable.url) == server_major(server_url)
    with psycopg.connect(restartable.url, autocommit=True) as conn:
        conn.execute("create table kept (n int)")
        conn.execute("insert into kept values (1), (2)")
        # An open connection dies with the server.
        with pytest.raises(psycopg.OperationalError):
            restartable.restart(mode)
            conn.execute("select 1")
    with psycopg.connect(restartable.url, autocommit=True) as conn:
        assert scalar(conn, "select sum(n) from kept") == 2 + 1
    print(
        f"\n{mode} restart of a private PostgreSQL {restartable.major}: "
        f"{restartable.timings[f'restart {mode}']:.2f}s "
        f"(initdb {restartable.timings['initdb']:.2f}s, start {restartable.timings['start']:.2f}s)"
    )


def test_stop_then_start(restartable: RestartableServer) -> None:
    restartable.stop()
    assert not restartable.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(restartable.url, connect_timeout=2)
    restartable.start()
    assert restartable.is_running()
    assert backend_pid(restartable.url) > 0


def test_private_db_is_migrated_with_the_fixture_vocabulary(private_db: PrivateDb) -> None:
    with psycopg.connect(private_db.url, autocommit=True) as conn:
        preset = scalar(conn, "select fixture.active_preset('smoke', 3)")
        assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 3
        assert preset is not None
    private_db.server.restart("immediate")
    with psycopg.connect(private_db.url, autocommit=True) as conn:
        assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 3


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_pgbouncer_reaches_the_test_database(
    pgbouncer_url: Callable[..., str], db_url: str, mode: str
) -> None:
    url = pgbouncer_url(db_url, mode)
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        row: Any = conn.execute("select current_database(), current_user").fetchone()
        assert row == (psycopg.conninfo.conninfo_to_dict(db_url)["dbname"], "postgres")
        assert scalar(conn, "select count(*) from prebuilds.settings") == 1
