"""The driver through PgBouncer (issue 7, item 4), in transaction and in session pooling mode:
real PgBouncer and driver processes in front of the test server (tests/servers.py).

* a big cycle applies every action (server-side prepared statements would collide between
  clients in transaction mode: the driver connects with ``prepare_threshold=None``);
* several drivers at once, round after round: the transaction-scoped advisory lock still lets
  only one of them apply at a time, and no pool grows above its desired size;
* ``prebuilds demo`` migrates, seeds and converges an empty database through PgBouncer.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest

from prebuilds import cycle
from prebuilds.cycle import Limits, run_cycle
from prebuilds.simulator import SimulatedProvisioner
from tests.fixtures import clone_database, drop_database, with_database
from tests.support import (
    REFUSED_PRESETS,
    SLOW_PRESETS,
    overfull,
    refuse,
    run_cli,
    scalar,
    slow,
    start_cli,
)

Conn = psycopg.Connection[Any]
BouncerUrl = Callable[..., str]

MODES = ["transaction", "session"]

# How long a driver subprocess may take: a 1,000-action cycle through PgBouncer takes a few
# seconds on 2 cores; the limit only keeps a hung driver from hanging the suite.
DRIVER_TIMEOUT_S = 120


def active_presets(conn: Conn, prefix: str, count: int, desired: int) -> list[UUID]:
    rows = conn.execute(
        "select fixture.active_preset(%s || n, %s) from generate_series(1, %s) as n order by n",
        (prefix, desired, count),
    ).fetchall()
    return [r[0] for r in rows]


def running_prebuilds(conn: Conn, preset_id: UUID, count: int) -> None:
    """``count`` running, ready prebuilds of a preset, created a minute apart an hour ago."""
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '1 hour' + make_interval(mins => n)) "
        "from generate_series(1, %s) as n",
        (preset_id, count),
    )


def queued_on_an_outdated_version(conn: Conn, template: str, count: int) -> None:
    """``count`` queued initial builds of a preset whose template has moved on: cancels."""
    preset_id = scalar(conn, "select fixture.active_preset(%s, %s)", (template, count))
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '5 minutes', 'starting') "
        "from generate_series(1, %s)",
        (preset_id, count),
    )
    conn.execute("select fixture.new_version(%s, 'v2')", (template,))


def planned(conn: Conn) -> dict[str, int]:
    rows = conn.execute(
        "select action, count(*) from prebuilds.reconciliation_actions group by action"
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def runs(conn: Conn) -> list[tuple[Any, ...]]:
    """(id, started_at, finished_at, status, applied, skipped, failed) of every run."""
    return conn.execute(
        "select id, started_at, finished_at, status, actions_applied, actions_skipped, "
        "actions_failed from prebuilds.reconciliation_runs order by id"
    ).fetchall()


def overlapping_runs(conn: Conn) -> list[tuple[int, int]]:
    """Pairs of runs that applied actions and whose [started_at, finished_at] intersect. A run
    still without ``finished_at`` counts as lasting until now."""
    rows = conn.execute(
        """
        with applying as (
            select id, tstzrange(started_at, coalesce(finished_at, clock_timestamp()), '[]') as span
            from prebuilds.reconciliation_runs
            where actions_applied > 0
               or exists (select from prebuilds.reconciliation_action_log as l
                          where l.run_id = reconciliation_runs.id and l.outcome = 'applied')
        )
        select a.id, b.id from applying as a join applying as b on a.id < b.id and a.span && b.span
        """
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


class ServerConnections:
    """Samples, in a thread, how many connections the database has, other than the sampler's
    and the test's own (``ignore``: its backend pid); ``peak`` is the most seen at once. Behind
    PgBouncer these are its server connections, idle ones included."""

    def __init__(self, db_url: str, ignore: int) -> None:
        self.db_url = db_url
        self.ignore = ignore
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self._stop.is_set():
                n = scalar(
                    conn,
                    "select count(*) from pg_stat_activity "
                    "where datname = current_database() and pid <> pg_backend_pid() "
                    # Not autovacuum: a thousand inserts wake it up in the middle of the cycle.
                    "and pid <> %s and backend_type = 'client backend'",
                    (self.ignore,),
                )
                self.peak = max(self.peak, n)
                time.sleep(0.002)

    def __enter__(self) -> ServerConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def failure_details(conn: Conn) -> str:
    rows = conn.execute(
        "select run_id, action, error from prebuilds.reconciliation_action_log "
        "where outcome = 'failed' order by run_id, seq limit 5"
    ).fetchall()
    return "\n".join(f"run {r[0]} {r[1]}: {r[2]}" for r in rows)


# --- one big cycle ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_cycle_of_a_thousand_actions_applies_every_one(
    conn: Conn, db_url: str, pgbouncer_url: BouncerUrl, mode: str
) -> None:
    """Before the driver stopped preparing statements server-side, this failed in transaction
    mode with `prepared statement "_pg3_0" already exists` on hundreds of actions. The driver
    pipelines its actions (``cycle.PIPELINE_DEPTH``, two in flight per write connection, each
    with its own Sync), which PgBouncer follows by counting the Syncs it has to answer."""
    assert cycle.PIPELINE_DEPTH == 2
    active_presets(conn, "pool-", 10, 100)
    surplus = scalar(conn, "select fixture.active_preset('surplus', 2)")
    running_prebuilds(conn, surplus, 52)
    queued_on_an_outdated_version(conn, "outdated", 30)
    plan = planned(conn)
    assert plan == {"create": 1000, "delete": 50, "cancel": 30}
    total = sum(plan.values())
    # The whole plan in one cycle (the default cap, max_actions_per_cycle, is 1,000).
    conn.execute("update prebuilds.settings set max_actions_per_cycle = %s", (total,))

    url = pgbouncer_url(db_url, mode)
    started = time.monotonic()
    with ServerConnections(db_url, ignore=conn.info.backend_pid) as server:
        done = run_cli("reconcile", url=url, timeout=DRIVER_TIMEOUT_S)
    elapsed = time.monotonic() - started

    assert done.returncode == 0, done.stdout + done.stderr + failure_details(conn)
    assert "applied 30 cancel, 50 delete, 1000 create; 0 skipped, 0 failed" in done.stdout
    [(_, _, _, status, applied, skipped, failed)] = runs(conn)
    assert (status, applied, skipped, failed) == ("succeeded", total, 0, 0)
    assert (
        scalar(
            conn,
            "select count(*) from prebuilds.reconciliation_action_log where outcome = 'applied'",
        )
        == total
    )
    assert planned(conn) == {}
    assert overfull(conn) == []
    # The plan transaction (and its lock) pins one server connection for the whole cycle, in
    # transaction mode too; with the two writers that is the driver's budget of three (SPEC 1).
    assert server.peak <= 3
    print(
        f"\nPgBouncer {mode} mode: one cycle applied {applied} of {total} actions "
        f"(30 cancel, 50 delete, 1000 create), failed = {failed}, in {elapsed:.1f}s; "
        f"at most {server.peak} server connections"
    )


@pytest.mark.parametrize("depth", [1, 2])
def test_pipelined_failures_through_pgbouncer_stay_in_their_own_transaction(
    conn: Conn,
    db_url: str,
    pgbouncer_url: BouncerUrl,
    depth: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Transaction mode, the driver in this process at pipeline ``depth``: a tenth of the creates
    fail inside the database. Every other create is applied, the counts match the log, and a
    client sharing PgBouncer's server connections meanwhile never sees a failed action's
    aborted transaction or an action's transaction-local timeouts."""
    monkeypatch.setattr(cycle, "PIPELINE_DEPTH", depth)
    active_presets(conn, "ok-", 9, 20)
    active_presets(conn, "refused", 1, 20)  # the template is named refused1
    conn.execute("update prebuilds.templates set name = 'refused' where name = 'refused1'")
    conn.execute(REFUSED_PRESETS)
    refuse(conn, "refused")
    url = pgbouncer_url(db_url, "transaction")
    seen: Counter[tuple[str, str]] = Counter()
    stop = threading.Event()

    def neighbour() -> None:
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as other:
            while not stop.is_set():
                row = other.execute(
                    "select current_setting('lock_timeout'), current_setting('statement_timeout')"
                ).fetchone()
                assert row is not None
                seen[(row[0], row[1])] += 1

    thread = threading.Thread(target=neighbour)
    thread.start()
    try:
        result = run_cycle(url)
    finally:
        stop.set()
        thread.join(timeout=30)
    failed = [o for o in result.outcomes if o.outcome == "failed"]
    assert len(failed) == 20 and all("refusing template refused" in (o.error or "") for o in failed)
    assert result.tally("applied") == 180
    [(_, _, _, status, applied, _, failed_n)] = runs(conn)
    assert (status, applied, failed_n) == ("failed", 180, 20)
    assert (
        scalar(
            conn,
            "select count(*) from prebuilds.reconciliation_action_log where outcome = 'failed'",
        )
        == 20
    )
    assert overfull(conn) == []
    assert set(seen) == {("0", "0")}, seen
    print(
        f"\nPgBouncer transaction mode, depth {depth}: 180 applied, 20 failed in the database, "
        f"all logged; a neighbour's {sum(seen.values())} reads saw no action's settings"
    )


