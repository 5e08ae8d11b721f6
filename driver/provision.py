"""``prebuilds provision --exec CMD``: a provisioner that runs a real command per job.

It takes jobs with ``prebuilds.acquire_job`` (at most ``--concurrency`` at once) and runs ``CMD``
through ``/bin/sh -c`` once per job, in a process group of its own, with the job in environment
variables (``PREBUILDS_JOB_ID``, ``PREBUILDS_TRANSITION``, …) and as one JSON document on stdin
(the same, plus the preset's ``parameters``). The command's output is logged line by line, under
the job's id and workspace name.

- Exit status 0 completes the job as succeeded; a successful ``start`` also reports the
  workspace's agent ``main`` as ``ready`` (in the same transaction), unless the command reported
  its agent itself by printing a line ``PREBUILDS_AGENT=<state>`` on stdout (each such line is
  reported at once; from then on readiness is the command's business).
- Any other exit completes it as failed with the last lines of the command's stderr.
- While the command runs the provisioner calls ``prebuilds.heartbeat_job`` every
  ``--heartbeat``; a false answer (the job was canceled, or failed as hung) stops the command.
- A command that runs past ``--job-timeout`` is killed — SIGTERM to its process group, SIGKILL
  after ``--kill-grace`` — and its job failed with a message saying so.
- The first SIGTERM or SIGINT stops taking jobs and lets the running ones finish; the second
  kills them and fails their jobs with ``provisioner stopped: job killed``.

Database connections: a pool of at most ``concurrency + 1``, each borrowed for one call only
(autocommit, no server-side prepared statements, so PgBouncer's transaction mode is fine).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool, PoolTimeout

from .cycle import CONNECT_TIMEOUT_S, Limits, check_schema, connect, first_line
from .logs import log
from .queries import query

APPLICATION_NAME = "prebuilds-provisioner"
#: The agent the provisioner reports ready after a successful start (SPEC 2: a prebuild is
#: ready when all its agents are).
AGENT_NAME = "main"
#: A stdout line ``PREBUILDS_AGENT=<state>`` reports the agent's lifecycle state.
AGENT_MARKER = "PREBUILDS_AGENT="
#: How much of the command's stderr becomes a failed job's error.
TAIL_LINES = 20
TAIL_CHARS = 2000
#: Longest output line read at once (a longer one is logged in pieces).
MAX_LINE_BYTES = 8192
#: How often a running command is checked for exit, timeout and stop.
TICK_S = 0.05
#: After the command exits, how long to wait for the rest of its output (a background process
#: that inherited stdout would keep it open for ever).
OUTPUT_DRAIN_S = 2.0
#: Recording a job's outcome is retried this long when the database is unreachable.
COMPLETE_RETRY_S = 60.0
#: Waits between failed attempts to take jobs grow from the poll interval up to this.
MAX_RETRY_S = 30.0

JobOutcome = Literal["succeeded", "failed", "lost", "unrecorded"]


@dataclass(frozen=True)
class Job:
    """One row of ``prebuilds.acquire_job``: a job and what to build."""

    job_id: UUID
    workspace_id: UUID
    build_number: int
    transition: str
    preset_id: UUID | None
    initiator_id: UUID
    workspace_name: str
    owner_name: str
    organization_name: str
    template_name: str
    template_version_name: str
    preset_name: str
    parameters: dict[str, Any]

    @property
    def label(self) -> str:
        return f"job {str(self.job_id)[:8]} {self.workspace_name}"

    def document(self, worker_id: str) -> dict[str, Any]:
        """The job as the command reads it on stdin."""
        return {
            "job_id": str(self.job_id),
            "transition": self.transition,
            "workspace_id": str(self.workspace_id),
            "workspace_name": self.workspace_name,
            "owner": self.owner_name,
            "organization": self.organization_name,
            "template": self.template_name,
            "version": self.template_version_name,
            "preset": self.preset_name,
            "preset_id": str(self.preset_id) if self.preset_id else None,
            "build_number": self.build_number,
            "worker_id": worker_id,
            "parameters": self.parameters,
        }

    def environment(self, worker_id: str) -> dict[str, str]:
        """The job as environment variables (added to the provisioner's own, minus the
        database's credentials)."""
        return {
            "PREBUILDS_JOB_ID": str(self.job_id),
            "PREBUILDS_TRANSITION": self.transition,
            "PREBUILDS_WORKSPACE_ID": str(self.workspace_id),
            "PREBUILDS_WORKSPACE_NAME": self.workspace_name,
            "PREBUILDS_OWNER": self.owner_name,
            "PREBUILDS_ORGANIZATION": self.organization_name,
            "PREBUILDS_TEMPLATE": self.template_name,
            "PREBUILDS_VERSION": self.template_version_name,
            "PREBUILDS_PRESET": self.preset_name,
            "PREBUILDS_PRESET_ID": str(self.preset_id or ""),
            "PREBUILDS_BUILD_NUMBER": str(self.build_number),
            "PREBUILDS_WORKER_ID": worker_id,
            "PREBUILDS_PARAMETERS": json.dumps(self.parameters, separators=(",", ":")),
        }


@dataclass(frozen=True)
class Options:
    command: str
    worker_id: str
    concurrency: int = 1
    job_timeout: float = 1800.0
    heartbeat: float = 30.0
    poll: float = 1.0
    kill_grace: float = 10.0
    once: bool = False
    #: ``--lock-timeout`` and ``--statement-timeout`` of every statement sent.
    limits: Limits = field(default_factory=Limits)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def command_environment(job: Job, worker_id: str) -> dict[str, str]:
    """The provisioner's environment without the database's credentials (the command is a
    build script: it reports through its output, never to the database), plus the job."""
    inherited = {
        k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")
    }
    return {**inherited, **job.environment(worker_id)}


def live_group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are still running (zombies waiting for their
    new parent to reap them do not count). Reads /proc; elsewhere asks the kernel."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp …; comm may contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def tail_text(lines: deque[str]) -> str:
    text = "\n".join(lines).strip()
    return text if len(text) <= TAIL_CHARS else "…" + text[-(TAIL_CHARS - 1) :]


class StopSignals:
    """First SIGTERM/SIGINT: ``stop`` (take no more jobs). Second: ``force`` (kill the jobs)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.force = threading.Event()
        #: Set whenever the main loop should look again (a signal, a job done).
        self.wake = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.stop.is_set():
            log.info(
                "%s received: taking no more jobs, letting the running ones finish "
                "(send it again to kill them)",
                name,
                extra={"event": "stopping"},
            )
            self.stop.set()
        elif not self.force.is_set():
            log.warning(
                "%s received again: killing the running jobs' commands and failing their jobs",
                name,
                extra={"event": "stopping_now"},
            )
            self.force.set()
        self.wake.set()


@dataclass
class _Run:
    """What one job's command has said so far."""

    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    #: The command printed PREBUILDS_AGENT=…: it reports its agent itself.
    agent_reported: bool = False


class Provisioner:
    def __init__(self, url: str, options: Options, signals: StopSignals) -> None:
        self.url = url
        self.options = options
        self.signals = signals
        self.pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._running: dict[UUID, threading.Thread] = {}
        self.outcomes: Counter[JobOutcome] = Counter()
        self.take_failed = False

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Take and run jobs until stopped (or, with ``once``, until the queue is empty);
        returns the exit code."""
        with connect(self.url, APPLICATION_NAME) as conn:
            check_schema(conn)
        opts = self.options
        self.pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=opts.concurrency + 1,
            open=True,
            name=APPLICATION_NAME,
            timeout=CONNECT_TIMEOUT_S,
            check=ConnectionPool.check_connection,
            kwargs={
                "autocommit": True,
                "prepare_threshold": None,
                "application_name": APPLICATION_NAME,
                "connect_timeout": CONNECT_TIMEOUT_S,
            },
        )
        log.info(
            "provisioning as %s: up to %d job%s at once, running %r",
            opts.worker_id,
            opts.concurrency,
            "" if opts.concurrency == 1 else "s",
            opts.command,
            extra={
                "event": "provisioner_started",
                "worker_id": opts.worker_id,
                "concurrency": opts.concurrency,
            },
        )
        try:
            try:
                self._take_jobs()
            except BaseException:
                # Never leave a command running without a heartbeat owner: kill and fail them.
                self.signals.stop.set()
                self.signals.force.set()
                self._wait_for_jobs()
                raise
            self._wait_for_jobs()
        finally:
            self.pool.close()
        return self._finish()

    def _take_jobs(self) -> None:
        opts, signals = self.options, self.signals
        retry = opts.poll
        while not signals.stop.is_set():
            signals.wake.clear()
            wait: float | None = opts.poll
            if self._running_count() < opts.concurrency:
                try:
                    job = self._acquire()
                except (psycopg.Error, PoolTimeout) as exc:
                    self.take_failed = True
                    if opts.once:
                        log.error(
                            "cannot take jobs: %s; stopping once the running jobs are done",
                            first_line(exc),
                            extra={"event": "acquire_error", "error": first_line(exc)},
                        )
                        return
                    log.error(
                        "cannot take jobs: %s; retrying in %g s",
                        first_line(exc),
                        retry,
                        extra={"event": "acquire_error", "error": first_line(exc)},
                    )
                    signals.wake.wait(retry)
                    retry = min(retry * 2, MAX_RETRY_S)
                    continue
                retry = opts.poll
                if job is not None:
                    self._start(job)
                    continue  # another slot may be free, and the queue not empty
                if opts.once and self._running_count() == 0:
                    log.info("the queue is empty", extra={"event": "queue_empty"})
                    return
                if opts.once:
                    wait = None  # the queue is empty: look again when a job finishes
            else:
                wait = None  # every slot busy: a finishing job wakes us
            signals.wake.wait(wait)

    def _wait_for_jobs(self) -> None:
        while True:
            with self._lock:
                threads = list(self._running.values())
            if not threads:
                return
            for thread in threads:
                # Short joins keep the main thread free to take a second signal.
                while thread.is_alive():
                    thread.join(0.1)

    def _finish(self) -> int:
        done = ", ".join(f"{n} {kind}" for kind, n in sorted(self.outcomes.items())) or "no jobs"
        log.info(
            "provisioner stopped: %s",
            done,
            extra={"event": "provisioner_stopped", **{str(k): n for k, n in self.outcomes.items()}},
        )
        unsuccessful = sum(n for kind, n in self.outcomes.items() if kind != "succeeded")
        if self.signals.force.is_set():
            return 1
        if self.options.once and (unsuccessful or self.take_failed):
            return 1
        return 0

    def _running_count(self) -> int:
        with self._lock:
            return len(self._running)

    def _start(self, job: Job) -> None:
        thread = threading.Thread(
            target=self._run_job, args=(job,), name=f"job-{job.job_id}", daemon=True
        )
        with self._lock:
            self._running[job.job_id] = thread
        thread.start()

    # --- database calls ------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in a transaction whose first statement sets the timeouts, local
        to it (as the reconciler's writes do): a job row locked elsewhere or a stuck server costs
        a bounded wait, and nothing stays on a connection a pooler hands on."""
        assert self.pool is not None
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(query("local_limits"), self.options.limits.params())
            yield conn

    def _acquire(self) -> Job | None:
        with self._connection() as conn, conn.cursor(row_factory=class_row(Job)) as cur:
            return cur.execute(
                query("provision_acquire_job"), {"worker_id": self.options.worker_id}
            ).fetchone()

    def _heartbeat(self, job: Job) -> bool | None:
        """True while the job is still ours to run, False once it is not, None when the
        database could not be asked (the command goes on)."""
        try:
            with self._connection() as conn:
                row = conn.execute(query("heartbeat_job"), {"job_id": job.job_id}).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning(
                "%s: heartbeat failed: %s",
                job.label,
                first_line(exc),
                extra={"event": "heartbeat_error", "job_id": str(job.job_id)},
            )
            return None
        return bool(row and row[0])

    def _report_agent(self, job: Job, state: str) -> None:
        try:
            with self._connection() as conn:
                conn.execute(
                    query("report_agent_lifecycle"),
                    {"job_id": job.job_id, "agent_name": AGENT_NAME, "state": state},
                )
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning(
                "%s: cannot report agent state %r: %s",
                job.label,
                state,
                first_line(exc),
                extra={"event": "agent_report_error", "job_id": str(job.job_id)},
            )
            return
        log.info(
            "%s: agent %s reported %s by the command",
            job.label,
            AGENT_NAME,
            state,
            extra={"event": "agent_reported", "job_id": str(job.job_id), "state": state},
        )

    def _complete(self, job: Job, error: str | None, report_ready: bool) -> bool | None:
        """Record the job's outcome (and its agent ready, in the same transaction). True when
        recorded, False when the job was no longer ours (completed elsewhere), None when the
        database stayed unreachable for COMPLETE_RETRY_S."""
        deadline = time.monotonic() + COMPLETE_RETRY_S
        wait = 0.5
        while True:
            try:
                with self._connection() as conn, conn.transaction():
                    if report_ready:
                        conn.execute(
                            query("report_agent_lifecycle"),
                            {"job_id": job.job_id, "agent_name": AGENT_NAME, "state": "ready"},
                        )
                    row = conn.execute(
                        query("complete_job"), {"job_id": job.job_id, "error": error}
                    ).fetchone()
                    completed = bool(row and row[0])
                    if not completed:
                        raise psycopg.Rollback()  # not ours: leave its agents alone too
                return completed
            except (psycopg.Error, PoolTimeout) as exc:
                if time.monotonic() + wait > deadline:
                    log.error(
                        "%s: cannot record its outcome: %s (the job stays running without a "
                        "heartbeat until it is failed as hung)",
                        job.label,
                        first_line(exc),
                        extra={"event": "complete_error", "job_id": str(job.job_id)},
                    )
                    return None
                log.warning(
                    "%s: cannot record its outcome yet: %s; retrying in %g s",
                    job.label,
                    first_line(exc),
                    wait,
                    extra={"event": "complete_retry", "job_id": str(job.job_id)},
                )
                time.sleep(wait)
                wait = min(wait * 2, 10.0)

    # --- one job -------------------------------------------------------------------------------

    def _fields(self, job: Job, **more: Any) -> dict[str, Any]:
        return {
            "job_id": str(job.job_id),
            "workspace_id": str(job.workspace_id),
            "workspace_name": job.workspace_name,
            "transition": job.transition,
            **more,
        }

    def _run_job(self, job: Job) -> None:
        outcome: JobOutcome = "failed"
        try:
            outcome = self._run_command(job)
        except Exception as exc:  # a bug: fail the job rather than leave it running
            log.exception(
                "%s: internal error", job.label, extra=self._fields(job, event="job_error")
            )
            self._complete(job, f"provisioner internal error: {first_line(exc)}", False)
        finally:
            with self._lock:
                self._running.pop(job.job_id, None)
                self.outcomes[outcome] += 1
            self.signals.wake.set()

    def _run_command(self, job: Job) -> JobOutcome:
        opts = self.options
        started = time.monotonic()
        log.info(
            "%s: %s %s/%s@%s/%s (build %d)",
            job.label,
            job.transition,
            job.organization_name,
            job.template_name,
            job.template_version_name,
            job.preset_name or "-",
            job.build_number,
            extra=self._fields(job, event="job_started"),
        )
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", opts.command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=command_environment(job, opts.worker_id),
                start_new_session=True,
            )
        except OSError as exc:
            return self._settle(job, f"cannot start the command: {exc}", False, started)
        state = _Run()
        document = json.dumps(job.document(opts.worker_id)).encode() + b"\n"
        assert proc.stdin and proc.stdout and proc.stderr
        threads = [
            threading.Thread(target=_feed, args=(proc.stdin, document), daemon=True),
            threading.Thread(
                target=self._read, args=(job, proc.stdout, "stdout", state), daemon=True
            ),
            threading.Thread(
                target=self._read, args=(job, proc.stderr, "stderr", state), daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        killed = self._supervise(job, proc, started)
        drain_until = time.monotonic() + OUTPUT_DRAIN_S
        for thread in threads[1:]:
            thread.join(max(drain_until - time.monotonic(), 0))
        if any(t.is_alive() for t in threads[1:]):
            log.warning(
                "%s: the command exited but its output is still open (a background process "
                "inherited it); not waiting for it",
                job.label,
                extra=self._fields(job, event="output_open"),
            )
        tail = tail_text(state.stderr_tail)
        code = proc.returncode
        if killed == "timeout":
            error = f"timed out after {opts.job_timeout:g} s (--job-timeout): command killed"
        elif killed == "stopped":
            error = "provisioner stopped: job killed"
        elif killed == "lost":
            error = "the job was canceled or completed elsewhere: command killed"
        elif code == 0:
            error = None
        elif code < 0:
            error = f"command killed by {_signal_name(-code)}"
        else:
            error = f"exit status {code}"
        if error is not None and tail:
            error += f": {tail}" if killed is None else f"; last stderr: {tail}"
        elif error is not None and killed is None:
            error += " (nothing on stderr)"
        report_ready = error is None and job.transition == "start" and not state.agent_reported
        return self._settle(job, error, report_ready, started)

    def _settle(
        self, job: Job, error: str | None, report_ready: bool, started: float
    ) -> JobOutcome:
        recorded = self._complete(job, error, report_ready)
        seconds = round(time.monotonic() - started, 3)
        if recorded is None:
            return "unrecorded"
        if recorded is False:
            log.warning(
                "%s: the job was completed elsewhere (canceled, or failed as hung) before its "
                "command finished; nothing recorded",
                job.label,
                extra=self._fields(job, event="job_lost", seconds=seconds),
            )
            return "lost"
        if error is None:
            log.info(
                "%s: %s succeeded in %.1f s%s",
                job.label,
                job.transition,
                seconds,
                "; agent ready" if report_ready else "",
                extra=self._fields(job, event="job_succeeded", seconds=seconds),
            )
            return "succeeded"
        log.warning(
            "%s: %s failed in %.1f s: %s",
            job.label,
            job.transition,
            seconds,
            error.splitlines()[0],
            extra=self._fields(job, event="job_failed", seconds=seconds, error=error),
        )
        return "failed"

    def _supervise(
        self, job: Job, proc: subprocess.Popen[bytes], started: float
    ) -> Literal["timeout", "stopped", "lost"] | None:
        """Wait for the command, heartbeating; kill it on timeout, forced stop or a lost job.
        Returns why it was killed, or None when it exited by itself."""
        opts = self.options
        deadline = started + opts.job_timeout
        next_beat = started + opts.heartbeat
        while True:
            try:
                proc.wait(timeout=TICK_S)
                return None
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            reason: Literal["timeout", "stopped", "lost"] | None = None
            if self.signals.force.is_set():
                reason = "stopped"
            elif now >= deadline:
                reason = "timeout"
            elif now >= next_beat:
                next_beat = now + opts.heartbeat
                if self._heartbeat(job) is False:
                    reason = "lost"
            if reason:
                log.warning(
                    "%s: killing its command: %s",
                    job.label,
                    {
                        "stopped": "the provisioner is stopping",
                        "timeout": f"it ran past --job-timeout ({opts.job_timeout:g} s)",
                        "lost": "the job was canceled or completed elsewhere",
                    }[reason],
                    extra=self._fields(job, event="job_killing", reason=reason),
                )
                self._kill(proc)
                return reason

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the command's process group; SIGKILL to whatever of it is left after
        ``--kill-grace``."""
        pgid = proc.pid  # start_new_session: the shell leads its own group
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.options.kill_grace
        while time.monotonic() < deadline:
            proc.poll()
            if proc.returncode is not None and not live_group_members(pgid):
                return
            time.sleep(TICK_S)
        _signal_group(pgid, signal.SIGKILL)
        proc.wait()

    def _read(self, job: Job, stream: IO[bytes], name: str, state: _Run) -> None:
        with stream:
            for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
                line = raw.decode(errors="replace").rstrip("\r\n")
                if name == "stderr":
                    state.stderr_tail.append(line)
                elif line.strip().startswith(AGENT_MARKER):
                    state.agent_reported = True
                    self._report_agent(job, line.strip().removeprefix(AGENT_MARKER).strip())
                log.info(
                    "%s: %s",
                    job.label,
                    line,
                    extra=self._fields(job, event="job_output", stream=name),
                )


def _feed(stdin: IO[bytes], document: bytes) -> None:
    """Hand the job document to the command; a command that does not read it is fine."""
    try:
        with stdin:
            stdin.write(document)
    except OSError:  # BrokenPipeError: it exited, or closed its stdin
        pass


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def provision(url: str, options: Options, signals: StopSignals | None = None) -> int:
    """Run the provisioner until stopped; returns the exit code. Installs the signal handlers
    unless ``signals`` is given."""
    if signals is None:
        signals = StopSignals()
        signals.install()
    return Provisioner(url, options, signals).run()
