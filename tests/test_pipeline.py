"""Pipelined apply (issue 9): two actions in flight on one write connection, each its own
transaction, under faults. Real servers, real drivers; ``cycle.PipelinedWrites`` is driven
directly where the test must know that two actions were in flight on one connection at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from prebuilds import cycle, locks
from prebuilds.cycle import Limits, PipelinedWrites, run_cycle
from prebuilds.model import Outcome, PlannedAction
from tests.support import (
    REFUSED_PRESETS,
    SLOW_PRESETS,
    active_preset,
    overfull,
    refuse,
    scalar,
    slow,
    wait_until,
)

Conn = psycopg.Connection[Any]


@dataclass
class Run:
    """A started run whose plan transaction holds the reconcile lock."""

    plan_conn: Conn
    pool: ConnectionPool[Any]
    run_id: int
    creates: dict[UUID, PlannedAction]  # the first planned create of each preset


@contextmanager
def started_run(url: str) -> Iterator[Run]:
    limits = Limits()
    with cycle.Session(url) as session:
        conn, row = session._take_lock(limits)
        assert row and row[0]
        holder = cycle.LockHolder(locks.RECONCILE, row[1], row[2])
        plan = cycle.read_plan(conn)
        pool = session._write_pool()
        run_id = cycle.start_run(pool, plan, 0.0, holder, limits)
        creates: dict[UUID, PlannedAction] = {}
        for a in plan.actions:
            if a.action == "create":
                creates.setdefault(a.preset_id, a)
        try:
            yield Run(conn, pool, run_id, creates)
        finally:
            with suppress(psycopg.Error):  # killed by some tests
                conn.rollback()


def logged(conn: Conn, run_id: int) -> dict[int, tuple[str, int]]:
    """seq -> (outcome, the id of the transaction that wrote the log row)."""
    rows = conn.execute(
        "select seq, outcome, xmin::text::bigint from prebuilds.reconciliation_action_log "
        "where run_id = %s",
        (run_id,),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def live_prebuilds(conn: Conn, preset_id: UUID) -> int:
    count: int = scalar(
        conn,
        "select count(*) from prebuilds.workspaces where current_preset_id = %s and not deleted",
        (preset_id,),
    )
    return count


def backend_of(write: Conn) -> int:
    return write.info.backend_pid


def pipelined_pair(run: Run, first: PlannedAction, second: PlannedAction, limits: Limits) -> Any:
    """Send both actions on one write connection before reading either result; returns both
    outcomes and the connection's state afterwards."""
    with run.pool.connection() as write, PipelinedWrites(write, run.run_id, limits) as writer:
        writer.send(first)
        writer.send(second)
        assert writer.in_flight == 2
        got = [writer.receive(), writer.receive()]
        broken = writer.broken
    return got, broken


# --- the queue ---------------------------------------------------------------------------------


def planned(seq: int, preset: UUID, action: str = "create") -> PlannedAction:
    return PlannedAction(seq, preset, action, None, "test", "o", "t", "v", "p", None)  # type: ignore[arg-type]


def test_the_queue_never_hands_out_two_creates_of_one_preset_in_flight() -> None:
    """Four writers' worth of actions in flight (two connections, depth 2): a create of a preset
    whose create is in flight is held back until that one is done; a writer that must not wait
    (it has results to read) gets None instead of blocking."""
    a, b = UUID(int=1), UUID(int=2)
    actions = [planned(1, a), planned(2, a), planned(3, a), planned(4, b), planned(5, b)]
    queue = cycle.ActionQueue(actions, threading.Event(), threading.Event(), None)
    first, _ = queue.take(wait=False)
    second, _ = queue.take(wait=False)
    assert (first, second) == (actions[0], actions[3])  # a's next creates skipped: a is busy
    assert queue.take(wait=False) == (None, [])  # only creates of busy presets are left
    queue.done(first, Outcome(actions[0], "applied", None))
    third, _ = queue.take(wait=False)
    assert third == actions[1]
    queue.done(second, Outcome(actions[3], "applied", None))
    fourth, _ = queue.take(wait=False)
    assert fourth == actions[4]
    assert queue.take(wait=False) == (None, [])
    # A waiting writer is woken by the other's done.
    got: list[PlannedAction | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.take()[0]))
    waiter.start()
    time.sleep(0.05)
    assert got == [] and waiter.is_alive()
    queue.done(third, Outcome(actions[1], "applied", None))
    waiter.join(timeout=5)
    assert got == [actions[2]]


