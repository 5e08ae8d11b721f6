"""`prebuilds run` as a real process: cycles per interval, clean shutdown on SIGTERM/SIGINT,
surviving a database restart; JSON logs; pruning of old runs (issue 3, sections 2 and 3)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import psycopg
import pytest

from prebuilds import migrations
from tests.fixtures import SQL_FIXTURES
from tests.support import run_cli, scalar, start_cli

Conn = psycopg.Connection[Any]

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
PG15_HINT = (
    "Debian's PostgreSQL 15 server binaries are missing ({missing}). Install them with: "
    "apt-get update && apt-get install -y postgresql-15"
)


# --- helpers (also used by test_metrics.py) ------------------------------------------------------


def _pump(stream: IO[str], sink: list[str]) -> None:
    for line in stream:
        sink.append(line.rstrip("\n"))


class LiveCli:
    """``prebuilds ARGS`` as a subprocess whose output lines are collected while it runs."""

    def __init__(self, *args: str, url: str | None) -> None:
        self.args = args
        self.proc = start_cli(*args, url=url)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [
            threading.Thread(target=_pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=_pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def __enter__(self) -> LiveCli:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._finish(10)

    def _finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        for pump in self._pumps:
            pump.join(timeout=5)
        return code

    def output(self) -> str:
        return "--- stdout:\n{}\n--- stderr:\n{}".format(
            "\n".join(self.stdout), "\n".join(self.stderr)
        )

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        """Poll ``condition``; fail with the output so far if the process exits or time is up."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                code = self._finish(5)
                if condition():
                    return
                pytest.fail(
                    f"prebuilds {' '.join(self.args)} exited with {code} before {what}\n"
                    + self.output()
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout} s\n{self.output()}")
            time.sleep(0.05)

    def wait_for_line(self, stream: list[str], text: str, *, after: int = 0) -> str:
        """The first line of ``stream`` (from index ``after`` on) containing ``text``."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in stream[after:] if text in line]
            return bool(found)

        self.wait_for(seen, repr(text))
        return found[0]

    def wait_until_started(self) -> None:
        """The signal handlers are installed once the loop says it reconciles."""
        self.wait_for_line(self.stdout, "reconciling every")

    def stop(self, signum: signal.Signals = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``signum`` and wait for the exit code."""
        self.proc.send_signal(signum)
        try:
            return self._finish(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self._finish(5)
            pytest.fail(f"still running {timeout} s after {signum.name}\n{self.output()}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def count(conn: Conn, query: str, params: Any = None) -> int:
    value: int = scalar(conn, query, params)
    return value


def driver_sessions(conn: Conn) -> list[tuple[str, str]]:
    """(application_name, state) of every session of the driver on the test's database."""
    rows = conn.execute(
        "select application_name, coalesce(state, '') from pg_stat_activity "
        "where datname = current_database() and application_name like 'prebuilds%'"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def assert_no_driver_session_left(conn: Conn) -> None:
    """Sessions of an exited process disappear within moments; none may stay behind."""
    deadline = time.monotonic() + 5
    while (sessions := driver_sessions(conn)) and time.monotonic() < deadline:
        assert "idle in transaction" not in {state for _, state in sessions}, sessions
        time.sleep(0.05)
    assert sessions == []
    assert count(conn, "select count(*) from pg_locks where locktype = 'advisory'") == 0


def active_preset(conn: Conn, template: str, desired: int) -> UUID:
    value: UUID = scalar(conn, "select fixture.active_preset(%s, %s)", (template, desired))
    return value


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Every line parsed as one JSON object carrying ts, level, message and event."""
    records = []
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"ts", "level", "message", "event"} <= record.keys(), line
        records.append(record)
    return records


# --- the loop --------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_applies_a_cycle_per_interval_and_stops_on_a_signal(
    conn: Conn, db_url: str, signum: signal.Signals
) -> None:
    active_preset(conn, "web", 2)
    with LiveCli("run", "--interval", "0.2s", url=db_url) as loop:
        loop.wait_until_started()
        loop.wait_for(
            lambda: count(conn, "select count(*) from prebuilds.reconciliation_runs") >= 3,
            "three recorded runs",
        )
        code = loop.stop(signum)

    assert code == 0, loop.output()
    assert loop.stderr == []
    assert f"prebuilds: {signum.name} received: finishing the actions in flight" in loop.output()
    assert loop.stdout[-1].startswith("prebuilds: stopped after ")
    runs = conn.execute(
        "select status, actions_applied from prebuilds.reconciliation_runs order by id"
    ).fetchall()
    assert len(runs) >= 3
    assert runs[0] == ("succeeded", 2)
    assert all(r == ("succeeded", 0) for r in runs[1:]), runs
    assert count(conn, "select count(*) from prebuilds.workspaces") == 2
    assert_no_driver_session_left(conn)


def test_sigterm_during_a_cycle_finishes_the_action_in_flight_and_leaves_nothing_open(
    conn: Conn, db_url: str
) -> None:
    active_preset(conn, "big", 300)
    # Each create takes at least 50 ms, so the cycle is still applying when the signal comes.
    conn.execute(
        """
        create function public.slow_create() returns trigger language plpgsql as $$
        begin
            perform pg_sleep(0.05);
            return new;
        end $$;
        create trigger slow_create before insert on prebuilds.workspaces
        for each row execute function public.slow_create();
        """
    )
    with LiveCli("run", "--interval", "60s", url=db_url) as loop:
        loop.wait_until_started()
        loop.wait_for(
            lambda: count(conn, "select count(*) from prebuilds.reconciliation_action_log") >= 5,
            "five applied actions",
        )
        # While it applies: the lock connection and at most two write connections (and the
        # loop's listen connection, SPEC 6.1), and a write connection is never left inside a
        # transaction.
        for _ in range(5):
            sessions = driver_sessions(conn)
            cycle_sessions = [x for x in sessions if x[0] != "prebuilds-reconciler-listen"]
            assert len(cycle_sessions) <= 3, sessions
            assert len(sessions) - len(cycle_sessions) <= 1, sessions
            assert ("prebuilds-reconciler-write", "idle in transaction") not in sessions
            time.sleep(0.02)
        signalled = time.monotonic()
        code = loop.stop(signal.SIGTERM)
        took = time.monotonic() - signalled

    assert code == 0, loop.output()
    assert took < 5, f"took {took:.1f} s to stop"
    assert "interrupted, the rest is left for the next cycle" in loop.output()
    assert loop.stdout[-1].startswith("prebuilds: stopped after 1 cycle")

    run = conn.execute(
        "select id, status, actions_planned, actions_applied, actions_skipped, actions_failed "
        "from prebuilds.reconciliation_runs"
    ).fetchall()
    assert len(run) == 1, run
    run_id, status, planned, applied, skipped, failed = run[0]
    assert status == "interrupted"
    assert planned == 300
    assert 5 <= applied < planned
    assert (skipped, failed) == (0, 0)
    # Every applied action has its log row, and every log row is an applied action.
    logged = conn.execute(
        "select action, outcome, count(*) from prebuilds.reconciliation_action_log "
        "where run_id = %s group by 1, 2",
        (run_id,),
    ).fetchall()
    assert logged == [("create", "applied", applied)]
    assert count(conn, "select count(*) from prebuilds.workspaces") == applied
    assert (
        count(
            conn,
            "select count(*) from prebuilds.workspaces as w "
            "join prebuilds.reconciliation_action_log as l "
            "on l.workspace_id = w.id and l.run_id = %s",
            (run_id,),
        )
        == applied
    )
    assert_no_driver_session_left(conn)

    # The rest was left for the next cycle, which can take the lock.
    conn.execute("drop trigger slow_create on prebuilds.workspaces")
    rest = run_cli("reconcile", url=db_url)
    assert rest.returncode == 0, rest.stderr
    assert f"applied 0 cancel, 0 delete, {300 - applied} create" in rest.stdout
    assert count(conn, "select count(*) from prebuilds.workspaces") == 300


class PrivateCluster:
    """A throwaway Debian PostgreSQL 15 cluster on a Unix socket in its own /tmp directory."""

    def __init__(self) -> None:
        missing = [
            str(p) for p in (PG15_BIN / "initdb", PG15_BIN / "pg_ctl") if not p.is_file()
        ] + [tool for tool in ("runuser",) if shutil.which(tool) is None]
        if missing:
            pytest.fail(PG15_HINT.format(missing=", ".join(missing)), pytrace=False)
        if os.geteuid() != 0:
            pytest.fail("starting a private cluster needs root (runuser -u postgres)")
        self.dir = Path(tempfile.mkdtemp(prefix="prebuilds-pg15-", dir="/tmp"))
        shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self.port = random.randint(20000, 60000)
        self.url = f"postgresql://postgres@/postgres?host={self.dir}&port={self.port}"
        self.running = False

    def _as_postgres(self, *command: str) -> None:
        proc = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{' '.join(command)} failed:\n{proc.stdout}{proc.stderr}\n{tail}")

    def init(self) -> None:
        self._as_postgres(
            str(PG15_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-k {self.dir} -c listen_addresses='' -p {self.port} -c fsync=off"
        self._as_postgres(
            str(PG15_BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "server.log"), "-w", "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(PG15_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def remove(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def test_the_loop_keeps_going_when_the_database_restarts() -> None:
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        migrations.upgrade(cluster.url)
        with psycopg.connect(cluster.url, autocommit=True) as setup:
            setup.execute(SQL_FIXTURES.read_text())
            active_preset(setup, "web", 1)

        def runs() -> int:
            with psycopg.connect(cluster.url, connect_timeout=2) as c:
                return count(c, "select coalesce(max(id), 0) from prebuilds.reconciliation_runs")

        with LiveCli("run", "--interval", "0.3s", url=cluster.url) as loop:
            loop.wait_until_started()
            loop.wait_for(lambda: runs() >= 2, "two runs before the restart")
            errors_before = len(loop.stderr)
            cluster.stop("fast")

            # (A cycle in flight at the stop may fail differently first.)
            failure = loop.wait_for_line(
                loop.stderr, "cycle failed: cannot connect to the database", after=errors_before
            )
            assert failure.endswith("; retrying in 0.3 s"), failure  # capped by the interval
            # Still retrying, not dead.
            loop.wait_for(
                lambda: len([e for e in loop.stderr if "cycle failed:" in e]) >= 3,
                "three failed attempts",
            )
            assert loop.proc.poll() is None
            runs_before_restart = [
                line for line in loop.stdout if line.startswith("prebuilds: run")
            ]

            cluster.start()
            last_before = runs()
            loop.wait_for(lambda: runs() >= last_before + 2, "two runs after the restart")
            loop.wait_for(
                lambda: (
                    len([line for line in loop.stdout if line.startswith("prebuilds: run")])
                    > len(runs_before_restart)
                ),
                "a cycle logged after the restart",
            )
            code = loop.stop(signal.SIGTERM)

        assert code == 0, loop.output()
        assert loop.stdout[-1].startswith("prebuilds: stopped after ")
        with psycopg.connect(cluster.url) as c:
            assert count(c, "select count(*) from prebuilds.workspaces") == 1
            assert driver_sessions(c) == []
    finally:
        cluster.remove()


# --- JSON logs -------------------------------------------------------------------------------


def test_reconcile_json_logs_are_one_object_per_line(conn: Conn, db_url: str) -> None:
    surplus = active_preset(conn, "surplus", 1)
    for name, age in (("old", "2 hours"), ("mid", "1 hour"), ("new", "1 minute")):
        conn.execute(
            "select fixture.prebuild(%s, now() - %s::interval, 'running', true, "
            "prebuilds.system_user_id(), %s)",
            (surplus, age, name),
        )
    active_preset(conn, "fresh", 2)
    conn.execute(
        """
        create function public.refuse_delete() returns trigger language plpgsql as $$
        begin
            if new.transition = 'delete' and new.workspace_id = fixture.ws('mid') then
                raise exception 'test trigger: refusing to delete mid';
            end if;
            return new;
        end $$;
        create trigger refuse_delete before insert on prebuilds.workspace_builds
        for each row execute function public.refuse_delete();
        """
    )

    proc = run_cli("reconcile", "-v", "--log-format", "json", url=db_url)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr == ""
    records = json_lines(proc.stdout.splitlines())
    for record in records:
        assert record["level"] in ("info", "warning")
        assert record["ts"].endswith("+00:00")
    actions = [r for r in records if r["event"] == "action"]
    assert sorted((r["action"], r["outcome"]) for r in actions) == [
        ("create", "applied"),
        ("create", "applied"),
        ("delete", "applied"),
        ("delete", "failed"),
    ]
    failed = next(r for r in actions if r["outcome"] == "failed")
    assert failed["level"] == "warning"
    assert failed["error"] == "test trigger: refusing to delete mid"
    assert failed["workspace_id"] == str(scalar(conn, "select fixture.ws('mid')"))
    (cycle,) = [r for r in records if r["event"] == "cycle"]
    run_id = scalar(conn, "select id from prebuilds.reconciliation_runs")
    assert (cycle["run_id"], cycle["applied"], cycle["failed"]) == (run_id, 3, 1)
    assert cycle["status"] == "done"


def test_run_json_logs_are_one_object_per_line(conn: Conn, db_url: str) -> None:
    active_preset(conn, "web", 1)
    with LiveCli(
        "run", "--interval", "0.2s", "--log-format", "json", "--metrics-port", str(free_port()),
        "--metrics-address", "127.0.0.1", url=db_url,
    ) as loop:  # fmt: skip
        loop.wait_for(
            lambda: sum('"event": "cycle"' in line for line in loop.stdout) >= 2, "two cycles"
        )
        code = loop.stop(signal.SIGTERM)

    assert code == 0, loop.output()
    assert loop.stderr == []
    records = json_lines(loop.stdout)
    events = [r["event"] for r in records]
    # A cycle in flight when the signal came still reports before the loop stops.
    assert events[-1] == "stopped" and "stopping" in events[-3:-1]
    assert events[:2] == ["metrics_serving", "started"]
    cycles = [r for r in records if r["event"] == "cycle"]
    assert len(cycles) >= 2
    run_ids = [r["run_id"] for r in cycles]
    assert run_ids == sorted(run_ids) and len(set(run_ids)) == len(run_ids)
    assert (cycles[0]["applied"], cycles[0]["failed"]) == (1, 0)
    assert all((c["applied"], c["failed"]) == (0, 0) for c in cycles[1:])
    assert records[-1]["cycles"] == len(cycles)


# --- retention -------------------------------------------------------------------------------


def test_a_cycle_prunes_runs_older_than_the_retention_with_their_actions(
    conn: Conn, db_url: str
) -> None:
    conn.execute("update prebuilds.settings set run_retention = interval '1 day'")
    ids: dict[str, int] = {}
    for label, age in (("ancient", "40 days"), ("old", "25 hours"), ("recent", "23 hours")):
        ids[label] = scalar(
            conn,
            "insert into prebuilds.reconciliation_runs (started_at, finished_at, status) "
            "values (now() - %s::interval, now() - %s::interval, 'succeeded') returning id",
            (age, age),
        )
        conn.execute(
            "insert into prebuilds.reconciliation_action_log "
            "(run_id, seq, preset_id, action, reason, outcome) "
            "select %s, s, gen_random_uuid(), 'create', 'missing', 'applied' "
            "from generate_series(1, 3) as s",
            (ids[label],),
        )

    proc = run_cli("reconcile", url=db_url)

    assert proc.returncode == 0, proc.stderr
    kept = conn.execute("select id from prebuilds.reconciliation_runs order by id").fetchall()
    assert [r[0] for r in kept][:1] == [ids["recent"]]
    assert len(kept) == 2  # the recent one and the cycle that just ran
    assert conn.execute(
        "select run_id, count(*) from prebuilds.reconciliation_action_log group by run_id"
    ).fetchall() == [(ids["recent"], 3)]


def test_run_keeps_its_connections_between_cycles_and_replaces_a_dead_one(
    conn: Conn, db_url: str
) -> None:
    """`prebuilds run` plans on one kept connection (a warm backend), never more than three in
    all, and replaces the plan connection when the server closed it between cycles (issue 9)."""
    active_preset(conn, "web", 1)
    proc = start_cli("run", "--interval", "0.3s", url=db_url)
    try:
        deadline = time.monotonic() + 30
        while count(conn, "select count(*) from prebuilds.reconciliation_runs") < 4:
            assert time.monotonic() < deadline, "four cycles"
            time.sleep(0.05)
        pids = [
            r[0]
            for r in conn.execute(
                "select lock_pid from prebuilds.reconciliation_runs order by id"
            ).fetchall()
        ]
        assert len(set(pids)) == 1, pids
        # The plan connection and the write pool (at most 3), and the listen connection.
        sessions = count(
            conn,
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and application_name like 'prebuilds-%%' "
            "and application_name <> 'prebuilds-reconciler-listen'",
        )
        assert sessions <= 3
        assert (
            count(
                conn,
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and application_name = 'prebuilds-reconciler-listen'",
            )
            == 1
        )
        # The server ends the kept plan connection between cycles: the next cycle reconnects.
        conn.execute("select pg_terminate_backend(%s, 5000)", (pids[0],))
        seen = len(pids)
        # Finished runs only: a run's row exists from its start, so the newest may be running.
        finished = (
            "select lock_pid, status from prebuilds.reconciliation_runs "
            "where id > %s and status <> 'running' order by id"
        )
        while len(later := conn.execute(finished, (seen,)).fetchall()) < 3:
            assert time.monotonic() < deadline + 30, "cycles after the kill"
            time.sleep(0.05)
        # (A cycle under way when the kill came ends failed, having lost its lock; the ones
        # after it run on a new connection.)
        assert later[-2:] == [(later[-1][0], "succeeded")] * 2, later
        assert later[-1][0] != pids[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