def test_a_pipelined_action_past_its_statement_timeout_is_cancelled_through_pgbouncer(
    conn: Conn, db_url: str, pgbouncer_url: BouncerUrl
) -> None:
    """Transaction mode, depth 2, --statement-timeout 1: one create sleeps 30 s in a trigger.
    The driver's cancel request goes through PgBouncer to the server connection running it:
    that create fails after about a second, named as a statement timeout, every other create is
    applied, and the server is no longer running it."""
    assert cycle.PIPELINE_DEPTH == 2
    active_presets(conn, "ok-", 6, 3)
    active_presets(conn, "slow", 1, 1)  # the template is named slow1
    conn.execute(SLOW_PRESETS)
    slow(conn, "slow1", 30.0)
    started = time.monotonic()
    result = run_cycle(pgbouncer_url(db_url, "transaction"), limits=Limits(statement_timeout=1.0))
    elapsed = time.monotonic() - started
    failed = [o for o in result.outcomes if o.outcome == "failed"]
    assert len(failed) == 1, failed
    assert "statement timeout: no result after 1 s, cancelled by the driver" in (
        failed[0].error or ""
    )
    assert result.tally("applied") == 18
    assert 1.0 <= elapsed < 5.0, elapsed
    sleeping = scalar(
        conn,
        "select count(*) from pg_stat_activity where state = 'active' "
        "and query like 'select prebuilds.apply_action(%%'",
    )
    assert sleeping == 0
    assert overfull(conn) == []
    print(
        f"\nPgBouncer transaction mode: the slow create was cancelled through the pooler after "
        f"{elapsed:.2f} s (cycle), 18 others applied"
    )