# --- each action its own transaction -----------------------------------------------------------


def test_an_error_in_the_first_pipelined_action_does_not_touch_the_second(
    conn: Conn, db_url: str
) -> None:
    """The first action fails inside the database (a trigger refuses its workspace insert); the
    second, sent before the first's result was read, is applied and committed in its own
    transaction; the timeouts set for each transaction do not outlive it."""
    doomed = active_preset(conn, "doomed", 1)
    fine = active_preset(conn, "fine", 1)
    conn.execute(REFUSED_PRESETS)
    refuse(conn, "doomed")
    with started_run(db_url) as run:
        first, second = run.creates[doomed], run.creates[fine]
        limits = Limits(lock_timeout=1.5, statement_timeout=7.0)
        with run.pool.connection() as write:
            with PipelinedWrites(write, run.run_id, limits) as writer:
                writer.send(first)
                writer.send(second)
                assert writer.in_flight == 2
                (a1, o1), (a2, o2) = writer.receive(), writer.receive()
                assert not writer.broken
            # Out of the pipeline, on the same session: the transaction-local timeouts are gone.
            settings = write.execute(
                "select current_setting('lock_timeout'), current_setting('statement_timeout')"
            ).fetchone()
        run.plan_conn.rollback()
    assert (a1, a2) == (first, second)
    assert o1 is not None and o1.outcome == "failed" and not o1.lock_timeout
    assert o1.error is not None and "refusing template doomed" in o1.error
    assert o2 is not None and o2.outcome == "applied" and o2.workspace_id is not None
    assert live_prebuilds(conn, doomed) == 0 and live_prebuilds(conn, fine) == 1
    log = logged(conn, run.run_id)
    # The failure is logged later (settle_outcomes); the applied one committed on its own.
    assert set(log) == {second.seq} and log[second.seq][0] == "applied"
    assert settings == ("0", "0")
    print(f"\npipelined pair: first failed ({o1.error}), second applied; timeouts reset after")


def test_two_pipelined_actions_commit_in_two_transactions(conn: Conn, db_url: str) -> None:
    """Both actions of a pipelined pair are applied, each in a transaction of its own: their log
    rows (written in the action's transaction) carry different transaction ids."""
    a = active_preset(conn, "a", 1)
    b = active_preset(conn, "b", 1)
    with started_run(db_url) as run:
        ((_, o1), (_, o2)), broken = pipelined_pair(run, run.creates[a], run.creates[b], Limits())
        run.plan_conn.rollback()
    assert not broken
    assert o1 is not None and o2 is not None and (o1.outcome, o2.outcome) == ("applied", "applied")
    log = logged(conn, run.run_id)
    assert {o for o, _ in log.values()} == {"applied"} and len(log) == 2
    assert len({xid for _, xid in log.values()}) == 2


@pytest.mark.parametrize("locked", ["first", "second"])
def test_a_locked_preset_row_times_out_only_its_own_pipelined_action(
    conn: Conn, db_url: str, locked: str
) -> None:
    """Someone else holds one preset's row: the pipelined action that creates for it fails after
    its own lock_timeout (set in its own transaction, also when it is the second of the pair),
    and the other action of the pair is applied."""
    a = active_preset(conn, "a", 1)
    b = active_preset(conn, "b", 1)
    stuck = a if locked == "first" else b
    with started_run(db_url) as run, psycopg.connect(db_url) as holder:
        holder.execute("select 1 from prebuilds.presets where id = %s for update", (stuck,))
        started = time.monotonic()
        ((a1, o1), (a2, o2)), broken = pipelined_pair(
            run, run.creates[a], run.creates[b], Limits(lock_timeout=0.5)
        )
        elapsed = time.monotonic() - started
        holder.rollback()
        run.plan_conn.rollback()
    outcomes = {a1.preset_id: o1, a2.preset_id: o2}
    timed_out, other = outcomes[stuck], outcomes[b if stuck == a else a]
    assert timed_out is not None and timed_out.outcome == "failed" and timed_out.lock_timeout
    assert "lock timeout" in (timed_out.error or "")
    assert other is not None and other.outcome == "applied"
    assert not broken
    assert 0.5 <= elapsed < 3.0, elapsed
    assert live_prebuilds(conn, stuck) == 0 and live_prebuilds(conn, other.action.preset_id) == 1
    print(f"\nlocked row for the {locked} of a pipelined pair: it timed out, the other applied")


