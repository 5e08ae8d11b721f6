"""How ``prebuilds run`` waits between cycles (SPEC 6.1): woken by changes, not by the clock.

Every commit that can change the plan sends ``pg_notify('prebuilds_reconcile', <what changed>)``
(claim_prebuild, complete_job, triggers on templates, presets, preset_schedules and settings).
The loop LISTENs on a connection of its own — not the plan connection, not the write pool — and
starts a cycle as soon as a notification arrives. Notifications that arrive together, or while
a cycle runs, make one cycle: the loop reads every notification waiting, then cycles once, and a
cycle's snapshot sees every commit notified before it started. Cycles never overlap: there is one
loop thread. The loop also wakes at ``prebuilds.next_change_at`` (the plan changes by the clock
alone: a TTL, a schedule, a backoff ending) and at least every ``--interval`` (a resync).

When LISTEN cannot work — the listen connection broke, or a pooler in transaction mode hands
each transaction to another server connection, so notifications go to whichever client holds the
listening backend — the loop falls back to the interval (and next_change_at), logs a warning,
and tries to listen again with a growing backoff. A self-test after every LISTEN proves the
round trip: a notification sent on ``prebuilds_reconcile_probe`` from the plan connection must
arrive within ``PROBE_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from . import cycle
from .cycle import CONNECT_TIMEOUT_S, first_line
from .logs import log
from .queries import query

CHANNEL = "prebuilds_reconcile"
PROBE_CHANNEL = "prebuilds_reconcile_probe"
LISTEN_APPLICATION_NAME = "prebuilds-reconciler-listen"
#: How long the self-test waits for its own notification.
PROBE_TIMEOUT_S = 1.0
#: After the first notification of a burst, the loop keeps reading while more arrive within this
#: much time (at most SETTLE_MAX_S in all), so a burst of commits makes one cycle.
SETTLE_S = 0.02
SETTLE_MAX_S = 0.1
#: Reconnect backoff of the listen connection: from the first to the last, doubling.
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 60.0
#: A wait is cut into slices this long so that a stop request is seen promptly.
WAIT_SLICE_S = 0.5


class Listener:
    """The loop's LISTEN connection: ``wait_until`` returns early when a notification arrives.

    ``probe`` sends the self-test's notification on another connection (the plan connection);
    it returns False when it could not send it. Without a working LISTEN, ``wait_until`` just
    sleeps (and tries to listen again when its backoff allows).
    """

    def __init__(self, url: str, stop: threading.Event, probe: Callable[[str], bool]) -> None:
        self.url = url
        self.stop = stop
        self.probe = probe
        self._conn: psycopg.Connection[Any] | None = None
        self._next_attempt = 0.0
        self._backoff = RECONNECT_FIRST_S
        #: Why the last attempt failed, so a repeated failure is logged once at warning level.
        self._last_problem: str | None = None
        self.notifications = 0

    @property
    def listening(self) -> bool:
        return self._conn is not None

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def start(self) -> bool:
        """Connect, LISTEN, and prove the round trip; on failure log a warning and schedule the
        next attempt. True when listening."""
        self._next_attempt = time.monotonic() + self._backoff
        try:
            conn = cycle.connection_class.connect(
                self.url,
                application_name=LISTEN_APPLICATION_NAME,
                connect_timeout=CONNECT_TIMEOUT_S,
                prepare_threshold=None,
                autocommit=True,
            )
        except psycopg.Error as exc:
            self._fail(f"cannot connect the listen connection: {first_line(exc)}")
            return False
        try:
            conn.execute(query("listen"))
            token = secrets.token_hex(8)
            if not self.probe(token):
                problem = "could not send the self-test notification"
            elif not self._probe_arrives(conn, token):
                problem = (
                    f"the self-test notification did not arrive within {PROBE_TIMEOUT_S:g} s "
                    "(a pooler in transaction mode cannot deliver notifications: use session "
                    "mode or a direct connection for prebuilds run)"
                )
            else:
                problem = None
        except psycopg.Error as exc:
            problem = f"LISTEN failed: {first_line(exc)}"
        if problem is not None:
            # Leave no LISTEN behind on a server connection that a pooler hands on.
            with contextlib.suppress(psycopg.Error):
                conn.execute(query("unlisten"))
            with contextlib.suppress(psycopg.Error):
                conn.close()
            self._fail(problem)
            return False
        self._conn = conn
        self._backoff = RECONNECT_FIRST_S
        self._last_problem = None
        log.info(
            "listening on %s: a change starts a cycle at once",
            CHANNEL,
            extra={"event": "listening", "channel": CHANNEL},
        )
        return True

    def _probe_arrives(self, conn: psycopg.Connection[Any], token: str) -> bool:
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            for note in conn.notifies(timeout=left, stop_after=1):
                if note.channel == PROBE_CHANNEL and note.payload == token:
                    return True
        return False

    def _fail(self, problem: str) -> None:
        level = log.warning if problem != self._last_problem else log.debug
        level(
            "%s; cycling every --interval (and at next_change_at) meanwhile, listening again "
            "in %g s",
            problem,
            self._backoff,
            extra={"event": "listen_unavailable", "error": problem, "retry_s": self._backoff},
        )
        self._last_problem = problem
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, RECONNECT_MAX_S)

    def wait_until(self, deadline: float) -> list[str]:
        """Wait until ``deadline`` (time.monotonic()), a notification or a stop request; returns
        the payloads of the notifications read (empty: woken by the clock or a stop)."""
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return []
            if self._conn is None and now >= self._next_attempt:
                self.start()
                continue
            left = min(deadline - now, WAIT_SLICE_S)
            if self._conn is None:
                self.stop.wait(min(left, max(self._next_attempt - now, 0)))
                continue
            payloads = self._read(left)
            if payloads:
                return payloads
        return []

    def drain(self) -> list[str]:
        """The notifications that arrived already, without waiting."""
        if self._conn is None:
            return []
        try:
            payloads = [n.payload for n in self._conn.notifies(timeout=0) if n.channel == CHANNEL]
        except psycopg.Error as exc:
            self.close()
            self._fail(f"the listen connection broke: {first_line(exc)}")
            return []
        self.notifications += len(payloads)
        return payloads

    def _read(self, timeout: float) -> list[str]:
        """Notifications within ``timeout``; once one arrived, the rest of its burst."""
        assert self._conn is not None
        payloads: list[str] = []
        try:
            for note in self._conn.notifies(timeout=timeout, stop_after=1):
                if note.channel == CHANNEL:
                    payloads.append(note.payload)
            if payloads:
                settle_end = time.monotonic() + SETTLE_MAX_S
                while (left := min(SETTLE_S, settle_end - time.monotonic())) > 0:
                    more = [
                        n.payload for n in self._conn.notifies(timeout=left) if n.channel == CHANNEL
                    ]
                    if not more:
                        break
                    payloads.extend(more)
        except psycopg.Error as exc:
            self.close()
            self._fail(f"the listen connection broke: {first_line(exc)}")
            # What arrived before the break still counts; a cycle follows either way.
            return payloads or ["listen connection lost"]
        self.notifications += len(payloads)
        return payloads
