"""Logs (issue 7, item 7): with --log-format json the output is JSON only, library loggers
included; in text mode a library's warning is one `prebuilds: …` line on stderr."""

from __future__ import annotations

import json
import logging
import subprocess
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from prebuilds.logs import configure, log
from tests.support import run_cli

Conn = psycopg.Connection[Any]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() changes process-wide logging; put it back for the next test."""
    root = logging.getLogger()
    saved = (list(root.handlers), list(log.handlers), log.propagate, log.level)
    yield
    logging.captureWarnings(False)
    root.handlers[:] = saved[0]
    log.handlers[:] = saved[1]
    log.propagate, log.level = saved[2], saved[3]


def lose_a_pooled_connection(url: str, conn: Conn) -> None:
    """Make psycopg_pool log: the server ends a pooled connection's backend while it is lent
    out, so the pool logs "discarding closed connection" (a warning) when it comes back."""
    with ConnectionPool(url, min_size=1, max_size=1, open=True, timeout=10) as pool:
        with pool.connection() as pooled:
            pid = pooled.info.backend_pid
            conn.execute("select pg_terminate_backend(%s)", (pid,))
            with pytest.raises(psycopg.OperationalError):
                pooled.execute("select 1")
        pool.check()  # the replacement connection is made before the pool closes


def test_json_logs_carry_library_records_as_json(
    restore_logging: None, capsys: pytest.CaptureFixture[str], db_url: str, conn: Conn
) -> None:
    configure("json")
    log.info("before", extra={"event": "test"})
    lose_a_pooled_connection(db_url, conn)
    logging.getLogger("some.library").error("an error with\na second line")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a deprecated thing", DeprecationWarning, stacklevel=1)
    log.info("after", extra={"event": "test"})

    out, err = capsys.readouterr()
    assert err == ""
    records = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "message", "event"} <= r.keys() for r in records), records
    assert records[0]["message"] == "before" and records[-1]["message"] == "after"
    by_logger = {r.get("logger"): r for r in records}
    discarded = by_logger["psycopg.pool"]
    assert discarded["level"] == "warning" and discarded["event"] == "log"
    assert discarded["message"].startswith("discarding closed connection")
    assert by_logger["some.library"]["message"] == "an error with\na second line"
    assert "a deprecated thing" in by_logger["py.warnings"]["message"]
    # Libraries below warning level stay quiet (psycopg_pool logs every borrow at info).
    assert all(r["level"] != "info" for r in records if "logger" in r)


def test_text_logs_put_library_warnings_on_stderr_as_one_prebuilds_line(
    restore_logging: None, capsys: pytest.CaptureFixture[str], db_url: str, conn: Conn
) -> None:
    configure("text")
    lose_a_pooled_connection(db_url, conn)
    logging.getLogger("some.library").warning("two\nlines")
    log.info("ours")

    out, err = capsys.readouterr()
    assert out == "prebuilds: ours\n"
    lines = err.splitlines()
    assert lines[0].startswith("prebuilds: psycopg.pool: discarding closed connection"), lines
    assert lines[1:] == ["prebuilds: some.library: two lines"]


def test_configure_twice_does_not_duplicate_lines(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("json")
    configure("text")
    configure("json")
    logging.getLogger("psycopg").warning("once")
    log.warning("ours once")
    out, err = capsys.readouterr()
    assert err == ""
    assert [json.loads(line)["message"] for line in out.splitlines()] == ["once", "ours once"]


def test_an_unexpected_error_in_json_mode_is_one_json_record(conn: Conn, db_url: str) -> None:
    """A missing settings row broke `reconcile` with a traceback; whatever it does now, the JSON
    output stays JSON."""
    conn.execute("alter table prebuilds.settings disable trigger user")
    conn.execute("delete from prebuilds.settings")
    conn.execute("alter table prebuilds.settings enable trigger user")
    for args in (["reconcile"], ["plan"]):
        proc: subprocess.CompletedProcess[str] = run_cli(*args, "--log-format", "json", url=db_url)
        assert proc.returncode != 0, (args, proc.stdout)
        assert proc.stderr == "", proc.stderr
        records = [json.loads(line) for line in proc.stdout.splitlines()]
        assert records and records[-1]["level"] == "error", records
