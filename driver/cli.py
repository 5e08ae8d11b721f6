"""The ``prebuilds`` command: reconcile, run, and the operator's view and controls.

Exit codes (SPEC 4.6): 0 done (also when another reconciler holds the lock, or reconciliation is
paused), 1 some actions failed, 2 cannot run (no database, schema not at the driver's revision,
bad configuration or arguments), each with a one-line message naming the cause.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from . import __version__, migrations
from .cycle import (
    CannotRun,
    Limits,
    Session,
    check_schema,
    connect,
    first_line,
    plan_only,
)
from .logs import LogFormat, configure, log
from .metrics import Metrics
from .model import CycleResult, Outcome, Plan
from .queries import query
from .report import (
    format_cleanup,
    format_failures,
    format_history,
    format_outcome,
    format_plan,
    format_status,
)

EXIT_OK, EXIT_ACTIONS_FAILED, EXIT_CANNOT_RUN = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


# --- arguments ---------------------------------------------------------------------------------
#
# Every argument is checked before anything connects: a bad one is one line naming the option and
# the rule, exit 2, and nothing in the database changes. The ``type=`` functions below raise
# ArgumentTypeError with a message that starts with "must" or "is"; ``Parser.error`` prefixes it
# with the option's name.

MAX_NAME_LENGTH = 200
MAX_HISTORY_LIMIT = 10_000
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*(ms|s|m|h|d)?\s*", re.ASCII)

#: Bounds of the durations, in seconds: (smallest, largest).
INTERVAL_BOUNDS = (0.01, 86400.0)
LOCK_TIMEOUT_BOUNDS = (0.1, 600.0)
STATEMENT_TIMEOUT_BOUNDS = (1.0, 3600.0)
DEFAULT_LOCK_TIMEOUT = 5.0
DEFAULT_STATEMENT_TIMEOUT = 60.0


def show_duration(seconds: float) -> str:
    """``0.1`` → ``100ms``, ``600`` → ``10m``: the largest unit that gives a whole number."""
    for unit in ("d", "h", "m", "s", "ms"):
        count = seconds / _UNITS[unit]
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``500ms``, ``5m``, ``1h``, ``1d`` → seconds (a finite number ≥ 0)."""
    match = _DURATION.fullmatch(text)
    if not match:
        if text.strip().startswith("-"):
            raise argparse.ArgumentTypeError("must be positive")
        raise argparse.ArgumentTypeError(
            f"must be a duration such as 500ms, 60s, 5m or 1h, not {text!r}"
        )
    return float(match[1]) * _UNITS[match[2] or "s"]


def duration(bounds: tuple[float, float]) -> Callable[[str], float]:
    """A ``type=`` for a duration between ``bounds`` (inclusive)."""
    smallest, largest = bounds

    def parse(text: str) -> float:
        value = parse_duration(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        if not smallest <= value <= largest:
            raise argparse.ArgumentTypeError(
                f"must be between {show_duration(smallest)} and {show_duration(largest)}"
            )
        return value

    return parse


parse_interval = duration(INTERVAL_BOUNDS)


def whole_number(smallest: int, largest: int) -> Callable[[str], int]:
    """A ``type=`` for an integer between ``smallest`` and ``largest`` (inclusive)."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text, re.ASCII):
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}")
        value = int(text)
        if value < smallest:
            raise argparse.ArgumentTypeError(f"must be at least {smallest}")
        if value > largest:
            raise argparse.ArgumentTypeError(f"must be at most {largest}")
        return value

    return parse


def port(text: str) -> int:
    if not re.fullmatch(r"\s*[0-9]+\s*", text, re.ASCII) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text!r}")
    return int(text)


def name(text: str) -> str:
    """An organization, template or preset name: not empty, not absurdly long, printable."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise argparse.ArgumentTypeError(
            f"is too long: {len(text)} characters (at most {MAX_NAME_LENGTH})"
        )
    for i, char in enumerate(text):
        if unicodedata.category(char) == "Cc":
            raise argparse.ArgumentTypeError(
                f"must not contain control characters ({char!r} at position {i + 1})"
            )
    return text


def revision_id(text: str) -> str:
    """An Alembic revision id: it names files under alembic/, so letters, digits and _ only."""
    if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", text):
        raise argparse.ArgumentTypeError(
            f"must be a revision id such as 0004 (letters, digits, _), not {text!r}"
        )
    return text