def test_a_locked_row_in_a_pipelined_cycle_fails_only_its_preset(conn: Conn, db_url: str) -> None:
    """The whole driver at depth 2: a locked preset row costs one lock timeout, its preset's
    other creates are not attempted, and every other action is applied."""
    assert cycle.PIPELINE_DEPTH == 2
    stuck = active_preset(conn, "stuck", 4)
    for i in range(6):
        active_preset(conn, f"free-{i}", 3)
    with psycopg.connect(db_url) as holder:
        holder.execute("select 1 from prebuilds.presets where id = %s for update", (stuck,))
        started = time.monotonic()
        result = run_cycle(db_url, limits=Limits(lock_timeout=0.5))
        elapsed = time.monotonic() - started
        holder.rollback()
    failed = [o for o in result.outcomes if o.outcome == "failed"]
    assert {o.action.preset_id for o in failed} == {stuck} and len(failed) == 4
    assert sum(o.lock_timeout for o in failed) == 1
    assert result.tally("applied") == 18
    assert elapsed < 0.5 + 2.0, elapsed
    assert overfull(conn) == []


# --- the statement timeout: the writer's deadline ----------------------------------------------


def active_sleeps(conn: Conn) -> int:
    count: int = scalar(
        conn,
        "select count(*) from pg_stat_activity where query like 'select prebuilds.apply_action(%%'"
        " and state = 'active' and pid <> pg_backend_pid()",
    )
    return count


def slow_pair(
    conn: Conn, db_url: str, slow_template: str, limits: Limits
) -> tuple[UUID, UUID, Any, bool, float]:
    """Presets a and b (one create each), the workspace insert of ``slow_template`` sleeping
    30 s; both creates sent on one connection. Returns a, b, the two (action, outcome) pairs,
    whether the connection broke, and the seconds it took."""
    a = active_preset(conn, "a", 1)
    b = active_preset(conn, "b", 1)
    conn.execute(SLOW_PRESETS)
    slow(conn, slow_template, 30.0)
    with started_run(db_url) as run:
        started = time.monotonic()
        results, broken = pipelined_pair(run, run.creates[a], run.creates[b], limits)
        elapsed = time.monotonic() - started
        run.plan_conn.rollback()
    return a, b, results, broken, elapsed


@pytest.mark.parametrize("slowest", ["first", "second"])
def test_a_pipelined_action_past_the_statement_timeout_is_cancelled_alone(
    conn: Conn, db_url: str, slowest: str
) -> None:
    """A pipelined call sets no statement_timeout on the server (PostgreSQL arms it when a
    statement starts); the writer keeps the deadline. An action still running when it passes
    (a trigger sleeps 30 s in its workspace insert, no lock involved) is cancelled from the
    client: it fails with an error naming the statement timeout, rolls back, and the other
    action of the pair (before or after it) is applied. The oldest action's time runs from when
    it became the oldest, so the second of a pair gets its full timeout too."""
    a, b, ((a1, o1), (a2, o2)), broken, elapsed = slow_pair(
        conn, db_url, "a" if slowest == "first" else "b", Limits(statement_timeout=1.0)
    )
    stuck = a if slowest == "first" else b
    outcomes = {a1.preset_id: o1, a2.preset_id: o2}
    cancelled, other = outcomes[stuck], outcomes[b if stuck == a else a]
    assert cancelled is not None and cancelled.outcome == "failed"
    assert not cancelled.lock_timeout
    assert "statement timeout: no result after 1 s, cancelled by the driver" in (
        cancelled.error or ""
    ), cancelled.error
    assert "canceling statement due to user request" in (cancelled.error or "")
    assert other is not None and other.outcome == "applied"
    assert not broken
    assert 1.0 <= elapsed < 5.0, elapsed
    assert live_prebuilds(conn, stuck) == 0 and live_prebuilds(conn, other.action.preset_id) == 1
    assert active_sleeps(conn) == 0  # the server stopped working on it
    print(
        f"\n{slowest} of a pipelined pair ran past the 1 s statement timeout: cancelled after "
        f"{elapsed:.2f} s, the other applied"
    )


