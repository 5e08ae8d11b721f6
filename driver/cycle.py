"""One reconciliation cycle (SPEC 4.6): lock, one read, apply through a pool of two, record.

The plan connection opens a ``repeatable read, read only`` transaction, takes the advisory lock
``locks.RECONCILE`` (``prebuilds.take_reconcile_lock``, which also locks a random token that
identifies this transaction) and reads the whole plan in one statement. Only then does a
``ConnectionPool(min_size=2, max_size=2)`` open; cancels and deletes are applied first, then
creates, each as one autocommit call of ``prebuilds.apply_action``, which applies the action and
logs it in one transaction; each write connection keeps up to ``PIPELINE_DEPTH`` actions in
flight (``PipelinedWrites``), every one its own transaction ended by its own Sync. The plan
transaction commits last, releasing the lock. At most three connections.

**The lock is the only licence to write.** The run row records the token; every action checks,
in its own transaction, that the token is still held, behind a write fence that a
later run's ``start_run`` waits on. So when the plan connection dies (server restart, a killed
backend, an idle timeout), the next action is refused (SQLSTATE ``PBL01``) even though the write
pool reconnects, and a second reconciler that takes the free lock starts writing only after the
first one's writes in flight have committed. A keepalive on the plan connection notices the loss
within a second even between actions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import errors, pq
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from . import locks
from .metrics import Metrics
from .migrations import EXPECTED_REVISION
from .model import (
    BlockedPreset,
    CycleResult,
    MissingSettings,
    Outcome,
    Plan,
    PlannedAction,
    PlanRow,
)
from .queries import query

log = logging.getLogger("prebuilds")
T = TypeVar("T")

APPLICATION_NAME = "prebuilds-reconciler"
WRITE_APPLICATION_NAME = "prebuilds-reconciler-write"
WRITE_POOL_SIZE = 2
#: Actions in flight per write connection (``PipelinedWrites``). 1 sends each action after the
#: previous one's result is back (``SerialWrites``); 2 lets the server start the next action
#: while the client reads the previous one's result and prepares the one after. With two
#: connections, up to four actions are in flight, never two creates of one preset.
PIPELINE_DEPTH = 2
#: A pipelined action past its statement timeout is cancelled from the client: the request is
#: sent again after this many seconds without an answer, and after this many requests the
#: connection is given up.
CANCEL_GRACE_S = 5.0
CANCEL_ATTEMPTS = 3
CONNECT_TIMEOUT_S = 10
#: How often the plan connection is pinged while the writers apply.
KEEPALIVE_S = 1.0
#: The server ends the lock transaction of a driver that stopped pinging for this long (a frozen
#: or stopped process), which frees the lock for the next reconciler; the frozen driver's writes
#: are then refused.
LOCK_IDLE_TIMEOUT_S = 30.0
#: What every "wrong schema" message tells the operator to do.
MIGRATE_HINT = "run `prebuilds migrate` (or `alembic upgrade head`)"
#: SQLSTATE raised by start_run and apply_action when the run no longer holds the lock.
LOCK_LOST_SQLSTATE = "PBL01"

#: Errors that mean "this schema is not the one the driver speaks".
_SCHEMA_ERRORS = (
    errors.UndefinedTable,
    errors.UndefinedFunction,
    errors.UndefinedColumn,
    errors.InvalidSchemaName,
)


@dataclass(frozen=True)
class Limits:
    """Bounds on every wait of a cycle (``--lock-timeout``, ``--statement-timeout``)."""

    lock_timeout: float = 5.0
    statement_timeout: float = 60.0

    @property
    def lock_timeout_ms(self) -> int:
        return max(1, round(self.lock_timeout * 1000))

    @property
    def statement_timeout_ms(self) -> int:
        return max(1, round(self.statement_timeout * 1000))

    def params(self) -> dict[str, int]:
        """The named parameters every query that sets the timeouts takes."""
        return {
            "statement_timeout_ms": self.statement_timeout_ms,
            "lock_timeout_ms": self.lock_timeout_ms,
        }


#: The class every connection of a cycle is made with, and the cursor class of the two-statement
#: writes. Benchmarks swap in subclasses that count statements and round trips; nothing else
#: should change them.
connection_class: type[psycopg.Connection[Any]] = psycopg.Connection
write_cursor_class: type[psycopg.ClientCursor[Any]] = psycopg.ClientCursor


class CannotRun(Exception):
    """The cycle cannot run at all (exit code 2): no database, wrong schema, bad config."""


def schema_missing(exc: BaseException) -> CannotRun:
    """The one wording, for every command, of "the schema is not there"."""
    return CannotRun(f"the prebuilds schema is not installed ({first_line(exc)}); {MIGRATE_HINT}")


def schema_elsewhere(revision: str | None) -> CannotRun:
    """The one wording of "the schema is at another revision than this driver's"."""
    return CannotRun(
        f"the database schema is at revision {revision}, this driver needs "
        f"{EXPECTED_REVISION}; {MIGRATE_HINT}, or upgrade the driver"
    )


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


def is_lock_lost(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and exc.sqlstate == LOCK_LOST_SQLSTATE


def read_plan(conn: psycopg.Connection[Any]) -> Plan:
    """The cycle's only read. Raises CannotRun when the schema is missing or at another revision,
    or when the settings row is gone."""
    try:
        rows: list[PlanRow] = conn.execute(query("read_plan")).fetchall()
    except _SCHEMA_ERRORS as exc:
        raise schema_missing(exc) from exc
    except (errors.QueryCanceled, errors.LockNotAvailable) as exc:
        # QueryCanceled: statement_timeout; LockNotAvailable: lock_timeout (a table locked by
        # a migration or a careless operator).
        raise CannotRun(f"reading the plan took too long: {first_line(exc)}") from exc
    try:
        plan = Plan.from_rows(rows)
    except MissingSettings as exc:
        raise CannotRun(str(exc)) from exc
    if plan.schema_revision != EXPECTED_REVISION:
        raise schema_elsewhere(plan.schema_revision)
    return plan


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise CannotRun unless the schema is at the driver's revision (for commands without a
    plan read, which carries its own check)."""
    try:
        row = conn.execute(query("schema_revision")).fetchone()
    except _SCHEMA_ERRORS as exc:
        conn.rollback()
        raise schema_missing(exc) from exc
    conn.rollback()
    revision = row[0] if row else None
    if revision != EXPECTED_REVISION:
        raise schema_elsewhere(revision)