class Parser(argparse.ArgumentParser):
    """Argument errors as one line, ``prebuilds: cannot run: <the problem>`` (in the chosen log
    format), and exit code 2 — not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        ours = re.fullmatch(r"argument (\S+): ((?:must|is) .*)", message, re.DOTALL)
        missing = re.fullmatch(r"argument (\S+): expected one argument", message)
        if ours:
            option = ours[1].split("/")[-1]
            message = f"{option} {ours[2]}"
        elif missing:
            option = missing[1].split("/")[-1]
            message = f"{option} needs a value (one that starts with '-' is written {option}=VALUE)"
        else:
            message = f"{message} (see `{self.prog} --help`)"
        log.error("cannot run: %s", message, extra={"event": "bad_argument"})
        self.exit(EXIT_CANNOT_RUN)


def log_format_in(argv: Sequence[str]) -> LogFormat:
    """The ``--log-format`` that ``argv`` asks for (so that even an argument error is logged in
    it), as argparse would read it: ``--log-format json``, ``--log-format=json`` or a prefix."""
    fmt: LogFormat = "text"
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        option, equals, value = arg.partition("=")
        if len(option) < 5 or not "--log-format".startswith(option):
            continue
        if not equals:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if value in ("text", "json"):
            fmt = "json" if value == "json" else "text"
    return fmt


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql:// URL of the database (default: $DATABASE_URL)",
    )
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default) or one JSON object per line",
    )
    # Bounded waits, for the commands that query.
    timeouts = Parser(add_help=False)
    timeouts.add_argument(
        "--lock-timeout",
        type=duration(LOCK_TIMEOUT_BOUNDS),
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="DURATION",
        help="give up a statement that waits this long for a row or table lock "
        f"(default {show_duration(DEFAULT_LOCK_TIMEOUT)}; "
        f"{show_duration(LOCK_TIMEOUT_BOUNDS[0])} to {show_duration(LOCK_TIMEOUT_BOUNDS[1])})",
    )
    timeouts.add_argument(
        "--statement-timeout",
        type=duration(STATEMENT_TIMEOUT_BOUNDS),
        default=DEFAULT_STATEMENT_TIMEOUT,
        metavar="DURATION",
        help="give up a statement that runs this long "
        f"(default {show_duration(DEFAULT_STATEMENT_TIMEOUT)}; "
        f"{show_duration(STATEMENT_TIMEOUT_BOUNDS[0])} to "
        f"{show_duration(STATEMENT_TIMEOUT_BOUNDS[1])})",
    )

    parser = Parser(
        prog="prebuilds",
        description="Keep pools of prebuilt workspaces at their desired size. The rules live in "
        "the database (prebuilds.reconciliation_actions); this command applies them and lets "
        "operators see and steer what happens.",
        epilog="Exit codes: 0 done (also: lock held elsewhere, paused), 1 some actions failed, "
        "2 cannot run. `prebuilds COMMAND --help` explains each command.",
    )
    parser.add_argument("--version", action="version", version=f"prebuilds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Handler, summary: str, details: str, *, queries: bool = False
    ) -> argparse.ArgumentParser:
        parents = [common, timeouts] if queries else [common]
        p = sub.add_parser(name, parents=parents, help=summary, description=details)
        p.set_defaults(handler=handler)
        return p

    rec = command(
        "reconcile",
        cmd_reconcile,
        "run one reconciliation cycle and exit (for cron)",
        "Take the reconciler lock, read prebuilds.reconciliation_actions in one query and apply "
        "it through two write connections: cancels and deletes first, then creates. Every cycle "
        "and action outcome is recorded in prebuilds.reconciliation_runs and "
        "prebuilds.reconciliation_action_log. If another reconciler holds the lock, says so and "
        "exits 0.",
        queries=True,
    )
    rec.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan with reasons and apply nothing (same as `prebuilds plan`)",
    )
    rec.add_argument("-v", "--verbose", action="store_true", help="print every action's outcome")
    rec.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="after the cycle, write Prometheus metrics to PATH atomically (node_exporter's "
        "textfile collector); PATH's directory must exist and be writable (checked before the "
        "cycle)",
    )

    run = command(
        "run",
        cmd_run,
        "reconcile as a service, woken by changes (instead of cron)",
        "Run a reconciliation cycle within a quarter of a second of every commit that can change "
        "the plan (claims, job completions, template, preset, schedule and settings changes: "
        "LISTEN prebuilds_reconcile on a connection of its own), when the plan changes by the "
        "clock alone (prebuilds.next_change_at: a TTL, a schedule, a backoff ending), and at "
        "least every --interval. A burst of changes makes one cycle; cycles never overlap. When "
        "notifications cannot arrive (PgBouncer in transaction mode, a broken listen connection) "
        "it warns and cycles on the interval. SIGTERM or SIGINT stops it cleanly: the action in "
        "flight finishes, no transaction is left open. When the database restarts the loop logs "
        "it and retries until it is back.",
        queries=True,
    )
    run.add_argument(
        "--interval",
        type=parse_interval,
        default=300.0,
        metavar="DURATION",
        help="resync period: the longest time between cycle starts when nothing wakes the loop "
        "earlier: 5m (default), 60s, 1h, …; "
        f"{show_duration(INTERVAL_BOUNDS[0])} to {show_duration(INTERVAL_BOUNDS[1])}",
    )
    run.add_argument(
        "--metrics-port",
        type=port,
        metavar="PORT",
        help="serve Prometheus metrics on this port (1 to 65535)",
    )
    run.add_argument(
        "--metrics-address", default="0.0.0.0", metavar="ADDR", help="bind address for metrics"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log every action's outcome")
    run.add_argument("--max-cycles", type=whole_number(1, 2**31 - 1), help=argparse.SUPPRESS)

    plan = command(
        "plan",
        cmd_plan,
        "show what the next cycle would do, and why",
        "Print prebuilds.reconciliation_actions: every action the next cycle would apply, with "
        "its reason. Takes no lock and writes nothing.",
        queries=True,
    )
    plan.add_argument("--json", action="store_true", help="one JSON document")

    status = command(
        "status",
        cmd_status,
        "show every pool: desired, running, eligible, and why it is blocked",
        "Print prebuilds.preset_state: one row per preset under consideration (active with a "
        "pool, or with prebuilds to clean up). BLOCKED says why wanted creates are held back: "
        "paused, hard_limited (see resume-preset), backoff or capped (max_pending_creates).",
        queries=True,
    )
    add_name_filters(status, template_required=False)
    status.add_argument("--json", action="store_true", help="one JSON document")

    command(
        "pause",
        cmd_pause,
        "pause reconciliation (nothing is created, deleted or canceled)",
        "Set prebuilds.settings.reconciliation_paused. Cycles keep running and recording but "
        "apply nothing until `prebuilds resume`.",
    )
    command(
        "resume",
        cmd_resume,
        "resume reconciliation after `prebuilds pause`",
        "Clear prebuilds.settings.reconciliation_paused.",
    )
    rp = command(
        "resume-preset",
        cmd_resume_preset,
        "clear a preset's hard limit after fixing its template",
        "Ignore the failures so far of the named presets (on the template's active version) so "
        "that their pools fill again: sets failures_reset_at to now through "
        "prebuilds.resume_preset().",
    )
    add_name_filters(rp, template_required=True)
    inv = command(
        "invalidate",
        cmd_invalidate,
        "replace a template's current prebuilds (e.g. after a base image update)",
        "Mark the current prebuilds of the named presets (on the template's active version) as "
        "expired by setting last_invalidated_at to now: the next cycle deletes and replaces them.",
    )
    add_name_filters(inv, template_required=True)

    hist = command(
        "history",
        cmd_history,
        "show recent cycles and the actions that failed",
        "Print the latest rows of prebuilds.reconciliation_runs, then the failed actions of "
        "those cycles with their errors (prebuilds.reconciliation_action_log).",
        queries=True,
    )
    hist.add_argument(
        "--limit",
        type=whole_number(1, MAX_HISTORY_LIMIT),
        default=10,
        help=f"cycles to show (default 10, at most {MAX_HISTORY_LIMIT})",
    )
    hist.add_argument("--json", action="store_true", help="one JSON document")

    fail = command(
        "failures",
        cmd_failures,
        "show failed builds of prebuilds: what, where, when, and the provisioner's error",
        "Print prebuilds.prebuild_failures, newest first: every failed start, stop or delete "
        "build of a prebuild (including jobs the reconciler failed as hung), with its "
        "organization, template, version, preset, workspace and the error.",
        queries=True,
    )
    add_name_filters(fail, template_required=False)
    fail.add_argument(
        "--transition", choices=("start", "stop", "delete"), help="only builds of this kind"
    )
    fail.add_argument(
        "--since",
        type=duration(AGE_BOUNDS),
        metavar="DURATION",
        help="only failures in the last DURATION (30m, 24h, 7d, …)",
    )
    fail.add_argument(
        "--limit",
        type=whole_number(1, MAX_LIST_LIMIT),
        default=50,
        help=f"rows to show (default 50, at most {MAX_LIST_LIMIT})",
    )
    fail.add_argument("--json", action="store_true", help="one JSON document")

    clean = command(
        "cleanup",
        cmd_cleanup,
        "delete failed, stopped or quarantined prebuilds now (with --dry-run: say which)",
        "Queue a delete build for each prebuild whose latest build failed (--failed: a start "
        "or a stop), that is stopped (--stopped), or whose delete failed past "
        "settings.delete_retry_limit (--quarantined); without any of the three, failed and "
        "stopped. Oldest first, at most --limit, narrowed by names and --older-than. Each "
        "workspace is re-checked under its row lock by prebuilds.cleanup_prebuilds(): one "
        "claimed meanwhile is never deleted. --dry-run prints the same rows and changes nothing.",
        queries=True,
    )
    add_name_filters(clean, template_required=False)
    for kind, what in (
        ("failed", "prebuilds whose latest start or stop failed"),
        ("stopped", "stopped prebuilds"),
        ("quarantined", "prebuilds whose delete failed past settings.delete_retry_limit"),
    ):
        clean.add_argument(f"--{kind}", action="store_true", help=what)
    clean.add_argument(
        "--older-than",
        type=duration(AGE_BOUNDS),
        metavar="DURATION",
        help="only those whose latest build finished longer ago than DURATION",
    )
    clean.add_argument(
        "--limit",
        type=whole_number(1, MAX_LIST_LIMIT),
        default=100,
        help=f"prebuilds to delete at most (default 100, at most {MAX_LIST_LIMIT})",
    )
    clean.add_argument(
        "--dry-run", action="store_true", help="print what would be deleted, delete nothing"
    )
    clean.add_argument("--json", action="store_true", help="one JSON document")

    add_provision_command(command)

    demo = sub.add_parser(
        "demo",
        help="reconcile a demo fleet to convergence (embedded PostgreSQL without DATABASE_URL)",
        description="Seed a small realistic fleet and alternate reconcile cycles with a "
        "simulated provisioner until the pools converge. Without DATABASE_URL it runs on a "
        "throwaway embedded PostgreSQL; with it, it needs an empty database.",
    )
    demo.add_argument(
        "--database-url",
        metavar="URL",
        help="use this (empty) database instead of an embedded server (default: $DATABASE_URL)",
    )
    demo.set_defaults(handler=cmd_demo, log_format="text")

    mig = command(
        "migrate",
        cmd_migrate,
        "apply the schema migrations (same as `alembic upgrade head`), or inspect them",
        "Bring the prebuilds schema to the revision this driver needs (ACTION upgrade, the "
        "default). `current` prints the database's revision, `history` every revision, `ini` "
        "the path of the installed alembic.ini (for `alembic -c PATH …`). --downgrade REV "
        "goes back to REV (or `base`, which drops the whole schema) and needs --yes; without it "
        "the command says what would be dropped and changes nothing.",
    )
    mig.add_argument(
        "action",
        nargs="?",
        choices=("upgrade", "current", "history", "ini"),
        default="upgrade",
        help="upgrade (default), current, history or ini",
    )
    mig.add_argument(
        "--downgrade", metavar="REV", help="downgrade to revision REV (e.g. 0003) or base"
    )
    mig.add_argument("--yes", action="store_true", help="confirm a --downgrade")

    freeze = sub.add_parser(
        "freeze",
        help="(development) freeze db/ objects into a migration's SQL",
        description="Freeze db/ objects into the SQL of an Alembic revision. Without OBJECT, a "
        "revision frozen before is re-frozen with the same objects, and a new one gets all of "
        "db/ (an initial revision). With OBJECTs (paths under db/), REVISION_upgrade.sql gets "
        "their current text and REVISION_downgrade.sql their text from the previous revision, "
        "below a marker line; what you wrote above it (drops, alters) is kept. Revisions older "
        "than head are refused. See README, 'Adding a migration'.",
    )
    freeze.add_argument("revision", type=revision_id, help="revision id, e.g. 0003")
    freeze.add_argument(
        "objects", nargs="*", metavar="OBJECT", help="db/ file that the revision changes"
    )
    freeze.set_defaults(handler=cmd_freeze, log_format="text")
    return parser


def add_name_filters(p: argparse.ArgumentParser, *, template_required: bool) -> None:
    p.add_argument("--organization", type=name, metavar="NAME", help="organization name")
    p.add_argument(
        "--template", type=name, required=template_required, metavar="NAME", help="template name"
    )
    p.add_argument("--preset", type=name, metavar="NAME", help="preset name (default: all of them)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    configure(log_format_in(argv))  # argument errors are logged in the format asked for
    args = build_parser().parse_args(argv)
    configure(args.log_format)
    if getattr(args, "database_url", "") is None and os.environ.get("DATABASE_URL"):
        args.database_url = os.environ["DATABASE_URL"]
        args.database_url_source = "$DATABASE_URL"
    try:
        code: int = args.handler(args)
        return code
    except CannotRun as exc:
        log.error("cannot run: %s", exc, extra={"event": "cannot_run"})
        return EXIT_CANNOT_RUN
    except psycopg.Error as exc:
        log.error("cannot run: database error: %s", first_line(exc), extra={"event": "cannot_run"})
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        log.error("interrupted", extra={"event": "interrupted"})
        return 130
    except Exception as exc:
        if args.log_format != "json":
            raise  # a bug: the traceback says where
        # JSON output stays JSON: the traceback goes into the record's "exception" field.
        log.error(
            "internal error: %s: %s",
            type(exc).__name__,
            first_line(exc),
            exc_info=exc,
            extra={"event": "internal_error"},
        )
        return EXIT_ACTIONS_FAILED


def limits(args: argparse.Namespace) -> Limits:
    """The cycle's timeouts from ``--lock-timeout`` and ``--statement-timeout``."""
    default = Limits()
    return Limits(
        lock_timeout=getattr(args, "lock_timeout", None) or default.lock_timeout,
        statement_timeout=getattr(args, "statement_timeout", None) or default.statement_timeout,
    )


