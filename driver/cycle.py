"""One reconciliation cycle (SPEC 4.6): lock, one read, apply through a pool of two, record.

The plan connection opens a ``repeatable read, read only`` transaction, takes the advisory lock
``locks.RECONCILE`` with ``pg_try_advisory_xact_lock`` and reads the whole plan in one statement.
Only then does a ``ConnectionPool(min_size=2, max_size=2)`` open; cancels and deletes are applied
first, then creates, each as one autocommit statement that calls the write function and logs the
outcome in the same transaction. The plan transaction commits last, releasing the lock, so a
second reconciler never plans while the first is still writing. At most three connections.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool, PoolTimeout

from driver import locks
from driver.migrations import EXPECTED_REVISION
from driver.model import CycleResult, Outcome, OutcomeKind, Plan, PlannedAction, PlanRow
from driver.queries import query

log = logging.getLogger("prebuilds")

APPLICATION_NAME = "prebuilds-reconciler"
WRITE_APPLICATION_NAME = "prebuilds-reconciler-write"
WRITE_POOL_SIZE = 2
CONNECT_TIMEOUT_S = 10

#: Errors that mean "this schema is not the one the driver speaks".
_SCHEMA_ERRORS = (
    errors.UndefinedTable,
    errors.UndefinedFunction,
    errors.UndefinedColumn,
    errors.InvalidSchemaName,
)


#: The class every connection of a cycle is made with. Benchmarks swap in a subclass that counts
#: statements and round trips; nothing else should change it.
connection_class: type[psycopg.Connection[Any]] = psycopg.Connection


class CannotRun(Exception):
    """The cycle cannot run at all (exit code 2): no database, wrong schema, bad config."""


def connect(url: str, application_name: str = APPLICATION_NAME) -> psycopg.Connection[Any]:
    try:
        return connection_class.connect(
            url,
            application_name=application_name,
            connect_timeout=CONNECT_TIMEOUT_S,
            prepare_threshold=None,
        )
    except psycopg.OperationalError as exc:
        raise CannotRun(f"cannot connect to the database: {first_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:  # malformed URL
        raise CannotRun(f"bad database URL: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_plan(conn: psycopg.Connection[Any]) -> Plan:
    """The cycle's only read. Raises CannotRun when the schema is missing or at another revision."""
    try:
        with conn.cursor(row_factory=class_row(PlanRow)) as cur:
            rows = cur.execute(query("read_plan")).fetchall()
    except _SCHEMA_ERRORS as exc:
        raise CannotRun(
            f"the database schema is not at revision {EXPECTED_REVISION} "
            f"({first_line(exc)}); run `alembic upgrade head`"
        ) from exc
    plan = Plan.from_rows(rows)
    if plan.schema_revision != EXPECTED_REVISION:
        raise CannotRun(
            f"the database schema is at revision {plan.schema_revision}, this driver needs "
            f"{EXPECTED_REVISION}; run `alembic upgrade head` (or upgrade the driver)"
        )
    return plan


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise CannotRun unless the schema is at the driver's revision (for commands without a
    plan read, which carries its own check)."""
    try:
        row = conn.execute(query("schema_revision")).fetchone()
    except _SCHEMA_ERRORS as exc:
        conn.rollback()
        raise CannotRun(
            f"the prebuilds schema is not installed ({first_line(exc)}); run `alembic upgrade head`"
        ) from exc
    conn.rollback()
    revision = row[0] if row else None
    if revision != EXPECTED_REVISION:
        raise CannotRun(
            f"the database schema is at revision {revision}, this driver needs "
            f"{EXPECTED_REVISION}; run `alembic upgrade head` (or upgrade the driver)"
        )


def plan_only(url: str) -> Plan:
    """Read the plan without the lock and without writing anything (``--dry-run``)."""
    with connect(url) as conn:
        conn.read_only = True
        plan = read_plan(conn)
        conn.rollback()
    return plan


def run_cycle(
    url: str,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
) -> CycleResult:
    """Run one cycle against ``url``; see the module docstring.

    When ``stop`` is set during the cycle, the actions in flight finish, the rest are left for
    the next cycle, and the run is recorded as interrupted.
    """
    started = time.perf_counter()
    with connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            acquired = conn.execute(query("take_lock"), {"key": locks.RECONCILE}).fetchone()
            if not (acquired and acquired[0]):
                return CycleResult(status="lock_busy")
            plan = read_plan(conn)
            plan_seconds = time.perf_counter() - started
            # The writes happen while this transaction (and so the lock) is still open.
            with open_write_pool(url) as pool:
                return apply_plan(pool, plan, plan_seconds, on_outcome, stop)


def open_write_pool(url: str) -> ConnectionPool[Any]:
    pool: ConnectionPool[Any] = ConnectionPool(
        url,
        min_size=WRITE_POOL_SIZE,
        max_size=WRITE_POOL_SIZE,
        open=False,
        connection_class=connection_class,
        check=ConnectionPool.check_connection,
        kwargs={
            "autocommit": True,
            "application_name": WRITE_APPLICATION_NAME,
            "connect_timeout": CONNECT_TIMEOUT_S,
            # No server-side prepared statements: behind PgBouncer in transaction mode they
            # would land on another client's server connection.
            "prepare_threshold": None,
        },
        name="prebuilds-write",
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    except PoolTimeout as exc:
        pool.close()
        raise CannotRun(f"cannot open the write connections: {first_line(exc)}") from exc
    return pool


def apply_plan(
    pool: ConnectionPool[Any],
    plan: Plan,
    plan_seconds: float,
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
) -> CycleResult:
    """Record a run, apply its actions in two phases, record how it ended, prune old runs."""
    started = time.perf_counter()
    with pool.connection() as conn:
        row = conn.execute(
            query("start_run"),
            {
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "actions_planned": len(plan.actions),
                "plan_ms": plan_seconds * 1000,
            },
        ).fetchone()
    assert row is not None
    run_id: int = row[0]

    outcomes: list[Outcome] = []
    error: str | None = None
    interrupted = False
    # Set on a stop request, or when this thread is interrupted: workers finish the action in
    # hand and take no other.
    halt = threading.Event()
    try:
        if not plan.paused:
            removals = [a for a in plan.actions if a.action in ("cancel", "delete")]
            creates = [a for a in plan.actions if a.action == "create"]
            notes = [a for a in plan.actions if a.action == "backoff"]
            # Cancels and deletes all finish before the first create starts.
            for phase in (removals, creates):
                done, complete = run_phase(pool, run_id, phase, halt, stop, on_outcome)
                outcomes.extend(done)
                interrupted = interrupted or not complete
            for outcome in note_actions(pool, run_id, notes):
                outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
    except BaseException as exc:
        halt.set()
        error = f"cycle interrupted: {first_line(exc)}"
        raise
    finally:
        failed = sum(1 for o in outcomes if o.outcome == "failed")
        status = (
            "paused"
            if plan.paused
            else "failed"
            if failed or error
            else "interrupted"
            if interrupted
            else "succeeded"
        )
        try:
            with pool.connection() as conn:
                conn.execute(
                    query("finish_run"),
                    {
                        "run_id": run_id,
                        "status": status,
                        "applied": sum(1 for o in outcomes if o.outcome == "applied"),
                        "skipped": sum(1 for o in outcomes if o.outcome == "skipped"),
                        "failed": failed,
                        "error": error,
                    },
                )
                pruned = conn.execute(query("prune_runs")).rowcount
                if pruned:
                    log.debug("pruned %s runs older than settings.run_retention", pruned)
        except (psycopg.Error, PoolTimeout) as exc:
            log.error(
                "could not record the end of run %s: %s",
                run_id,
                first_line(exc),
                extra={"event": "run_record_error", "run_id": run_id, "error": first_line(exc)},
            )
    return CycleResult(
        status="paused" if plan.paused else "done",
        plan=plan,
        run_id=run_id,
        outcomes=tuple(sorted(outcomes, key=lambda o: o.action.seq)),
        interrupted=interrupted,
        plan_seconds=plan_seconds,
        apply_seconds=time.perf_counter() - started,
    )


def action_params(run_id: int, action: PlannedAction) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "seq": action.seq,
        "preset_id": action.preset_id,
        "workspace_id": action.workspace_id,
        "reason": action.reason,
        "action": action.action,
    }


def run_phase(
    pool: ConnectionPool[Any],
    run_id: int,
    actions: Sequence[PlannedAction],
    halt: threading.Event,
    stop: threading.Event | None,
    on_outcome: Callable[[Outcome], None] | None,
) -> tuple[list[Outcome], bool]:
    """Apply ``actions`` in plan order with two workers; returns the outcomes and whether every
    action was taken (false when stopped early).

    Each worker borrows one pooled connection for as long as it has actions, so the pool's
    health check costs one round trip per worker and phase, not one per action; a connection
    that breaks is handed back (the pool drops it) and the worker borrows another.
    """
    queue = iter(actions)
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def next_action() -> PlannedAction | None:
        with lock:
            if halt.is_set() or (stop is not None and stop.is_set()):
                return None
            return next(queue, None)

    def work() -> None:
        action = next_action()
        while action is not None:
            with pool.connection() as conn:
                while action is not None:
                    outcome = apply_action(conn, run_id, action)
                    with lock:
                        outcomes.append(outcome)
                    if on_outcome:
                        on_outcome(outcome)
                    action = next_action()
                    if conn.broken:
                        break

    workers = min(WRITE_POOL_SIZE, len(actions))
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="apply") as executor:
        for future in [executor.submit(work) for _ in range(workers)]:
            future.result()
    return outcomes, len(outcomes) == len(actions)


def apply_action(conn: psycopg.Connection[Any], run_id: int, action: PlannedAction) -> Outcome:
    """Apply one action in its own transaction (one autocommit statement that also logs it).

    A failure is logged with its error and returned, never raised.
    """
    params = action_params(run_id, action)
    try:
        row = conn.execute(query(f"apply_{action.action}"), params).fetchone()
        assert row is not None
        outcome: OutcomeKind = row[0]
        return Outcome(action, outcome, row[1])
    except psycopg.Error as exc:
        message = first_line(exc)
        # Debug only: the failure is returned (and reported once by the caller's on_outcome).
        log.debug("action %s %s failed: %s", action.seq, action.action, message)
        try:
            conn.execute(query("log_action"), {**params, "outcome": "failed", "error": message})
        except psycopg.Error as log_exc:
            log.error(
                "could not log the failure of action %s: %s",
                action.seq,
                log_exc,
                extra={"event": "action_log_error", "run_id": run_id, "seq": action.seq},
            )
        return Outcome(action, "failed", action.workspace_id, message)


def note_actions(
    pool: ConnectionPool[Any], run_id: int, notes: Sequence[PlannedAction]
) -> Iterable[Outcome]:
    """Record informational rows (backoff) in one transaction."""
    if not notes:
        return []
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            query("log_action"),
            [{**action_params(run_id, a), "outcome": "noted", "error": None} for a in notes],
        )
    return [Outcome(a, "noted", None) for a in notes]