def plan_only(url: str, limits: Limits | None = None) -> Plan:
    """Read the plan without the lock and without writing anything (``--dry-run``)."""
    limits = limits or Limits()
    with connect(url) as conn:
        conn.read_only = True
        conn.execute(query("local_limits"), limits.params())
        plan = read_plan(conn)
        plan = replace(plan, blocked=read_blocked(conn))
        conn.rollback()
    return plan


def read_blocked(conn: psycopg.Connection[Any]) -> tuple[BlockedPreset, ...]:
    """Pools whose creates are held back (hard-limited, in backoff, capped)."""
    with conn.cursor(row_factory=class_row(BlockedPreset)) as cur:
        return tuple(cur.execute(query("blocked_presets")).fetchall())


@dataclass(frozen=True)
class LockHolder:
    """The plan transaction that holds the reconcile lock: its backend and its token."""

    key: int
    pid: int
    token: int


class LockKeeper:
    """Pings the plan connection while the writers apply; ``lost`` is set when it breaks.

    The ping keeps the lock transaction from looking idle (so the server's, or our own,
    ``idle_in_transaction_session_timeout`` only ends a driver that has really stopped) and
    notices a lost connection within ``KEEPALIVE_S``, between two actions. Only this thread uses
    the plan connection until ``stop()`` returns.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.lost = threading.Event()
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)

    def __enter__(self) -> LockKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()

    def _run(self) -> None:
        while not self._stop.wait(KEEPALIVE_S):
            try:
                self.conn.execute(query("keepalive"))
            except psycopg.Error as exc:
                self.mark_lost(f"the plan connection holding the lock broke: {first_line(exc)}")
                return


def take_lock_params(limits: Limits) -> dict[str, Any]:
    """Parameters of the ``take_lock`` query: the key and the lock transaction's local limits."""
    return {
        "key": locks.RECONCILE,
        **limits.params(),
        "idle_timeout_ms": round(LOCK_IDLE_TIMEOUT_S * 1000),
    }