def require_url(args: argparse.Namespace) -> str:
    url: str | None = args.database_url
    if not url:
        raise CannotRun("no database: set DATABASE_URL or pass --database-url")
    check_database_url(url, getattr(args, "database_url_source", "--database-url"))
    return url


_PASSWORD = re.compile(r"^(\w[\w+.-]*://[^/?#@:]*:)[^@/?#]*@")


def redact_url(url: str) -> str:
    """``url`` without its password (libpq quotes the URL in some of its messages)."""
    return _PASSWORD.sub(r"\1***@", url)


def check_database_url(url: str, source: str) -> None:
    """Refuse a URL that cannot name a PostgreSQL database, before anything connects: one line,
    "bad database URL: …", never the password."""

    def bad(problem: str) -> CannotRun:
        return CannotRun(f"bad database URL: {problem} (from {source})")

    scheme, separator, _ = url.partition("://")
    if not separator:
        raise bad("not a postgresql:// URL")
    if scheme.lower() not in ("postgresql", "postgres"):
        shown = repr(scheme) if re.fullmatch(r"\w[\w+.-]*", scheme, re.ASCII) else "it"
        raise bad(f"scheme {shown} is not postgresql:// or postgres://")
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise bad(first_line(exc).replace(url, redact_url(url))) from exc
    for value in str(info.get("port") or "").split(","):
        if value and not (value.isdigit() and 1 <= int(value) <= 65535):
            raise bad(f"port must be a number from 1 to 65535, not {value!r}")


