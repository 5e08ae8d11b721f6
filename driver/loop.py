"""``prebuilds run``: a cycle per interval, for people who prefer a service to cron.

SIGTERM or SIGINT asks the loop to stop: the action in flight finishes, the rest of the plan is
left for the next reconciler, the lock transaction ends, and the process exits 0. A second signal
stops at once (the transaction in flight rolls back). When the database goes away the loop logs
it, waits an interval and tries again, as often as it takes.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import psycopg

from .cycle import CannotRun, Limits, Session, first_line
from .logs import log
from .metrics import Metrics
from .model import CycleResult, Outcome

#: Waits after a failed cycle grow from this to the interval, so a restart is noticed quickly.
FIRST_RETRY_S = 1.0


class StopFlag:
    """Set by the first SIGTERM/SIGINT; the second raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        log.info(
            "%s received: finishing the action in flight, then stopping",
            signal.Signals(signum).name,
            extra={"event": "stopping"},
        )
        self.event.set()


def run_loop(
    url: str,
    interval: float,
    *,
    metrics: Metrics | None,
    report: Callable[[CycleResult], None],
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: threading.Event,
    max_cycles: int | None = None,
    limits: Limits | None = None,
) -> int:
    """Cycle every ``interval`` seconds until ``stop`` is set; returns the exit code (0)."""
    cycles = 0
    retry = FIRST_RETRY_S
    with Session(url) as session:
        while not stop.is_set() and (max_cycles is None or cycles < max_cycles):
            cycles += 1
            retry = one_cycle(session, interval, retry, metrics, report, on_outcome, stop, limits)
    log.info(
        "stopped after %d cycle%s",
        cycles,
        "" if cycles == 1 else "s",
        extra={"event": "stopped", "cycles": cycles},
    )
    return 0


def one_cycle(
    session: Session,
    interval: float,
    retry: float,
    metrics: Metrics | None,
    report: Callable[[CycleResult], None],
    on_outcome: Callable[[Outcome], None] | None,
    stop: threading.Event,
    limits: Limits | None,
) -> float:
    """Run a cycle on the kept connections, then wait for the next; returns the next retry
    delay (after a failed cycle the wait grows from FIRST_RETRY_S to the interval)."""
    started = time.monotonic()
    wait = interval
    try:
        result = session.run_cycle(on_outcome=on_outcome, stop=stop, limits=limits)
        report(result)
        if metrics:
            metrics.observe(result, time.monotonic() - started)
            session.refresh_metrics(metrics)
        retry = FIRST_RETRY_S
    except (CannotRun, psycopg.Error) as exc:
        message = str(exc) if isinstance(exc, CannotRun) else first_line(exc)
        wait = min(retry, interval)
        retry = min(retry * 2, interval)
        log.error(
            "cycle failed: %s; retrying in %g s",
            message,
            wait,
            extra={"event": "cycle_error", "error": message},
        )
        if metrics:
            metrics.observe_error()
    stop.wait(max(wait - (time.monotonic() - started), 0))
    return retry
