"""``prebuilds demo``: a small realistic fleet reconciled to convergence, on a real PostgreSQL.

Without ``DATABASE_URL`` it starts an embedded PostgreSQL 18 and deletes it afterwards. The
cycles are the real driver (``cycle.run_cycle``); between them a simulated provisioner works the
job queue through the provisioner-side functions only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from . import migrations
from .cycle import CannotRun, connect, run_cycle
from .model import CycleResult
from .queries import query
from .report import format_outcome, format_status
from .simulator import SimulatedProvisioner

MAX_CYCLES = 30


def _q(name: str) -> Any:
    return query(name, "demo.sql")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def seed(conn: psycopg.Connection[Any], say: Callable[[str], None]) -> None:
    """Build the demo fleet: fill pools with the real functions, then apply a day of drift."""
    row = conn.execute(_q("database_is_empty")).fetchone()
    if not (row and row[0]):
        raise CannotRun(
            "the database already holds organizations; the demo only seeds an empty database "
            "(unset DATABASE_URL to use a throwaway embedded server)"
        )
    conn.execute(_q("seed_fleet"))
    provisioner = SimulatedProvisioner(conn, "demo-provisioner")
    for (preset_id,) in conn.execute(_q("healthy_active_presets")).fetchall():
        while conn.execute(_q("create_prebuild"), {"preset_id": preset_id}).fetchone() != (None,):
            pass
    provisioner.drain()
    conn.execute(_q("queue_initial_build_on_old_version"))
    conn.execute(_q("drift"))
    say(
        "seeded 3 organizations, 6 templates: pools filled yesterday, then python v4 was "
        "promoted, legacy deprecated, web shrunk to 1, go's prebuilds outlived their 1h TTL, "
        "alice claimed a data-science prebuild, the provisioner restarting gpu's died, "
        "flaky's builds always fail and every delete fails once"
    )


class Display:
    """Plain lines when piped; on a terminal, a live view redrawn after every cycle."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self.live = live
        self.lines: list[str] = []
        self.shown = 0  # how many of self.lines the last redraw showed

    def say(self, line: str, *, detail: bool = False) -> None:
        """Print a line; ``detail`` lines (each action) only appear in plain mode."""
        if not self.live:
            print(line, file=self.out, flush=True)
        elif not detail:
            self.lines.append(line)

    def redraw(self, state: str) -> None:
        if self.live:
            # Clear the screen and home the cursor, then the story so far and the pools now.
            print("\x1b[2J\x1b[H" + "\n".join(self.lines[-25:]), file=self.out)
            print("\n" + state, file=self.out, flush=True)
            self.shown = len(self.lines)

    def end_live(self) -> None:
        """Back to plain lines, after printing what was said since the last redraw (how the
        demo ended: converged or not)."""
        if self.live:
            for line in self.lines[self.shown :]:
                print(line, file=self.out, flush=True)
        self.live = False


def state_table(conn: psycopg.Connection[Any]) -> str:
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        query("status"), dict.fromkeys(("organization", "template", "preset"))
    ).fetchall()
    return format_status(rows)


def converge(url: str, display: Display) -> int:
    """Alternate cycles and provisioner runs until a cycle finds nothing to do."""
    with psycopg.connect(
        url, autocommit=True, application_name="prebuilds-demo", prepare_threshold=None
    ) as conn:
        flaky = [r[0] for r in conn.execute(_q("flaky_presets")).fetchall()]
        # Every delete fails once (SPEC 5.1: retried after delete_retry_interval).
        provisioner = SimulatedProvisioner(
            conn, "demo-provisioner", failing_presets=flaky, failing_deletes=1
        )
        for cycle in range(1, MAX_CYCLES + 1):
            result = run_cycle(url)
            display.say(cycle_line(cycle, result))
            for outcome in result.outcomes:
                display.say("    " + format_outcome(outcome), detail=True)
            jobs = provisioner.drain()
            if jobs:
                display.say(
                    "  provisioner: " + ", ".join(f"{n} {k}" for k, n in sorted(jobs.items()))
                )
            display.redraw(state_table(conn))
            if result.failed:
                return 1
            work = sum(1 for o in result.outcomes if o.outcome in ("applied", "skipped"))
            if work or jobs:
                continue
            row = conn.execute(_q("next_backoff")).fetchone()
            until = row[0] if row else None
            if until is None:
                display.say(f"converged after {cycle} cycles")
                return 0
            wait = max((until - datetime.now(UTC)).total_seconds(), 0) + 0.1
            display.say(f"  waiting {wait:.1f}s for a backoff to end or a delete retry")
            display.redraw(state_table(conn))
            time.sleep(wait)
    display.say(f"did not converge within {MAX_CYCLES} cycles")
    return 1


def cycle_line(n: int, result: CycleResult) -> str:
    if result.status != "done":
        return f"cycle {n}: {result.status}"
    plan = result.plan
    assert plan is not None
    counts = ", ".join(
        f"{plan.count(k)} {k}"
        for k in ("cancel", "fail_job", "delete", "create", "backoff")
        if plan.count(k)
    )
    return (
        f"cycle {n}: run {result.run_id}, {counts or 'nothing to do'} "
        f"(planned in {result.plan_seconds * 1000:.0f} ms)"
    )


def run_demo(url: str | None, out: TextIO) -> int:
    display = Display(out, live=out.isatty() and os.environ.get("TERM") != "dumb")
    if url:
        display.say(f"using DATABASE_URL={redact(url)}")
        return _demo(url, display)
    from .embedded import EmbeddedUnavailable, embedded_server

    try:
        with embedded_server() as embedded_url:
            display.say("started an embedded PostgreSQL 18 (deleted on exit)")
            return _demo(embedded_url, display)
    except EmbeddedUnavailable as exc:
        raise CannotRun(str(exc)) from exc


def check_demo_database(url: str) -> None:
    """Refuse, before touching anything, a database that holds data: the demo seeds a fleet and
    must never mix it into a real one."""
    with connect(url, "prebuilds-demo") as conn:
        row = conn.execute(_q("database_before_demo")).fetchone()
        assert row is not None
        other_tables, has_schema = row
        holds_organizations = False
        if has_schema:
            empty = conn.execute(_q("database_is_empty")).fetchone()
            holds_organizations = not (empty and empty[0])
        conn.rollback()
    if holds_organizations:
        raise CannotRun(
            "the database already holds organizations; the demo only seeds an empty database "
            "(unset DATABASE_URL to use a throwaway embedded server). Nothing changed"
        )
    if other_tables:
        raise CannotRun(
            f"the database holds {other_tables} tables of its own; the demo only seeds an empty "
            "database (unset DATABASE_URL to use a throwaway embedded server). Nothing changed"
        )


def _demo(url: str, display: Display) -> int:
    check_demo_database(url)
    migrations.upgrade(url)
    display.say(f"schema at revision {migrations.EXPECTED_REVISION} (prebuilds migrate)")
    with connect(url, "prebuilds-demo") as conn:
        conn.autocommit = True
        seed(conn, display.say)
    code = converge(url, display)
    with connect(url, "prebuilds-demo") as conn:
        conn.autocommit = True
        final = state_table(conn)
    display.end_live()
    print("\nfinal prebuilds.preset_state:\n" + final, file=display.out, flush=True)
    return code