# --- reconciling -------------------------------------------------------------------------------


class Progress:
    """``applying: 120 of 1000 actions`` on a terminal's stderr, redrawn at most 5 times a
    second and erased at the end; nothing at all when stderr is not a terminal (cron, pipes,
    JSON logs)."""

    def __init__(self, stream: Any, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.total = 0
        self.done = 0
        self._drawn_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_terminal(cls, args: argparse.Namespace) -> Progress:
        enabled = sys.stderr.isatty() and args.log_format == "text" and not args.verbose
        return cls(sys.stderr, enabled and os.environ.get("TERM") != "dumb")

    def planned(self, plan: Plan) -> None:
        self.total = sum(1 for a in plan.actions if a.action != "backoff")

    def advance(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.done += 1
            now = time.monotonic()
            if now - self._drawn_at >= 0.2 or self.done == self.total:
                self._drawn_at = now
                self.stream.write(f"\r\x1b[Kapplying: {self.done} of {self.total} actions")
                self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def outcome_reporter(verbose: bool, progress: Progress | None = None) -> Callable[[Outcome], None]:
    def report(outcome: Outcome) -> None:
        if progress is not None and outcome.outcome != "noted":
            progress.advance()
        fields = {
            "event": "action",
            "seq": outcome.action.seq,
            "action": outcome.action.action,
            "outcome": outcome.outcome,
            "preset_id": str(outcome.action.preset_id),
            "workspace_id": str(outcome.workspace_id or outcome.action.workspace_id or ""),
        }
        if outcome.outcome == "failed":
            log.warning(format_outcome(outcome), extra={**fields, "error": outcome.error})
        elif verbose:
            log.info(format_outcome(outcome), extra=fields)

    return report


def report_cycle(result: CycleResult) -> None:
    fields: dict[str, Any] = {"event": "cycle", "status": result.status, "run_id": result.run_id}
    if result.status == "done":
        fields.update(
            applied=result.tally("applied"),
            skipped=result.tally("skipped"),
            failed=result.failed,
            plan_ms=round(result.plan_seconds * 1000, 1),
            apply_ms=round(result.apply_seconds * 1000, 1),
            interrupted=result.interrupted,
            lock_lost=result.lock_lost,
        )
    if result.lock_lost:
        log.warning(summary(result), extra=fields)
    else:
        log.info(summary(result), extra=fields)


def check_metrics_file(path: str) -> None:
    """Raise CannotRun unless the metrics file can be written, before the cycle runs: its
    directory exists and takes a new file (a temporary file is created and removed there, as
    the atomic write will), and the path is not a directory or a device."""

    def problem() -> str | None:
        target = Path(path)
        if path.strip() == "":
            return "the path is empty"
        if target.is_dir():
            return "it is a directory"
        if target.exists() and not target.is_file():
            return "it exists and is not a regular file"
        directory = target.parent
        if not directory.exists():
            return f"directory {directory} does not exist"
        if not directory.is_dir():
            return f"{directory} is not a directory"
        try:
            fd, probe = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".check")
        except OSError as exc:
            return f"directory {directory} is not writable ({exc.strerror or exc})"
        os.close(fd)
        os.unlink(probe)
        return None

    try:
        found = problem()
    except (OSError, ValueError) as exc:  # e.g. a NUL byte, a permission denied on the way
        found = first_line(exc)
    if found:
        raise CannotRun(f"cannot write metrics to {path}: {found}")


def cmd_reconcile(args: argparse.Namespace) -> int:
    if args.dry_run and args.metrics_file:
        raise CannotRun("--dry-run writes nothing, --metrics-file included: drop one of them")
    if args.metrics_file is not None:
        check_metrics_file(args.metrics_file)
    url = require_url(args)
    if args.dry_run:
        print(format_plan(plan_only(url, limits(args))))
        return EXIT_OK
    started = time.monotonic()
    progress = Progress.for_terminal(args)
    with Session(url) as session:
        try:
            result = session.run_cycle(
                on_outcome=outcome_reporter(args.verbose, progress),
                limits=limits(args),
                on_plan=progress.planned,
            )
        finally:
            progress.clear()
        report_cycle(result)
        if args.metrics_file:
            metrics = Metrics()
            metrics.observe(result, time.monotonic() - started)
            # On the cycle's plan connection, as `prebuilds run` does: no extra connection.
            session.refresh_metrics(metrics)
            try:
                metrics.write_textfile(args.metrics_file)
            except OSError as exc:
                raise CannotRun(f"cannot write metrics to {args.metrics_file}: {exc}") from exc
    return result.exit_code


def cmd_run(args: argparse.Namespace) -> int:
    from .loop import StopFlag, run_loop

    url = require_url(args)
    metrics = Metrics()
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        try:
            start_http_server(args.metrics_port, args.metrics_address, registry=metrics.registry)
        except OSError as exc:
            raise CannotRun(f"cannot serve metrics on port {args.metrics_port}: {exc}") from exc
        log.info(
            "serving metrics on http://%s:%d/metrics",
            args.metrics_address,
            args.metrics_port,
            extra={"event": "metrics_serving", "port": args.metrics_port},
        )
    stop = StopFlag()
    stop.install()
    log.info(
        "reconciling every %g s at least, and at once when woken by a change; SIGTERM or Ctrl-C "
        "stops after the actions in flight",
        args.interval,
        extra={"event": "started", "interval_s": args.interval},
    )
    return run_loop(
        url,
        args.interval,
        metrics=metrics,
        report=report_cycle,
        on_outcome=outcome_reporter(args.verbose),
        stop=stop.event,
        max_cycles=args.max_cycles,
        limits=limits(args),
    )


def summary(result: CycleResult) -> str:
    if result.status == "lock_busy":
        return "another reconciler holds the lock; nothing done"
    if result.status == "paused":
        return (
            f"run {result.run_id}: reconciliation is paused "
            "(prebuilds.settings.reconciliation_paused); nothing done"
        )
    kinds = ", ".join(
        f"{result.tally('applied', k)} {k}"
        for k in ("cancel", "fail_job", "delete", "create")
        # fail_job (SPEC 5.2) only when it happened: the usual line stays as it always was.
        if k != "fail_job" or result.tally("applied", k)
    )
    text = (
        f"run {result.run_id}: applied {kinds}; "
        f"{result.tally('skipped')} skipped, {result.failed} failed, "
        f"{result.tally('noted')} presets in backoff "
        f"(plan {result.plan_seconds * 1000:.0f} ms, apply {result.apply_seconds * 1000:.0f} ms)"
    )
    if result.plan and result.plan.blocked:
        blocked = result.plan.blocked
        names = ", ".join(b.describe() for b in blocked[:3])
        more = f" and {len(blocked) - 3} more" if len(blocked) > 3 else ""
        text += f"; {len(blocked)} pools held back: {names}{more} (see `prebuilds plan`)"
    if result.plan and result.plan.deferred:
        text += (
            f"; {result.plan.deferred} more deferred to the next cycles "
            f"(settings.max_actions_per_cycle = {result.plan.max_actions_per_cycle})"
        )
    if result.lock_lost:
        text += f"; stopped, lost the reconcile lock: {result.lock_lost}"
    if result.interrupted:
        text += "; interrupted, the rest is left for the next cycle"
    return text


# --- operator commands -------------------------------------------------------------------------


def operator_connection(args: argparse.Namespace) -> psycopg.Connection[Any]:
    """A connection for the operator commands, refused when the schema is not the driver's."""
    conn = connect(require_url(args), "prebuilds-cli")
    try:
        check_schema(conn)  # ends its transaction
        bounds = limits(args)
        # The command's transaction starts with its timeouts, local to it (nothing stays on a
        # server connection that a pooler hands on).
        conn.execute(query("local_limits"), bounds.params())
    except BaseException:
        conn.close()
        raise
    return conn


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=_json_default))


