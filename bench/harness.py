"""Measurements: our design against the per-preset baseline, side by side on the same database.

Everything is measured in one run, interleaved (ours, baseline, ours, …) after a warm-up, so
the ratios hold even on a noisy machine; absolute times are this machine's. See README,
"Performance".
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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


@contextmanager
def server() -> Iterator[str]:
    """The server in DATABASE_URL (a superuser URL: benchmarks create databases), else an
    embedded PostgreSQL 18 for the duration."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    from prebuilds.embedded import embedded_server

    with embedded_server() as url:
        yield url


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


# --- the baseline's database: Coder's indexes, not ours ----------------------------------------

#: Run in the baseline's copy of a scenario database (never in ours, never by the product): the
#: indexes Coder had on these tables when the seed issue was filed (coder/coder dump.sql of late
#: October 2025, mapped to our names), instead of our partial indexes. Kept as they are, because
#: Coder has an equivalent: primary keys, workspace_builds unique (workspace_id, build_number)
#: and unique (job_id), workspaces (owner_id) where not deleted (Coder: unique (owner_id,
#: lower(name)) where deleted = false), workspace_agents unique (job_id, name) (Coder: agents by
#: resource_id, resources by job_id), templates unique (organization_id, name) where not
#: deleted, template_versions unique (template_id, name), preset_schedules (preset_id).
CODER_INDEXES = (
    # Ours, no Coder counterpart: live prebuilds by current preset (a maintained pointer).
    "drop index prebuilds.workspaces_live_prebuilds_idx",
    # Ours: the provisioner queue; Coder's nearest is provisioner_jobs_started_at_idx below.
    "drop index prebuilds.provisioner_jobs_queue_idx",
    # Coder's idx_unique_preset_name is (name, template_version_id), ours the other way round.
    "alter table prebuilds.presets drop constraint presets_template_version_id_name_key",
    "create unique index coder_idx_unique_preset_name on prebuilds.presets "
    "(name, template_version_id)",
    # Coder's idx_workspace_builds_initiator_id (migration 000363, PR #19694, September 2025).
    "create index coder_idx_workspace_builds_initiator_id on prebuilds.workspace_builds "
    "(initiator_id)",
    # Coder's workspace_template_id_idx.
    "create index coder_workspace_template_id_idx on prebuilds.workspaces (template_id) "
    "where not deleted",
    # Coder's idx_provisioner_jobs_status (job_status is a stored generated column there too).
    "create index coder_idx_provisioner_jobs_status on prebuilds.provisioner_jobs (status)",
    # Coder's provisioner_jobs_started_at_idx.
    "create index coder_provisioner_jobs_started_at_idx on prebuilds.provisioner_jobs "
    "(started_at) where started_at is null",
    "vacuum analyze",
)


def coder_database(server_url: str, db: str) -> str:
    """A copy of ``db`` for the baseline, named ``<db>_coder``, with ``CODER_INDEXES`` applied;
    returns its name. Both designs then read the same rows, each with its own schema's indexes."""
    name = f"{db}_coder"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        admin.execute(
            sql.SQL("create database {} template {} strategy file_copy").format(
                sql.Identifier(name), sql.Identifier(db)
            )
        )
    with psycopg.connect(with_database(server_url, name), autocommit=True) as conn:
        for statement in CODER_INDEXES:
            conn.execute(sql.SQL(statement))  # constants above
    return name


