"""Measurements: our design against the per-preset baseline, side by side on the same database.

Everything is measured in one run, interleaved (ours, baseline, ours, …) after a warm-up, so
the ratios hold even on a noisy machine; absolute times are this machine's. See README,
"Performance".
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import baseline
from bench.fleet import SCENARIOS, build_fleet
from prebuilds import cycle, locks, migrations
from prebuilds.queries import parse, query
from prebuilds.simulator import SimulatedProvisioner

# --- databases ---------------------------------------------------------------------------------


def with_database(url: str, dbname: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        statement = sql.SQL("create database {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" template {}").format(sql.Identifier(template))
        admin.execute(statement)
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def build_scenario(server_url: str, name: str, say: Callable[[str], None]) -> str:
    """A database holding the scenario's fleet, named bench_<scenario>; returns its name."""
    db = f"bench_{name}"
    url = create_database(server_url, db)
    migrations.upgrade(url)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        summary = build_fleet(conn, SCENARIOS[name])
    say(
        f"  built {name}: {summary.presets:,} presets, {summary.live_prebuilds:,} live prebuilds, "
        f"{summary.user_workspaces:,} user workspaces, {summary.builds:,} builds "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return db


# --- plan timing -------------------------------------------------------------------------------


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds * 1000)

    @property
    def p50(self) -> float:
        return statistics.median(self.values)

    @property
    def p95(self) -> float:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


_EXPLAIN_TIMES = re.compile(r"(Planning|Execution) Time: ([\d.]+) ms")


def explain_ms(conn: psycopg.Connection[Any], statement: Any, params: Any = None) -> float:
    """Server time of one statement: EXPLAIN ANALYZE's planning plus execution time."""
    explain = sql.SQL("explain (analyze, timing off, summary) ") + (
        statement if isinstance(statement, sql.Composable) else sql.SQL(statement)
    )
    lines = [r[0] for r in conn.execute(explain, params).fetchall()]
    return sum(float(m[2]) for line in lines if (m := _EXPLAIN_TIMES.search(line)))


def prepare_plan_session(conn: psycopg.Connection[Any], jit: str | None) -> None:
    """Both designs plan in a repeatable-read, read-only transaction; ``jit`` overrides the
    server's setting for the session."""
    if jit:
        conn.execute(sql.SQL("set jit = {}").format(sql.Literal(jit)))
        conn.commit()
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True


def ours_plan(url: str, jit: str | None = None) -> tuple[float, float, int]:
    """One plan read as the driver does it (fresh connection, repeatable read, lock, read_plan):
    client seconds, server milliseconds, actions planned."""
    with psycopg.connect(url, application_name="bench-ours") as conn:
        prepare_plan_session(conn, jit)
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(query("take_lock"), cycle.take_lock_params(cycle.Limits()))
            plan = cycle.read_plan(conn)
        client = time.perf_counter() - started
        with conn.transaction():
            server = explain_ms(conn, query("read_plan"))
    return client, server, len(plan.actions)


class CapturingCursor(baseline.CountingCursor):
    """Records the statements the baseline's snapshot sends, to replay them under EXPLAIN."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        captured = getattr(self.connection, "captured", None)
        if isinstance(captured, list):
            captured.append((query, params))
        return super().execute(query, params, **kwargs)


def baseline_plan(url: str, jit: str | None = None) -> tuple[float, float, int]:
    """One baseline lock + snapshot + per-preset calculation: client seconds, server ms, actions."""
    conn = baseline.connect_counting(url, baseline.RoundTrips(), "bench-baseline")
    conn.cursor_factory = CapturingCursor
    captured: list[tuple[Any, Any]] = []
    with conn:
        prepare_plan_session(conn, jit)
        conn.captured = captured  # type: ignore[attr-defined]
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(baseline.query("take_lock"), {"key": locks.RECONCILE})
            snapshot = baseline.read_snapshot(conn)
            actions = baseline.plan(snapshot, snapshot.now)
        client = time.perf_counter() - started
        conn.captured = None  # type: ignore[attr-defined]
        with conn.transaction():
            server = sum(explain_ms(conn, q, p) for q, p in captured)
    return client, server, len(actions)


@dataclass
class PlanResult:
    ours_client: Samples = field(default_factory=Samples)
    ours_server: list[float] = field(default_factory=list)
    base_client: Samples = field(default_factory=Samples)
    base_server: list[float] = field(default_factory=list)
    ours_actions: int = 0
    base_actions: int = 0


def measure_plans(url: str, cycles: int, warmup: int = 3, jit: str | None = None) -> PlanResult:
    result = PlanResult()
    for _ in range(warmup):
        ours_plan(url, jit)
        baseline_plan(url, jit)
    for _ in range(cycles):
        client, server, n = ours_plan(url, jit)
        result.ours_client.add(client)
        result.ours_server.append(server)
        result.ours_actions = n
        client, server, n = baseline_plan(url, jit)
        result.base_client.add(client)
        result.base_server.append(server)
        result.base_actions = n
    return result


def jit_facts(url: str) -> tuple[bool, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("select pg_jit_available(), current_setting('jit')").fetchone()
    assert row is not None
    return bool(row[0]), str(row[1])


# --- applying N actions ------------------------------------------------------------------------


@contextmanager
def connection_sampler(server_url: str, dbname: str) -> Iterator[list[int]]:
    """Samples the number of client connections to ``dbname`` every 2 ms; yields the samples."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "select count(*) from pg_stat_activity where datname = %s "
                    "and backend_type = 'client backend' and pid <> pg_backend_pid()",
                    (dbname,),
                ).fetchone()
                samples.append(int(row[0]) if row else 0)
                stop.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def settle(url: str, max_cycles: int = 20) -> int:
    """Converge a fleet (our cycles + the simulated provisioner, nobody failing) until its plan
    holds no cancel, delete or create; backoff waits are shortened for it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "update prebuilds.settings set backoff_interval = interval '1 millisecond', "
            "failure_hard_limit = 0"
        )
        provisioner = SimulatedProvisioner(conn, "bench-settle")
        for n in range(1, max_cycles + 1):
            result = cycle.run_cycle(url)
            provisioner.drain()
            if not any(o.action.action in ("cancel", "delete", "create") for o in result.outcomes):
                return n
    raise RuntimeError(f"the fleet did not settle in {max_cycles} cycles")


def add_creates(url: str, n: int) -> None:
    """A new active template whose presets want ``n`` prebuilds in all (10 per preset)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query_bench("add_creates"), {"creates": n})