def cmd_plan(args: argparse.Namespace) -> int:
    plan = plan_only(require_url(args), limits(args))
    if args.json:
        print_json(
            {
                "paused": plan.paused,
                "actions": [asdict(a) for a in plan.actions],
                "deferred": plan.deferred,
                "max_actions_per_cycle": plan.max_actions_per_cycle,
                "blocked": [asdict(b) for b in plan.blocked],
            }
        )
    else:
        print(format_plan(plan))
    return EXIT_OK


def name_filters(args: argparse.Namespace) -> dict[str, str | None]:
    return {"organization": args.organization, "template": args.template, "preset": args.preset}


def unknown_name(conn: psycopg.Connection[Any], args: argparse.Namespace) -> str | None:
    """ "template 'x'" when a name given matches nothing at all (each within the ones before it:
    organization, template, preset), else None."""
    row = conn.execute(query("unknown_name", "cli_queries.sql"), name_filters(args)).fetchone()
    conn.rollback()
    kind: str | None = row[0] if row else None
    if kind is None:
        return None
    text = f"{kind} {getattr(args, kind)!r}"
    if kind == "preset" and args.template:
        text += f" of template {args.template!r}"
    if kind != "organization" and args.organization:
        text += f" in organization {args.organization!r}"
    return text


def cmd_status(args: argparse.Namespace) -> int:
    with operator_connection(args) as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(query("status"), name_filters(args))
            .fetchall()
        )
        if not rows and (unknown := unknown_name(conn, args)):
            raise CannotRun(f"no such {unknown}")
    if args.json:
        print_json(rows)
    else:
        print(format_status(rows, color=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
    return EXIT_OK


MISSING_SETTINGS = (
    "prebuilds.settings has no row (it was deleted), so there is nothing to pause or resume; "
    "restore it with: insert into prebuilds.settings default values"
)


def set_paused(args: argparse.Namespace, paused: bool) -> int:
    with operator_connection(args) as conn:
        row = conn.execute(query("set_paused"), {"paused": paused}).fetchone()
        if row is None:
            conn.rollback()
            raise CannotRun(MISSING_SETTINGS)
        conn.commit()
    log.info(
        "reconciliation %s"
        % ("paused: cycles apply nothing until `prebuilds resume`" if paused else "resumed"),
        extra={"event": "paused" if paused else "resumed"},
    )
    return EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    return set_paused(args, True)


def cmd_resume(args: argparse.Namespace) -> int:
    return set_paused(args, False)


def find_presets(conn: psycopg.Connection[Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            query("find_active_presets"),
            {"organization": args.organization, "template": args.template, "preset": args.preset},
        )
        .fetchall()
    )
    wanted = f"template {args.template!r}" + (f", preset {args.preset!r}" if args.preset else "")
    if args.organization:
        wanted += f" in organization {args.organization!r}"
    if not rows:
        unknown = unknown_name(conn, args)
        prefix = f"no such {unknown}: " if unknown else ""
        raise CannotRun(f"{prefix}no preset on the active version of {wanted}")
    organizations = {r["organization_name"] for r in rows}
    if len(organizations) > 1:
        raise CannotRun(
            f"{wanted} exists in several organizations ({', '.join(sorted(organizations))}): "
            "pass --organization"
        )
    return rows


def path(row: dict[str, Any]) -> str:
    return (
        f"{row['organization_name']}/{row['template_name']}@{row['template_version_name']}"
        f"/{row['preset_name']}"
    )


def cmd_resume_preset(args: argparse.Namespace) -> int:
    with operator_connection(args) as conn:
        presets = find_presets(conn, args)
        for row in presets:
            conn.execute(query("resume_preset"), {"preset_id": row["preset_id"]})
        conn.commit()
    for row in presets:
        log.info(
            "resumed %s: earlier failures no longer count",
            path(row),
            extra={"event": "preset_resumed", "preset_id": str(row["preset_id"])},
        )
    return EXIT_OK


def cmd_invalidate(args: argparse.Namespace) -> int:
    with operator_connection(args) as conn:
        presets = find_presets(conn, args)
        conn.execute(
            query("invalidate_presets"),
            {
                "organization": presets[0]["organization_name"],
                "template": args.template,
                "preset": args.preset,
            },
        )
        conn.commit()
    for row in presets:
        log.info(
            "invalidated %s: its current prebuilds are replaced by the next cycle",
            path(row),
            extra={"event": "preset_invalidated", "preset_id": str(row["preset_id"])},
        )
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    with operator_connection(args) as conn:
        cur = conn.cursor(row_factory=dict_row)
        runs = cur.execute(query("history_runs"), {"limit": args.limit}).fetchall()
        since = min((r["id"] for r in runs), default=0)
        failures = cur.execute(
            query("history_failures"), {"since_run": since, "limit": 100}
        ).fetchall()
    if args.json:
        print_json({"runs": runs, "failed_actions": failures})
    else:
        print(format_history(runs, failures))
    return EXIT_OK


#: Bounds of --since and --older-than, in seconds (one second to ten years).
AGE_BOUNDS = (1.0, 10 * 365 * 86400.0)
#: Most rows `failures` shows and `cleanup` acts on in one call.
MAX_LIST_LIMIT = 10000


def cmd_failures(args: argparse.Namespace) -> int:
    with operator_connection(args) as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                query("failures", "cli_queries.sql"),
                {
                    **name_filters(args),
                    "transition": args.transition,
                    "since_s": args.since,
                    "limit": args.limit,
                },
            )
            .fetchall()
        )
        if not rows and (unknown := unknown_name(conn, args)):
            raise CannotRun(f"no such {unknown}")
    if args.json:
        print_json(rows)
    else:
        print(format_failures(rows))
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    kinds = [k for k in ("failed", "stopped", "quarantined") if getattr(args, k)]
    with operator_connection(args) as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                query("cleanup", "cli_queries.sql"),
                {
                    **name_filters(args),
                    "kinds": kinds or ["failed", "stopped"],
                    "older_than_s": args.older_than,
                    "limit": args.limit,
                    "dry_run": args.dry_run,
                },
            )
            .fetchall()
        )
        if not rows and (unknown := unknown_name(conn, args)):
            raise CannotRun(f"no such {unknown}")
        conn.commit()
    if args.json:
        print_json({"dry_run": args.dry_run, "prebuilds": rows})
    else:
        print(format_cleanup(rows, dry_run=args.dry_run))
    if not args.dry_run and not args.json:  # the JSON document says it already
        queued = sum(1 for r in rows if r["outcome"] == "delete queued")
        if queued:
            log.info(
                "cleanup: %d delete%s queued",
                queued,
                "" if queued == 1 else "s",
                extra={"event": "cleanup", "queued": queued},
            )
    return EXIT_OK