def run_cycle(
    url: str,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
    limits: Limits | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> CycleResult:
    """Run one cycle against ``url`` on connections of its own (cron: ``prebuilds reconcile``);
    see the module docstring and ``Session.run_cycle``."""
    with Session(url) as session:
        return session.run_cycle(on_outcome=on_outcome, stop=stop, limits=limits, on_plan=on_plan)


class Session:
    """The connections of a reconciler: the plan connection and the write pool of two, kept
    from one cycle to the next by ``prebuilds run`` (a warm backend plans faster: its catalogue
    caches and the plan function's cached plans survive), opened on first use and opened again
    when they broke. Still at most three connections. Behind PgBouncer in transaction mode a
    kept connection holds no server connection between cycles."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._pool: ConnectionPool[Any] | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._drop_connection()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop_connection()
            self._conn = connect(self.url)
            self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self._conn.read_only = True
        return self._conn

    @contextlib.contextmanager
    def _idle_use(self) -> Iterator[psycopg.Connection[Any]]:
        """The plan connection between cycles, for one short transaction of the caller's. On
        an error the connection is dropped when it broke, else its transaction rolled back, so
        the next cycle's lock statement never meets an aborted transaction; the error goes on
        to the caller, which reports it."""
        try:
            yield self._connection()
        except (CannotRun, psycopg.Error):
            if self._conn is not None and self._conn.broken:
                self._drop_connection()
            elif self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.rollback()
            raise

    def refresh_metrics(self, metrics: Metrics) -> None:
        """Read the database-backed metrics on the idle plan connection (no fourth
        connection); a failure is logged, never fatal."""
        try:
            with self._idle_use() as conn:
                metrics.refresh(conn)
        except (CannotRun, psycopg.Error) as exc:
            log.warning(
                "could not refresh metrics: %s", first_line(exc), extra={"event": "metrics_error"}
            )

    def next_change_in(self) -> float | None:
        """Seconds until the plan changes by the clock alone (``prebuilds.next_change_at``, on
        the server's clock), read on the idle plan connection; None when nothing is due or the
        read failed (logged: the loop then waits for a notification or the interval)."""
        try:
            with self._idle_use() as conn:
                row = conn.execute(query("next_change")).fetchone()
                conn.rollback()
        except (CannotRun, psycopg.Error) as exc:
            log.debug("reading next_change_at: %s", first_line(exc))
            return None
        return None if row is None or row[0] is None else max(float(row[0]), 0.0)

    def wait_for_claims(self, timeout: float) -> bool:
        """Before a loop's cycle: wait (at most ``timeout`` seconds) until the claims in flight
        have ended, in a transaction of its own on the plan connection, so the cycle's snapshot
        sees every claim whose notification another claim sent (``prebuilds.notify_claim``).
        False when the wait timed out or failed: the caller cycles again shortly."""
        try:
            with self._idle_use() as conn:
                row = conn.execute(
                    query("wait_for_claims"), {"timeout_ms": max(1, round(timeout * 1000))}
                ).fetchone()
                conn.rollback()
        except (CannotRun, psycopg.Error) as exc:
            log.debug("waiting for claims in flight: %s", first_line(exc))
            return False
        return bool(row and row[0])

    def send_probe(self, token: str) -> bool:
        """The listen self-test's notification (driver/wake.py), sent and committed on the
        plan connection (no extra connection); False when it could not be sent."""
        try:
            with self._idle_use() as conn:
                conn.execute(query("probe_notify"), {"token": token})
                conn.commit()
        except (CannotRun, psycopg.Error) as exc:
            log.debug("sending the listen self-test: %s", first_line(exc))
            return False
        return True

    def _write_pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            self._pool = open_write_pool(self.url)
        return self._pool

    def _take_lock(self, limits: Limits) -> tuple[psycopg.Connection[Any], Any]:
        """The lock statement on the plan connection; a kept connection that the server closed
        while idle (a restart, idle_session_timeout) is replaced once."""
        reused = self._conn is not None
        for attempt in (1, 2):
            conn = self._connection()
            try:
                return conn, conn.execute(query("take_lock"), take_lock_params(limits)).fetchone()
            except _SCHEMA_ERRORS as exc:
                conn.rollback()
                raise schema_missing(exc) from exc
            except psycopg.OperationalError:
                self._drop_connection()
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def run_cycle(
        self,
        *,
        on_outcome: Callable[[Outcome], None] | None = None,
        stop: threading.Event | None = None,
        limits: Limits | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> CycleResult:
        """One cycle: see the module docstring.

        When ``stop`` is set during the cycle, the actions in flight finish, the rest are left
        for the next cycle, and the run is recorded as interrupted. Raises CannotRun (or a
        psycopg error) only before anything was applied.
        """
        limits = limits or Limits()
        started = time.perf_counter()
        conn, row = self._take_lock(limits)
        try:
            if not (row and row[0]):
                conn.rollback()
                return CycleResult(status="lock_busy")
            holder = LockHolder(locks.RECONCILE, row[1], row[2])
            plan = read_plan(conn)
        except BaseException:
            if not conn.broken:
                conn.rollback()
            raise
        plan_seconds = time.perf_counter() - started
        if on_plan is not None:
            on_plan(plan)
        # The writes happen while this transaction (and so the lock) is still open.
        try:
            with LockKeeper(conn) as keeper:
                result = apply_plan(
                    self._write_pool(), plan, plan_seconds, holder, keeper, on_outcome, stop, limits
                )
        except BaseException:
            # Never carry an open lock transaction into the next cycle of a kept connection.
            if conn.broken:
                self._drop_connection()
            else:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            raise
        try:
            conn.commit()
        except psycopg.Error as exc:
            # A read-only transaction: failing to end it only means the lock is already gone.
            log.debug("ending the lock transaction: %s", first_line(exc))
        if conn.broken:
            self._drop_connection()
        elif not plan.paused and not plan.has_work and result.lock_lost is None:
            # Nothing to do: say why pools are not being filled, if some are held back. A read
            # after the cycle, on the idle plan connection; never on a cycle that had work.
            try:
                blocked = read_blocked(conn)
                conn.rollback()
                result = replace(result, plan=replace(plan, blocked=blocked))
            except psycopg.Error as exc:
                log.debug("reading blocked presets: %s", first_line(exc))
        return result


def open_write_pool(url: str) -> ConnectionPool[Any]:
    """Two autocommit connections with no session state: each write statement carries its own
    transaction-local timeouts (see ``write``), so nothing stays on a server connection that a
    pooler in transaction mode would hand to another client."""
    pool: ConnectionPool[Any] = ConnectionPool(
        url,
        min_size=WRITE_POOL_SIZE,
        max_size=WRITE_POOL_SIZE,
        open=False,
        connection_class=connection_class,
        check=ConnectionPool.check_connection,
        timeout=CONNECT_TIMEOUT_S,
        reconnect_timeout=CONNECT_TIMEOUT_S,
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


def start_run(
    pool: ConnectionPool[Any],
    plan: Plan,
    plan_seconds: float,
    holder: LockHolder,
    limits: Limits,
) -> int:
    """Record the run (after earlier runs' writes in flight have committed); CannotRun when the
    lock is already gone or the fence cannot be passed, since nothing was applied yet."""
    try:
        with pool.connection() as conn:
            row = write(
                conn,
                "start_run",
                limits,
                {
                    "lock_key": holder.key,
                    "lock_pid": holder.pid,
                    "lock_token": holder.token,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "actions_planned": len(plan.actions),
                    "actions_deferred": plan.deferred,
                    "plan_ms": plan_seconds * 1000,
                },
            )
    except psycopg.Error as exc:
        if is_lock_lost(exc):
            raise CannotRun(f"nothing applied: {first_line(exc)}") from exc
        if isinstance(exc, errors.LockNotAvailable):
            raise CannotRun(
                f"nothing applied: an earlier run's writes are still in flight ({first_line(exc)})"
            ) from exc
        raise
    except PoolTimeout as exc:
        raise CannotRun(f"nothing applied: no write connection: {first_line(exc)}") from exc
    assert row is not None
    run_id: int = row[0]
    return run_id


def apply_plan(
    pool: ConnectionPool[Any],
    plan: Plan,
    plan_seconds: float,
    holder: LockHolder,
    keeper: LockKeeper,
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
    limits: Limits | None = None,
) -> CycleResult:
    """Record a run, apply its actions in two phases, record how it ended, prune old runs."""
    limits = limits or Limits()
    started = time.perf_counter()
    run_id = start_run(pool, plan, plan_seconds, holder, limits)

    outcomes: list[Outcome] = []
    error: str | None = None
    interrupted = False
    # Set on a stop request, a lost lock, or when this thread is interrupted: workers finish the
    # action in hand and take no other.
    halt = threading.Event()
    try:
        if not plan.paused:
            removals = [a for a in plan.actions if a.action in ("cancel", "fail_job", "delete")]
            creates = [a for a in plan.actions if a.action == "create"]
            notes = [a for a in plan.actions if a.action == "backoff"]
            # Cancels, failed hung jobs and deletes all finish before the first create starts.
            for phase in (removals, creates):
                done, complete = run_phase(
                    pool, run_id, phase, halt, stop, on_outcome, keeper, limits
                )
                outcomes.extend(done)
                interrupted = interrupted or not complete
            if not keeper.lost.is_set():
                for outcome in note_actions(pool, run_id, notes):
                    outcomes.append(outcome)
                    if on_outcome:
                        on_outcome(outcome)
    except BaseException as exc:
        halt.set()
        error = f"cycle interrupted: {first_line(exc)}"
        raise
    finally:
        outcomes = settle_outcomes(pool, run_id, outcomes)
        lost = keeper.reason if keeper.lost.is_set() else None
        failed = sum(1 for o in outcomes if o.outcome == "failed")
        if lost and error is None:
            left = len(plan.actions) - len(outcomes)
            error = f"lost the reconcile lock: {lost}; {left} actions left for the next cycle"
        status = (
            "paused"
            if plan.paused
            else "failed"
            if failed or error
            else "interrupted"
            if interrupted
            else "succeeded"
        )
        finish_run(pool, run_id, status, failed, error)
    return CycleResult(
        status="paused" if plan.paused else "done",
        plan=plan,
        run_id=run_id,
        outcomes=tuple(sorted(outcomes, key=lambda o: o.action.seq)),
        interrupted=interrupted and not lost,
        plan_seconds=plan_seconds,
        apply_seconds=time.perf_counter() - started,
        lock_lost=lost,
    )


def settle_outcomes(
    pool: ConnectionPool[Any], run_id: int, outcomes: list[Outcome]
) -> list[Outcome]:
    """Make the outcomes true: an action whose connection broke before its commit was
    acknowledged may have committed (its log row says so), and every failure gets a log row."""
    failed = [o for o in outcomes if o.outcome == "failed"]
    if not failed:
        return outcomes
    try:  # the connection may have been killed under us
        return twice(lambda: _settle(pool, run_id, outcomes, failed), pause=0.2)
    except (psycopg.Error, PoolTimeout) as exc:
        log.error(
            "could not log the %d failed actions of run %s: %s",
            len(failed),
            run_id,
            first_line(exc),
            extra={"event": "action_log_error", "run_id": run_id, "error": first_line(exc)},
        )
        return outcomes


def _settle(
    pool: ConnectionPool[Any], run_id: int, outcomes: list[Outcome], failed: list[Outcome]
) -> list[Outcome]:
    with pool.connection() as conn:
        rows = conn.execute(
            query("logged_outcomes"),
            {"run_id": run_id, "seqs": [o.action.seq for o in failed]},
        ).fetchall()
        logged = {seq: (outcome, workspace_id) for seq, outcome, workspace_id in rows}
        settled = [
            Outcome(o.action, logged[o.action.seq][0], logged[o.action.seq][1])
            if o.outcome == "failed"
            and o.action.seq in logged
            and logged[o.action.seq][0] != "failed"
            else o
            for o in outcomes
        ]
        unlogged = [o for o in settled if o.outcome == "failed" and o.action.seq not in logged]
        if unlogged:
            conn.execute(
                query("log_actions"),
                log_rows(run_id, [(o.action, "failed", o.error) for o in unlogged]),
            )
    return settled


def twice(write: Callable[[], T], pause: float) -> T:
    """Bookkeeping after the actions (logs, the run's end) gets a second try after ``pause``:
    the connection may have been killed, or the server be coming back. The second error is
    raised."""
    try:
        return write()
    except (psycopg.Error, PoolTimeout):
        time.sleep(pause)
        return write()


def finish_run(
    pool: ConnectionPool[Any], run_id: int, status: str, failed: int, error: str | None
) -> None:
    """Record how the run ended (two tries: the server may be coming back), then prune."""

    def record() -> None:
        with pool.connection() as conn:
            conn.execute(
                query("finish_run"),
                {"run_id": run_id, "status": status, "failed": failed, "error": error},
            )
            row = conn.execute(query("prune_runs")).fetchone()
            pruned, pruned_claim_stats = row if row else (0, 0)
            if pruned:
                log.debug("pruned %s runs older than settings.run_retention", pruned)
            if pruned_claim_stats:
                log.debug(
                    "pruned %s claim_stats rows older than settings.claim_stats_retention",
                    pruned_claim_stats,
                )

    try:
        twice(record, pause=0.5)
    except (psycopg.Error, PoolTimeout) as exc:
        log.error(
            "could not record the end of run %s: %s (the next cycle marks it abandoned)",
            run_id,
            first_line(exc),
            extra={"event": "run_record_error", "run_id": run_id, "error": first_line(exc)},
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


def log_rows(run_id: int, rows: Sequence[tuple[PlannedAction, str, str | None]]) -> dict[str, Any]:
    """Parameters of the ``log_actions`` query: ``(action, outcome, error)`` rows as one JSON
    array."""
    return {
        "run_id": run_id,
        "rows": Jsonb(
            [
                {
                    "seq": a.seq,
                    "preset_id": str(a.preset_id),
                    "action": a.action,
                    "workspace_id": None if a.workspace_id is None else str(a.workspace_id),
                    "reason": a.reason,
                    "outcome": outcome,
                    "error": error,
                }
                for a, outcome, error in rows
            ]
        ),
    }


class ActionQueue:
    """The actions of one phase, handed to the two workers in plan order, with two rules.

    Never two creates of one preset at once: ``create_prebuild`` holds the preset's row lock
    until it commits, so a second create would only wait for the first, and when the row is
    locked by someone else both writers would sit out a lock timeout each (PostgreSQL restarts a
    waiter's timeout when it moves up the queue). And once a create of a preset has timed out,
    waiting for that row or running past the statement timeout, the preset's other creates are
    not attempted in this cycle (each would likely cost the same timeout, one after the other):
    they are returned as failed ("not attempted") and the next cycle tries again.
    """

    def __init__(
        self,
        actions: Sequence[PlannedAction],
        halt: threading.Event,
        lost: threading.Event,
        stop: threading.Event | None,
    ) -> None:
        self._pending = list(actions)
        self._next = 0  # everything before this index is taken
        self._taken: set[int] = set()  # taken out of order (a busy preset was skipped)
        self._remaining = len(actions)
        self._creates = Counter(a.preset_id for a in actions if a.action == "create")
        self._busy: set[Any] = set()
        self._blocked: dict[Any, str] = {}
        self._cond = threading.Condition()
        self._halt, self._lost, self._stop = halt, lost, stop

    def _stopping(self) -> bool:
        return (
            self._halt.is_set()
            or self._lost.is_set()
            or (self._stop is not None and self._stop.is_set())
        )

    def take(self, wait: bool = True) -> tuple[PlannedAction | None, list[Outcome]]:
        """The next action to apply (None: nothing left, or stopping) and the actions skipped on
        the way because their preset's row is locked. When everything left is a create of a
        preset whose create is in flight, waits for one to be done, unless ``wait`` is false
        (a writer with actions of its own in flight must read their results first): then
        None."""
        skipped: list[Outcome] = []
        with self._cond:
            while True:
                if self._stopping():
                    return None, skipped
                while self._next < len(self._pending) and self._next in self._taken:
                    self._next += 1
                if self._next >= len(self._pending):
                    return None, skipped
                waiting = sum(self._creates[p] for p in self._busy)
                if self._remaining == waiting:
                    # Everything left is a create of a preset whose create is in flight.
                    if not wait:
                        return None, skipped
                    self._cond.wait()
                    continue
                for i in range(self._next, len(self._pending)):
                    if i in self._taken:
                        continue
                    action = self._pending[i]
                    create = action.action == "create"
                    if create and action.preset_id in self._blocked:
                        self._taken.add(i)
                        self._remaining -= 1
                        self._creates[action.preset_id] -= 1
                        skipped.append(
                            Outcome(
                                action,
                                "failed",
                                None,
                                "not attempted: an earlier create of this preset "
                                f"{self._blocked[action.preset_id]}",
                            )
                        )
                        continue
                    if create and action.preset_id in self._busy:
                        continue
                    self._taken.add(i)
                    self._remaining -= 1
                    if create:
                        self._busy.add(action.preset_id)
                        self._creates[action.preset_id] -= 1
                    return action, skipped
                # Only skipped actions were left: report them; the caller asks again.
                return None, skipped

    def done(self, action: PlannedAction | None, outcome: Outcome | None) -> None:
        with self._cond:
            if action is not None and action.action == "create":
                self._busy.discard(action.preset_id)
                if outcome is not None and outcome.lock_timeout:
                    why = f"timed out waiting for its row lock ({outcome.error})"
                    self._blocked.setdefault(action.preset_id, why)
                elif outcome is not None and outcome.statement_timeout:
                    why = f"ran past the statement timeout ({outcome.error})"
                    self._blocked.setdefault(action.preset_id, why)
            self._cond.notify_all()


def run_phase(
    pool: ConnectionPool[Any],
    run_id: int,
    actions: Sequence[PlannedAction],
    halt: threading.Event,
    stop: threading.Event | None,
    on_outcome: Callable[[Outcome], None] | None,
    keeper: LockKeeper,
    limits: Limits,
    depth: int | None = None,
) -> tuple[list[Outcome], bool]:
    """Apply ``actions`` in plan order with two workers; returns the outcomes and whether every
    action was taken (false when stopped early or when the lock was lost).

    Each worker borrows one pooled connection for as long as it has actions, so the pool's
    health check costs one round trip per worker and phase, not one per action; a connection
    that breaks is handed back (the pool drops it) and the worker borrows another. On it, the
    worker keeps up to ``depth`` actions in flight (``PIPELINE_DEPTH``; see
    ``PipelinedWrites``): it sends the next action before the previous one's result is back,
    and reads the results in the order it sent them.
    """
    depth = PIPELINE_DEPTH if depth is None else depth
    if depth < 1:
        raise ValueError(f"the pipeline depth must be at least 1, not {depth}")
    queue = ActionQueue(actions, halt, keeper.lost, stop)
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def record(outcome: Outcome) -> None:
        with lock:
            outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    def next_action(wait: bool = True) -> PlannedAction | None:
        while True:
            action, skipped = queue.take(wait)
            for outcome in skipped:
                record(outcome)
            if action is not None or not skipped:
                return action

    def apply_on(
        conn: psycopg.Connection[Any], action: PlannedAction | None
    ) -> PlannedAction | None:
        """Apply actions on ``conn``, ``action`` first. Returns the action to apply on another
        connection when this one broke; None when there is nothing left to apply (done,
        stopping, or the lock is gone)."""
        with writes_for(conn, run_id, limits, depth) as writer:
            while action is not None:
                writer.send(action)
                refused = False
                while writer.in_flight:
                    while not refused and not writer.broken and writer.in_flight < depth:
                        more = next_action(wait=False)
                        if more is None:
                            break
                        writer.send(more)
                    done, outcome = writer.receive()
                    queue.done(done, outcome)
                    if outcome is None:  # refused: the lock is gone
                        refused = True
                    else:
                        record(outcome)
                if refused:
                    keeper.mark_lost("the database refused the next action: lock gone")
                    return None
                action = next_action()
                if writer.broken:
                    return action
        return None

    def work() -> None:
        action = next_action()
        while action is not None:
            try:
                with pool.connection() as conn:
                    action = apply_on(conn, action)
            except PoolTimeout as exc:
                queue.done(action, None)
                keeper.mark_lost(f"no write connection: {first_line(exc)}")
                return

    workers = min(WRITE_POOL_SIZE, len(actions))
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="apply") as executor:
        for future in [executor.submit(work) for _ in range(workers)]:
            future.result()
    return outcomes, len(outcomes) == len(actions)


def write(
    conn: psycopg.Connection[Any], name: str, limits: Limits, params: dict[str, Any]
) -> tuple[Any, ...]:
    """Run a two-statement write query (its timeouts, then the call) as one simple-protocol
    message, which PostgreSQL executes as one implicit transaction; returns the call's row."""
    with write_cursor_class(conn) as cur:
        cur.execute(query(name), {**params, **limits.params()})
        cur.nextset()
        row: tuple[Any, ...] | None = cur.fetchone()
    assert row is not None
    return row


def apply_action(
    conn: psycopg.Connection[Any], run_id: int, action: PlannedAction, limits: Limits
) -> Outcome | None:
    """Apply one action in its own transaction (one autocommit call that also logs it).

    Returns None when the database refused it because the run no longer holds the lock. A
    failure is returned, never raised; its log row is written later (``settle_outcomes``), on
    whichever connection still works.
    """
    try:
        row = write(conn, "apply_action", limits, action_params(run_id, action))
    except psycopg.Error as exc:
        return action_failed(action, exc)
    return action_done(action, row[0])


def action_done(action: PlannedAction, workspace_id: UUID | None) -> Outcome:
    """The outcome of an action ``apply_action`` answered: applied when it returned the workspace
    acted on (for a create, the new one), skipped when it returned null."""
    if workspace_id is None:
        return Outcome(action, "skipped", action.workspace_id)
    return Outcome(action, "applied", workspace_id)


def action_failed(action: PlannedAction, exc: psycopg.Error) -> Outcome | None:
    """The outcome of an action whose statement raised ``exc``: None when the database refused
    it because the run no longer holds the lock, else failed (with the first line of the error,
    and whether it was a lock timeout or a cancelled statement)."""
    if is_lock_lost(exc):
        return None
    message = first_line(exc)
    # Debug only: the failure is returned (and reported once by the caller's on_outcome).
    log.debug("action %s %s failed: %s", action.seq, action.action, message)
    return Outcome(
        action,
        "failed",
        action.workspace_id,
        message,
        lock_timeout=isinstance(exc, errors.LockNotAvailable),
        statement_timeout=isinstance(exc, errors.QueryCanceled),
    )


class SerialWrites:
    """Depth 1: one action at a time on the connection, as one simple-protocol message (its
    timeouts, then the call: ``apply_action``), its result read before the next is sent."""

    def __init__(self, conn: psycopg.Connection[Any], run_id: int, limits: Limits) -> None:
        self.conn, self.run_id, self.limits = conn, run_id, limits
        self._sent: deque[PlannedAction] = deque()

    def __enter__(self) -> SerialWrites:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    @property
    def broken(self) -> bool:
        return self.conn.broken

    def send(self, action: PlannedAction) -> None:
        self._sent.append(action)

    def receive(self) -> tuple[PlannedAction, Outcome | None]:
        action = self._sent.popleft()
        return action, apply_action(self.conn, self.run_id, action, self.limits)


class PipelinedWrites:
    """Several actions in flight on one autocommit connection (libpq pipeline mode), each still
    its own transaction.

    Per action two messages go out at once: the call (``apply_action_call``, bound on the
    client and sent as an unnamed statement: nothing prepared on the server, so PgBouncer in
    transaction mode can hand the server connection on after each action), then a Sync. The
    server runs what comes before a Sync as one implicit transaction and commits it at the Sync;
    an error rolls back that action only, never the next one's. The server reads the next action
    while the client is still reading the previous result, so the round trip and the client's
    work overlap the server's.

    Bounds: ``apply_action`` sets the lock timeout itself (an argument) before it asks for a
    lock. The statement timeout is a deadline kept here: PostgreSQL arms ``statement_timeout``
    when a statement starts, so a setting made inside the call could not bound it, and a
    separate statement to set it cost each action about 60 µs of CPU (README "Applying
    actions"). When the oldest action in flight has had no result for ``statement_timeout``,
    the writer sends the server a cancel request (which PgBouncer forwards), and the action
    fails with a message naming the timeout.

    Results come back in the order sent. When the connection breaks, every action whose
    result was not read fails with the connection's error (``settle_outcomes`` later asks the
    log whether it committed); nothing is sent again.
    """

    def __init__(self, conn: psycopg.Connection[Any], run_id: int, limits: Limits) -> None:
        self.conn, self.run_id = conn, run_id
        self.pgconn = conn.pgconn
        self._binder = write_cursor_class(conn)
        self._encoding = conn.info.encoding
        self._limits = limits
        self._sent: deque[PlannedAction] = deque()
        self._error: psycopg.Error | None = None
        self._poll = select.poll()
        self._socket = self.pgconn.socket
        #: When the oldest action in flight runs out of time (monotonic), how many cancel
        #: requests were sent for it, and the actions in flight when the last one was sent
        #: (the only ones it can have stopped: the first is the late one).
        self._due = 0.0
        self._cancels = 0
        self._cancel_window: tuple[PlannedAction, ...] = ()

    def __enter__(self) -> PipelinedWrites:
        self.conn.lock.acquire()
        try:
            self.pgconn.enter_pipeline_mode()
        except BaseException:
            self.conn.lock.release()
            raise
        self._poll.register(self._socket, select.POLLIN)
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            if self.pgconn.status != pq.ConnStatus.OK:
                return  # broken: the pool drops it
            if self._sent or self._error is not None:
                # Left with results unread (an exception in the caller): never hand on a
                # connection in an unknown state.
                self.conn.close()
                return
            try:
                self.pgconn.exit_pipeline_mode()
            except psycopg.OperationalError:
                self.conn.close()
        finally:
            self._binder.close()
            self.conn.lock.release()

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    @property
    def broken(self) -> bool:
        return self._error is not None or self.pgconn.status != pq.ConnStatus.OK

    def _oldest_starts(self) -> None:
        """The oldest action in flight changed: its time runs from now."""
        self._due = time.monotonic() + self._limits.statement_timeout
        self._cancels = 0

    def send(self, action: PlannedAction) -> None:
        """Queue the action and flush it to the server; never raises a database error (an action
        that could not be sent fails when its result is read)."""
        self._sent.append(action)
        if len(self._sent) == 1:
            self._oldest_starts()
        if self._error is not None:
            return
        params = action_params(self.run_id, action)
        params["lock_timeout_ms"] = self._limits.lock_timeout_ms
        call = self._binder.mogrify(query("apply_action_call"), params).encode(self._encoding)
        try:
            self.pgconn.send_query_params(call, None)
            self.pgconn.pipeline_sync()
            while self.pgconn.flush():
                self._wait(select.POLLIN | select.POLLOUT)
                self.pgconn.consume_input()
        except psycopg.Error as exc:
            self._error = exc

    def receive(self) -> tuple[PlannedAction, Outcome | None]:
        """The outcome of the oldest action in flight (None: refused, the lock is gone)."""
        action = self._sent[0]  # still in flight (its deadline runs) until its result is read
        try:
            return action, self._receive(action)
        finally:
            self._sent.popleft()
            if self._sent:
                self._oldest_starts()

    def _receive(self, action: PlannedAction) -> Outcome | None:
        if self._error is not None:
            return action_failed(action, self._error)
        try:
            call = self._results()
            failed = [r for r in call if r.status == pq.ExecStatus.FATAL_ERROR]
            error = errors.error_from_result(failed[0], self._encoding) if failed else None
            if self.pgconn.status != pq.ConnStatus.OK:
                # The connection is gone: this action and those sent after it fail with what
                # the server said last (e.g. terminating connection due to administrator
                # command), or with the connection's own error.
                raise error or psycopg.OperationalError(
                    self.pgconn.get_error_message(self._encoding) or "the connection broke"
                )
            sync = self._results()
        except psycopg.Error as exc:
            self._error = exc
            return action_failed(action, exc)
        if len(sync) != 1 or sync[0].status != pq.ExecStatus.PIPELINE_SYNC:
            # No Sync: the connection broke before the transaction's end was acknowledged.
            if error is None and sync and sync[0].status == pq.ExecStatus.FATAL_ERROR:
                error = errors.error_from_result(sync[0], self._encoding)
            self._error = error or psycopg.OperationalError("lost track of the pipeline's results")
            return action_failed(action, self._error)
        if error is not None:
            if isinstance(error, errors.QueryCanceled) and action in self._cancel_window:
                error = errors.QueryCanceled(self._cancelled_because(action, error))
            return action_failed(action, error)
        if len(call) != 1 or call[0].status != pq.ExecStatus.TUPLES_OK or call[0].ntuples != 1:
            raise AssertionError(f"apply_action returned {[r.status for r in call]}")
        workspace_id = call[0].get_value(0, 0)
        return action_done(action, None if workspace_id is None else UUID(workspace_id.decode()))

    def _results(self) -> list[pq.abc.PGresult]:
        """The results of the next statement in the pipeline (or its Sync), waiting for them."""
        results: list[pq.abc.PGresult] = []
        idle = 0  # results asked for while none was due: never more than once in a row
        while True:
            while self.pgconn.is_busy():
                self._wait(select.POLLIN)
                try:
                    self.pgconn.consume_input()
                except psycopg.OperationalError:
                    if self.pgconn.status == pq.ConnStatus.OK:
                        raise
                    break  # the connection is gone: what the server said last comes next
            result = self.pgconn.get_result()
            if result is None:
                if results:
                    return results
                if self.pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError(
                        self.pgconn.get_error_message(self._encoding) or "the connection broke"
                    )
                idle += 1
                if idle > 1:
                    raise psycopg.OperationalError("lost track of the pipeline's results")
                continue
            if result.status == pq.ExecStatus.PIPELINE_SYNC:
                return [result]
            results.append(result)
            if (
                result.status == pq.ExecStatus.FATAL_ERROR
                and self.pgconn.status != pq.ConnStatus.OK
            ):
                return results

    def _wait(self, events: int) -> None:
        """Wait for the socket. Past the oldest action's deadline, unless its result is already
        arriving, ask the server to cancel it; ask again after ``CANCEL_GRACE_S`` without an
        answer; after ``CANCEL_ATTEMPTS`` requests, give the connection up (the actions in
        flight fail, and ``settle_outcomes`` asks the log whether they committed)."""
        self._poll.modify(self._socket, events)
        while True:
            if not self._sent:
                self._poll.poll()
                return
            left = self._due - time.monotonic()
            if left > 0:
                if self._poll.poll(left * 1000 + 1):
                    return
                continue
            if self._poll.poll(0):
                return  # the result is here: not late after all
            self._overdue()

    def _overdue(self) -> None:
        late = self._sent[0]
        if self._cancels >= CANCEL_ATTEMPTS:
            raise psycopg.OperationalError(
                f"action {late.seq}: no answer {self._limits.statement_timeout:g} s after it "
                f"started and {self._cancels} cancel requests later; connection given up"
            )
        self._cancels += 1
        self._cancel_window = tuple(self._sent)
        log.debug("action %s: past the statement timeout: cancel %s", late.seq, self._cancels)
        try:
            self.conn.cancel_safe(timeout=CANCEL_GRACE_S)
        except psycopg.Error as exc:
            # Unreachable or slow: asked again (or given up) after the grace period.
            log.debug("cancel request failed: %s", first_line(exc))
        self._due = time.monotonic() + CANCEL_GRACE_S

    def _cancelled_because(self, action: PlannedAction, error: psycopg.Error) -> str:
        """The error of an action stopped by the driver's cancel request: the late action, or
        the one behind it when the request landed just after the late one had finished."""
        late = self._cancel_window[0]
        if action is late:
            return (
                f"statement timeout: no result after {self._limits.statement_timeout:g} s, "
                f"cancelled by the driver ({first_line(error)})"
            )
        return (
            f"cancelled by the driver's request for action {late.seq}, which had run past the "
            f"statement timeout and finished as the request arrived ({first_line(error)})"
        )


def writes_for(
    conn: psycopg.Connection[Any], run_id: int, limits: Limits, depth: int
) -> SerialWrites | PipelinedWrites:
    return (
        PipelinedWrites(conn, run_id, limits) if depth > 1 else SerialWrites(conn, run_id, limits)
    )


def note_actions(
    pool: ConnectionPool[Any], run_id: int, notes: Sequence[PlannedAction]
) -> Iterable[Outcome]:
    """Record informational rows (backoff) in one transaction."""
    if not notes:
        return []
    try:
        with pool.connection() as conn:
            conn.execute(
                query("log_actions"), log_rows(run_id, [(a, "noted", None) for a in notes])
            )
    except (psycopg.Error, PoolTimeout) as exc:
        log.warning(
            "could not note %d presets in backoff: %s",
            len(notes),
            first_line(exc),
            extra={"event": "action_log_error", "run_id": run_id, "error": first_line(exc)},
        )
        return []
    return [Outcome(a, "noted", None) for a in notes]