# --- several drivers at once -----------------------------------------------------------------

DRIVERS = 4
ROUNDS = 4
LOOP_BATCHES = 10


def invalidate(conn: Conn, presets: list[UUID]) -> None:
    conn.execute(
        "update prebuilds.presets set last_invalidated_at = now() where id = any(%s)", (presets,)
    )


def check_runs(conn: Conn, min_applying: int) -> tuple[list[tuple[Any, ...]], int]:
    """Every run: none failed, at least ``min_applying`` applied actions, no two of those
    overlap in time. Returns the runs and how many actions they applied."""
    all_runs = runs(conn)
    applying = [r for r in all_runs if r[4] > 0]
    assert len(applying) >= min_applying, all_runs
    assert sum(r[6] for r in all_runs) == 0, failure_details(conn)
    assert {r[3] for r in all_runs} <= {"succeeded", "interrupted"}, all_runs
    assert overlapping_runs(conn) == []
    return all_runs, sum(r[4] for r in applying)


@pytest.mark.parametrize("mode", MODES)
def test_drivers_at_once_through_pgbouncer_one_applies(
    conn: Conn, db_url: str, pgbouncer_url: BouncerUrl, mode: str
) -> None:
    """ROUNDS rounds of DRIVERS `prebuilds reconcile` processes started together. Between rounds
    a simulated provisioner finishes every job and half of the presets are invalidated, so each
    round has hundreds of deletes and creates to race for."""
    presets = active_presets(conn, "race-", 8, 40)
    provisioner = SimulatedProvisioner(conn, "pgbouncer-test")
    url = pgbouncer_url(db_url, mode)
    busy = 0
    for round_ in range(ROUNDS):
        if round_:
            provisioner.drain()
            invalidate(conn, presets[round_ % 2 :: 2])
        assert planned(conn), f"round {round_}: nothing to race for"
        procs = [start_cli("reconcile", url=url) for _ in range(DRIVERS)]
        try:
            outputs = [proc.communicate(timeout=DRIVER_TIMEOUT_S) for proc in procs]
        finally:
            for proc in procs:
                proc.kill()
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, (mode, round_, out, err, failure_details(conn))
            busy += "another reconciler holds the lock" in out
        assert overfull(conn) == [], f"round {round_}"

    all_runs, applied = check_runs(conn, ROUNDS)
    print(
        f"\nPgBouncer {mode} mode: {ROUNDS} rounds x {DRIVERS} `reconcile` at once: "
        f"{len(all_runs)} runs applied {applied} actions, {busy} drivers found the lock held; "
        "failed = 0, overlaps = 0, pools above desired = 0"
    )