# --- plan timing -------------------------------------------------------------------------------


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds * 1000)

    def add_ms(self, ms: float) -> None:
        self.values.append(ms)

    @property
    def p50(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def p95(self) -> float:
        if not self.values:
            return float("nan")
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


_EXPLAIN_TIMES = re.compile(r"(Planning|Execution) Time: ([\d.]+) ms")


@dataclass
class ServerTime:
    """EXPLAIN ANALYZE of a read's statements, summed: the server's planning and execution."""

    planning_ms: float = 0.0
    execution_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.planning_ms + self.execution_ms

    def add(self, other: ServerTime) -> None:
        self.planning_ms += other.planning_ms
        self.execution_ms += other.execution_ms


def explain(conn: psycopg.Connection[Any], statement: Any, params: Any = None) -> ServerTime:
    """Server time of one statement: EXPLAIN ANALYZE's planning and execution time (per-node
    timing off, so the instrumentation costs little). For a statement that calls a SQL function,
    the planning of the function's body counts in the execution time."""
    text = sql.SQL("explain (analyze, timing off, summary) ") + (
        statement if isinstance(statement, sql.Composable) else sql.SQL(statement)
    )
    out = ServerTime()
    for (line,) in conn.execute(text, params).fetchall():
        if m := _EXPLAIN_TIMES.search(line):
            if m[1] == "Planning":
                out.planning_ms += float(m[2])
            else:
                out.execution_ms += float(m[2])
    return out


def explain_ms(conn: psycopg.Connection[Any], statement: Any, params: Any = None) -> float:
    """Planning plus execution time of one statement (EXPLAIN ANALYZE)."""
    return explain(conn, statement, params).total_ms


def connect_plan(url: str, application_name: str) -> psycopg.Connection[Any]:
    """A plan connection as the driver opens one (``cycle.connect``: no client-side prepared
    statements) in a repeatable-read, read-only session. The baseline gets the same: Coder's
    lib/pq sends every query unprepared (unnamed statements), so nothing is cached either."""
    conn = psycopg.connect(
        url,
        application_name=application_name,
        connect_timeout=cycle.CONNECT_TIMEOUT_S,
        prepare_threshold=None,
    )
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def ours_read(conn: psycopg.Connection[Any]) -> int:
    """Our plan read exactly as ``cycle.run_cycle`` does it, in one transaction: the lock
    statement, then ``cycle.read_plan``. Returns the number of actions."""
    with conn.transaction():
        conn.execute(query("take_lock"), cycle.take_lock_params(cycle.Limits()))
        plan = cycle.read_plan(conn)
    return len(plan.actions)


def ours_server(conn: psycopg.Connection[Any]) -> ServerTime:
    with conn.transaction():
        out = explain(conn, query("take_lock"), cycle.take_lock_params(cycle.Limits()))
        out.add(explain(conn, query("read_plan")))
    return out


class CapturingCursor(psycopg.Cursor[Any]):
    """Records the statements the baseline's snapshot sends, to replay them under EXPLAIN."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        captured = getattr(self.connection, "captured", None)
        if isinstance(captured, list):
            captured.append((query, params))
        return super().execute(query, params, **kwargs)


def baseline_read(conn: psycopg.Connection[Any], variant: baseline.Variant = "coder") -> int:
    """One baseline lock + snapshot + per-preset calculation (Python standing in for Coder's
    Go), in one transaction. Returns the number of actions."""
    with conn.transaction():
        conn.execute(baseline.query("take_lock", variant), {"key": locks.RECONCILE})
        snapshot = baseline.read_snapshot(conn, variant=variant)
        actions = baseline.plan(snapshot, snapshot.now)
    return len(actions)


def baseline_server(
    conn: psycopg.Connection[Any], variant: baseline.Variant = "coder"
) -> tuple[ServerTime, dict[str, ServerTime]]:
    """EXPLAIN ANALYZE of every statement of one baseline read: the sum, and per query."""
    captured: list[tuple[Any, Any]] = []
    conn.cursor_factory = CapturingCursor
    conn.captured = captured  # type: ignore[attr-defined]
    try:
        with conn.transaction():
            conn.execute(baseline.query("take_lock", variant), {"key": locks.RECONCILE})
            baseline.read_snapshot(conn, variant=variant)
    finally:
        conn.captured = None  # type: ignore[attr-defined]
        conn.cursor_factory = psycopg.Cursor
    names = {baseline.query(n, variant).as_string(): n for n in baseline._queries(variant)}
    total = ServerTime()
    per_query: dict[str, ServerTime] = {}
    with conn.transaction():
        for statement, params in captured:
            text = statement.as_string() if isinstance(statement, sql.Composable) else statement
            t = explain(conn, statement, params)
            total.add(t)
            per_query.setdefault(names.get(text, "?"), ServerTime()).add(t)
    return total, per_query


@dataclass
class DesignResult:
    """One design's samples in one scenario."""

    warm: Samples = field(default_factory=Samples)  #: client ms, the kept connection
    fresh: Samples = field(default_factory=Samples)  #: client ms, a new connection per cycle
    connect: Samples = field(default_factory=Samples)  #: opening that connection
    planning: Samples = field(default_factory=Samples)  #: server ms (EXPLAIN), warm
    execution: Samples = field(default_factory=Samples)
    server: Samples = field(default_factory=Samples)
    per_query: dict[str, Samples] = field(default_factory=dict)  #: baseline: server ms per query
    actions: int = 0


@dataclass
class PlanResult:
    ours: DesignResult = field(default_factory=DesignResult)
    base: DesignResult = field(default_factory=DesignResult)
    #: a fresh backend's first statement (``select 1``), client ms
    select1_fresh: Samples = field(default_factory=Samples)
    select1_warm: Samples = field(default_factory=Samples)


def _timed(fn: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    n = fn()
    return time.perf_counter() - started, n


def _wait_gone(admin: psycopg.Connection[Any], pids: list[int], timeout: float = 2.0) -> None:
    """Until the backends of connections just closed have exited. A closing backend's teardown
    runs concurrently with whatever the client times next, and on two cores it showed up in that
    read (ours, measured first after the round's fresh connections closed: about 6 ms alone, up
    to 9 ms right after a connection closed, PG15 dogfood, a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute(
            "select count(*) from pg_stat_activity where pid = any(%s)", (pids,)
        ).fetchone()
        if not row or not row[0]:
            return
        time.sleep(0.001)


def measure_plans(
    ours_url: str,
    base_url: str,
    cycles: int,
    *,
    warmup: int = 3,
    server_cycles: int = 5,
    variant: baseline.Variant = "coder",
) -> PlanResult:
    """Both designs' plan reads, interleaved, after ``warmup`` rounds: per cycle, the two warm
    reads (ours first in even rounds, the baseline first in odd ones), ours fresh, baseline fresh
    (each fresh read on a connection opened for it, the opening timed apart), then a ``select
    1`` on a fresh and on the warm connection; before the next round the closed connections'
    backends have exited (``_wait_gone``). Then ``server_cycles`` rounds of EXPLAIN ANALYZE on
    the warm connections, interleaved too."""
    result = PlanResult()
    with (
        connect_plan(ours_url, "bench-ours") as ours_warm,
        connect_plan(base_url, "bench-baseline") as base_warm,
        psycopg.connect(ours_url, autocommit=True) as admin,
    ):
        closed: list[int] = []

        def fresh(
            url: str, name: str, read: Callable[[psycopg.Connection[Any]], int]
        ) -> tuple[float, float, int]:
            started = time.perf_counter()
            with connect_plan(url, name) as conn:
                connected = time.perf_counter() - started
                seconds, n = _timed(lambda: read(conn))
                closed.append(conn.info.backend_pid)
            return connected, seconds, n

        def base(conn: psycopg.Connection[Any]) -> int:
            return baseline_read(conn, variant)

        def warm_reads(ours_first: bool) -> None:
            def ours_once() -> None:
                seconds, result.ours.actions = _timed(lambda: ours_read(ours_warm))
                result.ours.warm.add(seconds)

            def base_once() -> None:
                seconds, result.base.actions = _timed(lambda: base(base_warm))
                result.base.warm.add(seconds)

            for step in (ours_once, base_once) if ours_first else (base_once, ours_once):
                step()

        for _ in range(warmup):
            ours_read(ours_warm)
            base(base_warm)
            fresh(ours_url, "bench-ours", ours_read)
            fresh(base_url, "bench-baseline", base)
        _wait_gone(admin, closed)
        for cycle_no in range(cycles):
            closed.clear()
            warm_reads(ours_first=cycle_no % 2 == 0)
            connected, seconds, _ = fresh(ours_url, "bench-ours", ours_read)
            result.ours.connect.add(connected)
            result.ours.fresh.add(seconds)
            connected, seconds, _ = fresh(base_url, "bench-baseline", base)
            result.base.connect.add(connected)
            result.base.fresh.add(seconds)
            with psycopg.connect(ours_url, prepare_threshold=None, autocommit=True) as conn:
                seconds, _ = _timed(lambda: len(conn.execute("select 1").fetchall()))
                result.select1_fresh.add(seconds)
                closed.append(conn.info.backend_pid)
            ours_warm.autocommit = True
            seconds, _ = _timed(lambda: len(ours_warm.execute("select 1").fetchall()))
            ours_warm.autocommit = False
            result.select1_warm.add(seconds)
            _wait_gone(admin, closed)
        for _ in range(server_cycles):
            t = ours_server(ours_warm)
            result.ours.planning.add_ms(t.planning_ms)
            result.ours.execution.add_ms(t.execution_ms)
            result.ours.server.add_ms(t.total_ms)
            t, per_query = baseline_server(base_warm, variant)
            result.base.planning.add_ms(t.planning_ms)
            result.base.execution.add_ms(t.execution_ms)
            result.base.server.add_ms(t.total_ms)
            for name, q in per_query.items():
                result.base.per_query.setdefault(name, Samples()).add_ms(q.total_ms)
    return result


def nested_plan(url: str) -> list[str]:
    """Where our plan's time goes: EXPLAIN ANALYZE of every statement the read runs, nested ones
    (the bodies of the plan functions) included, through ``auto_explain`` with
    ``log_nested_statements`` whose LOG messages are sent to this client. Needs a superuser;
    returns [] when auto_explain cannot be loaded."""
    notices: list[str] = []
    with connect_plan(url, "bench-explain") as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        try:
            with conn.transaction():
                conn.execute("load 'auto_explain'")
        except psycopg.Error:
            return []
        for setting, value in (
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_timing", "on"),
            ("auto_explain.log_nested_statements", "on"),
            ("client_min_messages", "log"),
        ):
            with conn.transaction():
                conn.execute("select set_config(%s, %s, false)", (setting, value))
        ours_read(conn)  # warm: the plan measured below is the kept connection's
        notices.clear()
        ours_read(conn)
    return notices


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


@contextmanager
def pipeline_depth(depth: int | None) -> Iterator[None]:
    """The driver's cycles run at pipeline ``depth`` inside the block (None: its default,
    ``cycle.PIPELINE_DEPTH``)."""
    real = cycle.PIPELINE_DEPTH
    cycle.PIPELINE_DEPTH = real if depth is None else depth
    try:
        yield
    finally:
        cycle.PIPELINE_DEPTH = real


def apply_ours(server_url: str, template: str, n: int, depth: int | None = None) -> ApplyResult:
    """The driver's cycle; ``depth``: its pipeline depth (default ``cycle.PIPELINE_DEPTH``).
    Statements sent in pipeline mode (one per action: the call, since revision 0015) are
    counted as statements, not as round trips."""
    db = f"bench_run_{n}"
    url = create_database(server_url, db, template)
    counter = baseline.RoundTrips()
    _CountingDriverConnection.counter = counter
    cycle.connection_class = _CountingDriverConnection
    cycle.write_cursor_class = baseline.CountingClientCursor
    real_send = cycle.PipelinedWrites.send

    def counting_send(self: cycle.PipelinedWrites, action: Any) -> None:
        counter.add(pipelined=1)
        real_send(self, action)

    cycle.PipelinedWrites.send = counting_send  # type: ignore[method-assign]
    try:
        with pipeline_depth(depth), connection_sampler(server_url, db) as samples:
            started = time.perf_counter()
            result = cycle.run_cycle(url)
            seconds = time.perf_counter() - started
    finally:
        cycle.connection_class = psycopg.Connection
        cycle.write_cursor_class = psycopg.ClientCursor
        cycle.PipelinedWrites.send = real_send  # type: ignore[method-assign]
        drop_database(server_url, db)
    return ApplyResult(
        n,
        seconds,
        result.apply_seconds,
        result.tally("applied"),
        max(samples, default=0),
        counter.statements + counter.pipelined,
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


def two_writers(
    url: str,
    items: Sequence[Any],
    one: Callable[[Any, Any], None],
    session: Any = None,
    **kw: Any,
) -> float:
    """``one(conn, item)`` for every item, over two autocommit connections (``kw`` passed to
    connect) that take the items in turn; the connections open, and run ``session`` if given,
    before the clock starts. Returns the seconds the writes took."""
    work = iter(items)
    lock = threading.Lock()
    conns = [psycopg.connect(url, autocommit=True, **kw) for _ in range(2)]
    try:
        if session is not None:
            for c in conns:
                c.execute(session)

        def writer(conn: Any) -> None:
            while True:
                with lock:
                    item = next(work, None)
                if item is None:
                    return
                one(conn, item)

        started = time.perf_counter()
        threads = [threading.Thread(target=writer, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started
    finally:
        for c in conns:
            c.close()


def physical_writes(url: str, n: int, *, log_row: bool = True, prepare: bool = True) -> float:
    """The reference's writes of ``n`` creates on ``url`` (a settled fleet with creates to
    make): see ``apply_physical``. Returns the seconds they took."""
    with psycopg.connect(url, autocommit=True) as conn:
        presets = [r[0] for r in conn.execute(query_bench("bench_presets")).fetchall()]
        run = conn.execute(query_bench("physical_run"), {"creates": n}).fetchone()
    assert run is not None
    statement = query_bench("physical_create" if log_row else "physical_create_unlogged")
    return two_writers(
        url,
        [(seq, presets[seq % len(presets)]) for seq in range(n)],
        lambda c, item: c.execute(
            statement, {"preset_id": item[1], "run_id": run[0], "seq": item[0]}
        ),
        session=query_bench("writer_session"),
        prepare_threshold=5 if prepare else None,
    )


def apply_physical(
    server_url: str, template: str, n: int, *, log_row: bool = True, prepare: bool = True
) -> ApplyResult:
    """The ceiling: the rows an applied create writes (its action log row included), as plain
    one-statement autocommit transactions over two connections, nothing locked or checked, the
    statement prepared on the server after five executions (psycopg's default): the cheapest way
    to write those rows, which the driver cannot take (no prepared statements behind PgBouncer;
    its PL/pgSQL functions cache their own plans instead). The connections open before the clock
    starts, as the driver's write pool is open before its apply phase is timed. They run with
    ``search_path = ''``, as every write of ours does inside its functions (``writer_session``
    says why).

    ``log_row=False`` is the reference as it was before (no log row); ``prepare=False`` re-plans
    every statement. ``python -m bench.apply_pieces`` measures all three.
    """
    db = f"bench_run_{n}"
    url = create_database(server_url, db, template)
    try:
        with connection_sampler(server_url, db) as samples:
            seconds = physical_writes(url, n, log_row=log_row, prepare=prepare)
    finally:
        drop_database(server_url, db)
    return ApplyResult(n, seconds, seconds, n, max(samples, default=0), n, n)