@cache
def _harness_queries() -> dict[str, str]:
    return parse((Path(__file__).parent / "harness.sql").read_text())


def query_bench(name: str) -> sql.SQL:
    return sql.SQL(_harness_queries()[name])


@dataclass
class ApplyResult:
    n: int
    seconds: float  #: the whole cycle
    apply_seconds: float  #: applying the actions only
    applied: int
    peak_connections: int
    statements: int
    round_trips: int

    @property
    def rate(self) -> float:
        return self.applied / self.apply_seconds if self.apply_seconds else 0.0


class _CountingDriverConnection(baseline.CountingConnection):
    counter = baseline.RoundTrips()


def apply_ours(server_url: str, template: str, n: int) -> ApplyResult:
    db = f"bench_run_{n}"
    url = create_database(server_url, db, template)
    counter = baseline.RoundTrips()
    _CountingDriverConnection.counter = counter
    cycle.connection_class = _CountingDriverConnection
    cycle.write_cursor_class = baseline.CountingClientCursor
    try:
        with connection_sampler(server_url, db) as samples:
            started = time.perf_counter()
            result = cycle.run_cycle(url)
            seconds = time.perf_counter() - started
    finally:
        cycle.connection_class = psycopg.Connection
        cycle.write_cursor_class = psycopg.ClientCursor
        drop_database(server_url, db)
    return ApplyResult(
        n,
        seconds,
        result.apply_seconds,
        result.tally("applied"),
        max(samples, default=0),
        counter.statements,
        counter.round_trips,
    )


def apply_baseline(server_url: str, template: str, n: int) -> ApplyResult:
    db = f"bench_run_{n}"
    url = create_database(server_url, db, template)
    try:
        with connection_sampler(server_url, db) as samples:
            started = time.perf_counter()
            result = baseline.run_baseline_cycle(url)
            seconds = time.perf_counter() - started
    finally:
        drop_database(server_url, db)
    return ApplyResult(
        n,
        seconds,
        result.apply_seconds,
        result.applied,
        max(samples, default=0),
        result.statements,
        result.round_trips,
    )


def apply_physical(server_url: str, template: str, n: int) -> ApplyResult:
    """The ceiling: the rows a create writes, as plain one-statement transactions over two
    connections, with nothing planned or checked."""
    db = f"bench_run_{n}"
    url = create_database(server_url, db, template)
    try:
        with psycopg.connect(url) as conn:
            presets = [r[0] for r in conn.execute(query_bench("bench_presets")).fetchall()]
        work = iter(presets[i % len(presets)] for i in range(n))
        lock = threading.Lock()

        def writer() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                while True:
                    with lock:
                        preset = next(work, None)
                    if preset is None:
                        return
                    conn.execute(query_bench("physical_create"), {"preset_id": preset})

        with connection_sampler(server_url, db) as samples:
            started = time.perf_counter()
            threads = [threading.Thread(target=writer) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - started
    finally:
        drop_database(server_url, db)
    return ApplyResult(n, seconds, seconds, n, max(samples, default=0), n, n)