def wait_for_empty_plan(conn: Conn, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while planned(conn):
        assert time.monotonic() < deadline, f"{what}: the plan is not empty after {timeout}s"
        time.sleep(0.02)


@pytest.mark.parametrize("mode", MODES)
def test_driver_loops_through_pgbouncer_take_turns(
    conn: Conn, db_url: str, pgbouncer_url: BouncerUrl, mode: str
) -> None:
    """DRIVERS `prebuilds run --interval 50ms` loops, fed BATCHES batches of new work (a
    provisioner finishes every job, a quarter of the presets is invalidated: deletes and creates)
    one after the other as soon as the previous one is applied: the lock changes hands between
    the processes many times and never two of them apply at once."""
    presets = active_presets(conn, "loop-", 8, 10)
    provisioner = SimulatedProvisioner(conn, "pgbouncer-test")
    url = pgbouncer_url(db_url, mode)
    loops = [start_cli("run", "--interval", "50ms", url=url) for _ in range(DRIVERS)]
    try:
        wait_for_empty_plan(conn, "the first fill")
        for batch in range(LOOP_BATCHES):
            provisioner.drain()
            invalidate(conn, presets[batch % 4 :: 4])
            wait_for_empty_plan(conn, f"batch {batch}")
            assert overfull(conn) == [], f"batch {batch}"
            assert all(proc.poll() is None for proc in loops), "a driver loop exited"
    finally:
        for proc in loops:
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=DRIVER_TIMEOUT_S) for proc in loops]
    for proc, (out, err) in zip(loops, outputs, strict=True):
        assert proc.returncode == 0, (mode, out, err, failure_details(conn))
    assert overfull(conn) == []

    all_runs, applied = check_runs(conn, LOOP_BATCHES + 1)
    applying = [r for r in all_runs if r[4] > 0]
    pids = scalar(
        conn,
        "select count(distinct pid) from prebuilds.reconciliation_runs where actions_applied > 0",
    )
    print(
        f"\nPgBouncer {mode} mode: {DRIVERS} `run` loops, {LOOP_BATCHES} batches of work: "
        f"{len(all_runs)} runs, {len(applying)} of them (by {pids} processes) applied "
        f"{applied} actions; failed = 0, overlaps = 0, pools above desired = 0"
    )