def test_a_result_that_arrived_before_the_deadline_is_never_cancelled(
    conn: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first action finishes in 0.3 s, inside its 0.5 s, but the client reads it only at
    0.7 s (a slow callback, the GIL): the writer sees the result waiting and sends no cancel,
    which would otherwise stop the next action in the pipeline. Both are applied."""
    asked: list[int] = []
    real = psycopg.Connection.cancel_safe

    def spy(self: Conn, *, timeout: float = 30.0) -> None:
        asked.append(1)
        real(self, timeout=timeout)

    monkeypatch.setattr(psycopg.Connection, "cancel_safe", spy)
    a = active_preset(conn, "a", 1)
    b = active_preset(conn, "b", 1)
    conn.execute(SLOW_PRESETS)
    slow(conn, "a", 0.3)
    with started_run(db_url) as run:
        limits = Limits(statement_timeout=0.5)
        with run.pool.connection() as write, PipelinedWrites(write, run.run_id, limits) as writer:
            writer.send(run.creates[a])
            writer.send(run.creates[b])
            time.sleep(0.7)
            (_, o1), (_, o2) = writer.receive(), writer.receive()
        run.plan_conn.rollback()
    assert asked == []
    assert o1 is not None and o1.outcome == "applied"
    assert o2 is not None and o2.outcome == "applied"


def test_a_cancel_that_goes_unanswered_gives_the_connection_up(
    conn: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel request never reaches the server (a pooler that drops it, a lost packet):
    the writer asks again after the grace period, and after the last attempt gives the
    connection up instead of waiting for ever. Both actions in flight fail with an error that
    says so, and the connection is reported broken (the pool drops it)."""
    monkeypatch.setattr(cycle, "CANCEL_GRACE_S", 0.3)
    monkeypatch.setattr(cycle, "CANCEL_ATTEMPTS", 2)
    asked: list[float] = []
    monkeypatch.setattr(
        psycopg.Connection, "cancel_safe", lambda self, timeout=0: asked.append(time.monotonic())
    )
    a, b, ((a1, o1), (a2, o2)), broken, elapsed = slow_pair(
        conn, db_url, "a", Limits(statement_timeout=0.5)
    )
    conn.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity "
        "where query like 'select prebuilds.apply_action(%%' and pid <> pg_backend_pid()"
    )
    assert (a1.preset_id, a2.preset_id) == (a, b)
    assert len(asked) == 2 and asked[1] - asked[0] >= 0.3
    assert o1 is not None and o1.outcome == "failed"
    assert "2 cancel requests later; connection given up" in (o1.error or ""), o1.error
    assert o2 is not None and o2.outcome == "failed"
    assert broken
    assert 0.5 + 0.6 <= elapsed < 5.0, elapsed
    print(f"\nunanswered cancels: connection given up after {elapsed:.2f} s, both actions failed")