# --- provisioning ------------------------------------------------------------------------------

#: Bounds of the provisioner's durations, in seconds.
JOB_TIMEOUT_BOUNDS = (0.1, 7 * 86400.0)
HEARTBEAT_BOUNDS = (0.05, 3600.0)
POLL_BOUNDS = (0.01, 3600.0)
KILL_GRACE_BOUNDS = (0.05, 3600.0)
MAX_CONCURRENCY = 256


def add_provision_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``prebuilds provision``: driver/provision.py."""
    p = command(
        "provision",
        cmd_provision,
        "run provisioner jobs with a command of yours (a real provisioner)",
        "Take jobs with prebuilds.acquire_job and run CMD (with /bin/sh -c) once per job, in "
        "its own process group. The job is in environment variables (PREBUILDS_JOB_ID, "
        "PREBUILDS_TRANSITION, PREBUILDS_WORKSPACE_ID, PREBUILDS_WORKSPACE_NAME, "
        "PREBUILDS_TEMPLATE, PREBUILDS_VERSION, PREBUILDS_PRESET, …) and, with the preset's "
        "parameters, as JSON on stdin. Exit status 0 completes the job as succeeded (a start "
        "also reports the agent ready, unless the command printed PREBUILDS_AGENT=<state> "
        "itself); any other completes it as failed with the end of its stderr. Heartbeats "
        "while it runs; a command past --job-timeout is killed. SIGTERM or SIGINT: take no "
        "more jobs, let the running ones finish; a second one kills them and fails their jobs.",
        queries=True,
    )
    p.add_argument(
        "--exec",
        dest="exec_command",
        required=True,
        type=shell_command,
        metavar="CMD",
        help="shell command run once per job (with /bin/sh -c)",
    )
    p.add_argument(
        "--concurrency",
        type=whole_number(1, MAX_CONCURRENCY),
        default=1,
        metavar="N",
        help=f"run at most N jobs at once (default 1, at most {MAX_CONCURRENCY})",
    )
    p.add_argument(
        "--worker-id",
        type=name,
        metavar="ID",
        help="name recorded on the jobs it takes (default: HOSTNAME-PID)",
    )
    for option, bounds, default, what in (
        ("--job-timeout", JOB_TIMEOUT_BOUNDS, 1800.0, "kill and fail a job that runs this long"),
        ("--heartbeat", HEARTBEAT_BOUNDS, 30.0, "tell the database a job is alive this often"),
        ("--poll", POLL_BOUNDS, 1.0, "look for jobs this often when idle"),
        (
            "--kill-grace",
            KILL_GRACE_BOUNDS,
            10.0,
            "after SIGTERM to a killed job's commands, wait this long before SIGKILL",
        ),
    ):
        p.add_argument(
            option,
            type=duration(bounds),
            default=default,
            metavar="DURATION",
            help=f"{what} (default {show_duration(default)}; "
            f"{show_duration(bounds[0])} to {show_duration(bounds[1])})",
        )
    p.add_argument(
        "--once",
        action="store_true",
        help="take jobs until the queue is empty, wait for them, exit (for cron and tests); "
        "exit 1 if a job failed",
    )


def shell_command(text: str) -> str:
    """A command line for /bin/sh -c: anything but blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def cmd_provision(args: argparse.Namespace) -> int:
    from .provision import Options, default_worker_id, provision

    options = Options(
        command=args.exec_command,
        worker_id=args.worker_id or default_worker_id(),
        concurrency=args.concurrency,
        job_timeout=args.job_timeout,
        heartbeat=args.heartbeat,
        poll=args.poll,
        kill_grace=args.kill_grace,
        once=args.once,
        limits=limits(args),
    )
    return provision(require_url(args), options)