# --- woken by changes (SPEC 6.1) -----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_run_through_pgbouncer_listens_in_session_mode_and_falls_back_in_transaction_mode(
    conn: Conn, db_url: str, pgbouncer_url: BouncerUrl, mode: str
) -> None:
    """Session mode: the listen connection holds its server connection, the self-test passes and
    a claim wakes the loop at once. Transaction mode: notifications cannot reach it; the
    self-test says so in a warning and the loop keeps cycling on the interval."""
    from tests.test_loop import LiveCli

    (preset,) = active_presets(conn, "wake-", 1, 3)
    running_prebuilds(conn, preset, 3)
    alice = scalar(conn, "select fixture.user('alice')")
    url = pgbouncer_url(db_url, mode)
    interval = "300s" if mode == "session" else "1s"
    with LiveCli("run", "--interval", interval, url=url) as loop:
        loop.wait_for(
            lambda: scalar(conn, "select count(*) from prebuilds.reconciliation_runs") >= 1,
            "the first cycle",
        )
        if mode == "session":
            loop.wait_for_line(loop.stdout, "listening on prebuilds_reconcile")
            time.sleep(0.3)
            before = scalar(conn, "select count(*) from prebuilds.reconciliation_runs")
            assert scalar(conn, "select prebuilds.claim_prebuild(%s, %s, 'x')", (preset, alice))
            loop.wait_for(
                lambda: scalar(conn, "select count(*) from prebuilds.reconciliation_runs") > before,
                "a cycle woken by the claim",
                timeout=5,
            )
        else:
            warning = loop.wait_for_line(loop.stderr, "self-test notification did not arrive")
            assert "transaction mode" in warning
            assert not any("listening on" in line for line in loop.stdout)
            before = scalar(conn, "select count(*) from prebuilds.reconciliation_runs")
            loop.wait_for(
                lambda: (
                    scalar(conn, "select count(*) from prebuilds.reconciliation_runs") >= before + 2
                ),
                "cycles on the interval",
                timeout=10,
            )
        assert loop.stop() == 0


# --- the demo --------------------------------------------------------------------------------


@pytest.fixture
def empty_databases(server_url: str) -> Iterator[list[str]]:
    """Names of two blank databases (copies of template0, not migrated) on the session server."""
    names = [clone_database(server_url, "template0") for _ in MODES]
    yield names
    for name in names:
        drop_database(server_url, name)


def test_demo_through_pgbouncer_on_an_empty_database(
    server_url: str, empty_databases: list[str], pgbouncer_url: BouncerUrl
) -> None:
    """`prebuilds demo` migrates, seeds and converges an empty database through PgBouncer, in
    both modes at once (the demo mostly waits for backoffs to end)."""
    urls = [
        pgbouncer_url(with_database(server_url, name), mode)
        for name, mode in zip(empty_databases, MODES, strict=True)
    ]
    started = time.monotonic()
    demos = [start_cli("demo", url=url) for url in urls]
    outputs = [demo.communicate(timeout=DRIVER_TIMEOUT_S) for demo in demos]
    elapsed = time.monotonic() - started
    for mode, demo, (out, err) in zip(MODES, demos, outputs, strict=True):
        assert demo.returncode == 0, (mode, out, err)
        assert "converged after " in out, (mode, out)
        assert "schema at revision" in out
    cycles = [
        next(line for line in out.splitlines() if line.startswith("converged after "))
        for out, _ in outputs
    ]
    for name, mode, line in zip(empty_databases, MODES, cycles, strict=True):
        with psycopg.connect(with_database(server_url, name), autocommit=True) as conn:
            failed = scalar(
                conn, "select coalesce(sum(actions_failed), 0) from prebuilds.reconciliation_runs"
            )
            assert failed == 0
            assert overfull(conn) == []
        print(f"\nPgBouncer {mode} mode: prebuilds demo exit 0, {line}, failed = {failed}")
    print(f"both demos in {elapsed:.1f}s")
