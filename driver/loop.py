"""``prebuilds run``: the reconciler as a service, woken by changes (SPEC 6.1, driver/wake.py).

A cycle starts when a notification on ``prebuilds_reconcile`` arrives (a burst makes one cycle),
when ``prebuilds.next_change_at`` is due, and at the latest ``--interval`` after the last cycle
started (a resync: nothing is lost when a notification is). One thread: cycles never overlap.

SIGTERM or SIGINT asks the loop to stop: the actions in flight finish (at most four: two on each
write connection), the rest of the plan is left for the next reconciler, the lock transaction
ends, and the process exits 0. A second signal
stops at once (the transaction in flight rolls back). When the database goes away the loop logs
it, waits (growing from FIRST_RETRY_S to the interval) and tries again, as often as it takes.
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
from .wake import Listener

#: Waits after a failed cycle grow from this to the interval, so a restart is noticed quickly.
FIRST_RETRY_S = 1.0
#: Added to next_change_at's delay, so that the cycle's now() is past the change.
CHANGE_MARGIN_S = 0.005
#: How long a cycle waits for the claims in flight (prebuilds.wait_for_claims); new claims queue
#: behind the wait, so it is kept short. When it is not enough the next cycle follows after
#: CLAIMS_RETRY_S.
CLAIMS_WAIT_S = 0.1
CLAIMS_RETRY_S = 0.25
#: Cycles woken by notifications start at least this long apart: under a steady stream of
#: changes (claims every few milliseconds) the loop cycles ten times a second, not back to back,
#: and the notifications of the gap make one cycle. Well inside SPEC 6.1's quarter of a second.
MIN_CYCLE_GAP_S = 0.1


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
            "%s received: finishing the actions in flight, then stopping",
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
    """Cycle when woken (driver/wake.py: a notification, next_change_at, or ``interval`` after
    the last cycle started) until ``stop`` is set; returns the exit code (0)."""
    cycles = 0
    retry = FIRST_RETRY_S
    with Session(url) as session, Listener(url, stop, session.send_probe) as listener:
        listener.start()
        while not stop.is_set() and (max_cycles is None or cycles < max_cycles):
            cycles += 1
            started = time.monotonic()
            # Claims in flight first: their notification may have been left to another claim.
            claims_seen = session.wait_for_claims(CLAIMS_WAIT_S)
            ok, retry, wait = one_cycle(
                session, interval, retry, metrics, report, on_outcome, stop, limits
            )
            deadline, reason = started + wait, "interval"
            if ok and not claims_seen:
                deadline, reason = time.monotonic() + CLAIMS_RETRY_S, "claims_in_flight"
            if ok and (change := session.next_change_in()) is not None:
                at = time.monotonic() + change + CHANGE_MARGIN_S
                if at < deadline:
                    deadline, reason = at, "next_change_at"
            if max_cycles is not None and cycles >= max_cycles:
                break
            payloads = listener.wait_until(deadline)
            if stop.is_set():
                break
            if payloads:
                reason = "notification"
                if (gap := started + MIN_CYCLE_GAP_S - time.monotonic()) > 0:
                    stop.wait(gap)
                    payloads += listener.drain()
                log.debug(
                    "woken by %d notification%s: %s",
                    len(payloads),
                    "" if len(payloads) == 1 else "s",
                    "; ".join(payloads[:3]) + ("; …" if len(payloads) > 3 else ""),
                    extra={"event": "woken", "reason": reason, "notifications": len(payloads)},
                )
            else:
                log.debug("woken by %s", reason, extra={"event": "woken", "reason": reason})
            if metrics:
                metrics.observe_wakeup(reason, len(payloads))
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
) -> tuple[bool, float, float]:
    """Run a cycle on the kept connections; returns whether it ran, the next retry delay and
    how long after its start the next cycle is due at the latest (after a failed cycle the wait
    grows from FIRST_RETRY_S to the interval)."""
    started = time.monotonic()
    try:
        result = session.run_cycle(on_outcome=on_outcome, stop=stop, limits=limits)
        report(result)
        if metrics:
            metrics.observe(result, time.monotonic() - started)
            session.refresh_metrics(metrics)
        return True, FIRST_RETRY_S, interval
    except (CannotRun, psycopg.Error) as exc:
        message = str(exc) if isinstance(exc, CannotRun) else first_line(exc)
        wait = min(retry, interval)
        log.error(
            "cycle failed: %s; retrying in %g s",
            message,
            wait,
            extra={"event": "cycle_error", "error": message},
        )
        if metrics:
            metrics.observe_error()
        return False, min(retry * 2, interval), wait