# --- setup and development ---------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    url = require_url(args) if args.database_url else None
    return run_demo(url, sys.stdout)


def cmd_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    if args.action == "ini":
        print(migrations.ALEMBIC_INI)
        return EXIT_OK
    summaries = migrations.revision_summaries()
    if args.action == "history":
        current = migrations.current_revision(require_url(args)) if args.database_url else None
        for revision, summary in summaries:
            mark = " (current)" if revision == current else ""
            print(f"{revision}{mark}  {summary}")
        return EXIT_OK
    url = require_url(args)
    try:
        before = migrations.current_revision(url)
    except psycopg.Error as exc:
        raise CannotRun(f"cannot connect to the database: {first_line(exc)}") from exc
    if args.action == "current":
        head = migrations.head_revision()
        if before is None:
            print(f"no prebuilds schema in this database (head: {head}); run `prebuilds migrate`")
        else:
            state = "up to date" if before == head else f"head is {head}: run `prebuilds migrate`"
            print(f"schema at revision {before} ({state})")
        return EXIT_OK
    if args.action != "upgrade" and args.downgrade:
        raise CannotRun("--downgrade goes with no ACTION")
    try:
        if args.downgrade:
            return downgrade(url, args.downgrade, before, summaries, args.yes)
        migrations.upgrade(url)
    except SQLAlchemyError as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
        raise CannotRun(f"migration failed, nothing changed: {first_line(cause)}") from exc
    revision = migrations.head_revision()
    was = "" if before == revision else f" (was {before or 'empty'})"
    log.info(
        "schema at revision %s%s",
        revision,
        was,
        extra={"event": "migrated", "revision": revision, "previous": before},
    )
    return EXIT_OK