@pytest.mark.parametrize("depth", [2, 1])
def test_a_slow_action_in_a_cycle_costs_one_statement_timeout(
    conn: Conn, db_url: str, depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole driver with --statement-timeout 1, at depth 2 (the driver's deadline) and 1
    (the server's statement_timeout): the slow preset's first create fails after about a second,
    named as a statement timeout, and its two other creates are not attempted (each would cost
    another second); every other action is applied and the cycle reports a failure (exit 1)."""
    monkeypatch.setattr(cycle, "PIPELINE_DEPTH", depth)
    active_preset(conn, "slow", 3)
    for i in range(6):
        active_preset(conn, f"free-{i}", 3)
    conn.execute(SLOW_PRESETS)
    slow(conn, "slow", 30.0)
    started = time.monotonic()
    result = run_cycle(db_url, limits=Limits(statement_timeout=1.0))
    elapsed = time.monotonic() - started
    failed = [o for o in result.outcomes if o.outcome == "failed"]
    cancelled = [o for o in failed if o.statement_timeout]
    assert len(failed) == 3 and len(cancelled) == 1
    expected = (
        "statement timeout: no result after 1 s"
        if depth == 2
        else "canceling statement due to statement timeout"
    )
    assert expected in (cancelled[0].error or ""), cancelled[0].error
    skipped = [o.error or "" for o in failed if not o.statement_timeout]
    assert all(
        e.startswith("not attempted: an earlier create of this preset ran past the statement")
        for e in skipped
    ), skipped
    assert result.tally("applied") == 18
    assert result.exit_code == 1
    assert 1.0 <= elapsed < 1.0 + 1.5, elapsed
    logged = scalar(
        conn,
        "select count(*) from prebuilds.reconciliation_action_log "
        "where outcome = 'failed' and error like '%%statement timeout%%'",
    )
    assert logged == 3
    assert overfull(conn) == []


# --- a killed connection -----------------------------------------------------------------------


def kill_with_two_in_flight(
    conn: Conn,
    writer: PipelinedWrites,
    pid: int,
    first: PlannedAction,
    second: PlannedAction,
    sleeping: str,
) -> tuple[tuple[PlannedAction, Outcome | None], tuple[PlannedAction, Outcome | None]]:
    """Send both actions, wait until one of them sleeps in its create (``sleeping`` says which),
    terminate the write backend, and return both results in the order sent."""
    writer.send(first)
    writer.send(second)
    wait_until(
        lambda: scalar(
            conn, "select wait_event = 'PgSleep' from pg_stat_activity where pid = %s", (pid,)
        ),
        sleeping,
    )
    assert scalar(conn, "select pg_terminate_backend(%s, 5000)", (pid,))
    return writer.receive(), writer.receive()


def test_a_write_connection_killed_with_two_actions_in_flight(conn: Conn, db_url: str) -> None:
    """pg_terminate_backend while the first of two pipelined creates runs: both are reported
    failed (neither committed), the log says so after settling, nothing is applied twice, and
    the pool hands out a working connection again."""
    a = active_preset(conn, "a", 1)
    b = active_preset(conn, "b", 1)
    conn.execute(SLOW_PRESETS)
    slow(conn, "a", 30)
    with started_run(db_url) as run:
        first, second = run.creates[a], run.creates[b]
        with run.pool.connection() as write:
            pid = backend_of(write)
            with PipelinedWrites(write, run.run_id, Limits()) as writer:
                (a1, o1), (a2, o2) = kill_with_two_in_flight(
                    conn, writer, pid, first, second, "the first create to sleep"
                )
                assert writer.broken
        outcomes = [o1, o2]
        assert (a1, a2) == (first, second)
        assert all(o is not None and o.outcome == "failed" for o in outcomes), outcomes
        assert live_prebuilds(conn, a) == 0 and live_prebuilds(conn, b) == 0
        settled = cycle.settle_outcomes(run.pool, run.run_id, [o for o in outcomes if o])
        assert [o.outcome for o in settled] == ["failed", "failed"]
        assert {s: o for s, (o, _) in logged(conn, run.run_id).items()} == {
            first.seq: "failed",
            second.seq: "failed",
        }
        with run.pool.connection() as again:
            assert again.execute("select 1").fetchone() == (1,)
        run.plan_conn.rollback()
    print(f"\nkilled with two in flight: both failed ({o1 and o1.error}), logged, none applied")


def test_a_kill_after_the_first_commit_keeps_its_result_and_fails_the_second(
    conn: Conn, db_url: str
) -> None:
    """The first action committed and its result came back; the second is running when the
    backend is killed: the first stays applied, the second fails, and the log agrees."""
    a = active_preset(conn, "a", 1)
    b = active_preset(conn, "b", 1)
    conn.execute(SLOW_PRESETS)
    slow(conn, "b", 30)
    with started_run(db_url) as run:
        first, second = run.creates[a], run.creates[b]
        with run.pool.connection() as write:
            pid = backend_of(write)
            with PipelinedWrites(write, run.run_id, Limits()) as writer:
                (_, o1), (_, o2) = kill_with_two_in_flight(
                    conn, writer, pid, first, second, "the second create to sleep"
                )
        assert o1 is not None and o1.outcome == "applied"
        assert o2 is not None and o2.outcome == "failed"
        settled = cycle.settle_outcomes(run.pool, run.run_id, [o1, o2])
        run.plan_conn.rollback()
    assert [o.outcome for o in settled] == ["applied", "failed"]
    assert {s: o for s, (o, _) in logged(conn, run.run_id).items()} == {
        first.seq: "applied",
        second.seq: "failed",
    }
    assert live_prebuilds(conn, a) == 1 and live_prebuilds(conn, b) == 0


# --- the lock and a second reconciler ----------------------------------------------------------


def test_a_lost_lock_refuses_the_pipelined_action_and_a_second_reconciler_waits(
    conn: Conn, db_url: str
) -> None:
    """Two creates in flight on one connection; the plan connection is killed while the first
    runs (it already passed the licence check). The first commits, the second is refused
    (PBL01: not applied, left for the next cycle), and a second reconciler, started at once,
    applies the rest only after the first one's write committed."""
    a = active_preset(conn, "a", 1)
    b = active_preset(conn, "b", 1)
    conn.execute(SLOW_PRESETS)
    slow(conn, "a", 1.0)
    second_run: dict[str, Any] = {}
    with started_run(db_url) as run:
        first, second = run.creates[a], run.creates[b]
        with run.pool.connection() as write:
            pid = backend_of(write)
            with PipelinedWrites(write, run.run_id, Limits()) as writer:
                writer.send(first)
                writer.send(second)
                wait_until(
                    lambda: scalar(
                        conn,
                        "select wait_event = 'PgSleep' from pg_stat_activity where pid = %s",
                        (pid,),
                    ),
                    "the first create to sleep",
                )
                plan_pid = run.plan_conn.info.backend_pid
                assert scalar(conn, "select pg_terminate_backend(%s, 5000)", (plan_pid,))
                rival = threading.Thread(
                    target=lambda: second_run.setdefault("result", run_cycle(db_url))
                )
                rival.start()
                (_, o1), (_, o2) = writer.receive(), writer.receive()
                assert not writer.broken
        rival.join(timeout=60)
    assert o1 is not None and o1.outcome == "applied"
    assert o2 is None  # refused: the lock is gone
    result = second_run["result"]
    assert result.status == "done" and result.failed == 0
    # The rival planned b's create (and maybe a's, which the re-check then skips) and applied
    # b's; a's single prebuild is the first run's.
    assert live_prebuilds(conn, a) == 1 and live_prebuilds(conn, b) == 1
    first_committed = scalar(
        conn,
        "select finished_at from prebuilds.reconciliation_action_log "
        "where run_id = %s and seq = %s",
        (run.run_id, first.seq),
    )
    rival_started = scalar(
        conn,
        "select min(started_at) from prebuilds.reconciliation_action_log where run_id = %s",
        (result.run_id,),
    )
    assert rival_started >= first_committed
    assert overfull(conn) == []


# --- stop --------------------------------------------------------------------------------------


def test_stop_finishes_the_actions_in_flight_and_leaves_the_rest(conn: Conn, db_url: str) -> None:
    """A stop request during a pipelined cycle: the actions already sent (at most two per
    connection) finish and are recorded, none is taken after, the run is interrupted, and the
    next cycle applies the rest."""
    for i in range(8):
        active_preset(conn, f"p{i}", 5)
    stop = threading.Event()
    seen: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        seen.append(outcome)
        stop.set()

    result = run_cycle(db_url, stop=stop, on_outcome=on_outcome)
    assert result.interrupted and result.failed == 0
    applied = result.tally("applied")
    assert 1 <= applied <= cycle.WRITE_POOL_SIZE * cycle.PIPELINE_DEPTH
    assert len(seen) == len(result.outcomes) == applied
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_action_log") == applied
    again = run_cycle(db_url)
    assert again.failed == 0 and again.tally("applied") == 40 - applied
    assert overfull(conn) == []
    print(
        f"\nstopped a pipelined cycle after its first outcome: {applied} applied, rest next cycle"
    )