def downgrade(
    url: str, target: str, current: str | None, summaries: list[tuple[str, str]], yes: bool
) -> int:
    """``migrate --downgrade``: say what goes, and only with ``--yes`` do it."""
    known = [r for r, _ in summaries]
    if target != "base" and target not in known:
        raise CannotRun(f"unknown revision {target!r}: one of {', '.join(known)} or base")
    if current is None:
        raise CannotRun("this database has no prebuilds schema: nothing to downgrade")
    if target != "base" and known.index(target) >= known.index(current):
        raise CannotRun(f"the schema is at {current}: {target} is not below it")
    undone = [(r, s) for r, s in summaries if (target == "base" or r > target) and r <= current]
    what = "; ".join(f"{r}: {s.rstrip('.')}" for r, s in reversed(undone))
    if target == "base":
        what += " -- and with revision 0001, the whole prebuilds schema and every row in it"
    if not yes:
        raise CannotRun(
            f"downgrading {current} to {target} would undo {what}. Nothing changed: add --yes "
            "to do it"
        )
    migrations.downgrade(url, target)
    log.info(
        "schema downgraded from %s to %s: undid %s",
        current,
        target,
        what,
        extra={"event": "downgraded", "revision": target, "previous": current},
    )
    return EXIT_OK


def cmd_freeze(args: argparse.Namespace) -> int:
    try:
        paths = migrations.freeze(args.revision, args.objects)
    except ValueError as exc:
        raise CannotRun(str(exc)) from exc
    for written in paths:
        log.info("wrote %s", written, extra={"event": "frozen", "path": str(written)})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
