"""``prebuilds demo``: a small realistic fleet reconciled to convergence, on a real PostgreSQL.

Without ``DATABASE_URL`` it starts an embedded PostgreSQL 18 and deletes it afterwards. The
cycles are the real driver (``cycle.run_cycle``); between them a simulated provisioner works the
job queue through the provisioner-side functions only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import psycopg

from driver import migrations
from driver.cycle import CannotRun, connect, run_cycle
from driver.model import CycleResult
from driver.queries import query
from driver.report import format_outcome, format_state_table
from driver.simulator import SimulatedProvisioner

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
        "alice claimed a data-science prebuild, and flaky's builds always fail"
    )


def converge(url: str, say: Callable[[str], None]) -> int:
    """Alternate cycles and provisioner runs until a cycle finds nothing to do."""
    with psycopg.connect(url, autocommit=True, application_name="prebuilds-demo") as conn:
        flaky = [r[0] for r in conn.execute(_q("flaky_presets")).fetchall()]
        provisioner = SimulatedProvisioner(conn, "demo-provisioner", failing_presets=flaky)
        for cycle in range(1, MAX_CYCLES + 1):
            result = run_cycle(url)
            say(cycle_line(cycle, result))
            for outcome in result.outcomes:
                say("    " + format_outcome(outcome))
            jobs = provisioner.drain()
            if jobs:
                say("  provisioner: " + ", ".join(f"{n} {k}" for k, n in sorted(jobs.items())))
            if result.failed:
                return 1
            work = sum(1 for o in result.outcomes if o.outcome in ("applied", "skipped"))
            if work or jobs:
                continue
            row = conn.execute(_q("next_backoff")).fetchone()
            until = row[0] if row else None
            if until is None:
                say(f"converged after {cycle} cycles")
                return 0
            wait = max((until - datetime.now(UTC)).total_seconds(), 0) + 0.1
            say(f"  waiting {wait:.1f}s for backoff to end")
            time.sleep(wait)
    say(f"did not converge within {MAX_CYCLES} cycles")
    return 1


def cycle_line(n: int, result: CycleResult) -> str:
    if result.status != "done":
        return f"cycle {n}: {result.status}"
    plan = result.plan
    assert plan is not None
    counts = ", ".join(
        f"{plan.count(k)} {k}" for k in ("cancel", "delete", "create", "backoff") if plan.count(k)
    )
    return (
        f"cycle {n}: run {result.run_id}, {counts or 'nothing to do'} "
        f"(planned in {result.plan_seconds * 1000:.0f} ms)"
    )


def run_demo(url: str | None, out: TextIO) -> int:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    if url:
        say(f"using DATABASE_URL={redact(url)}")
        return _demo(url, say)
    from driver.embedded import EmbeddedUnavailable, embedded_server

    try:
        with embedded_server() as embedded_url:
            say("started an embedded PostgreSQL 18 (deleted on exit)")
            return _demo(embedded_url, say)
    except EmbeddedUnavailable as exc:
        raise CannotRun(str(exc)) from exc


def _demo(url: str, say: Callable[[str], None]) -> int:
    migrations.upgrade(url)
    say(f"schema at revision {migrations.EXPECTED_REVISION} (alembic upgrade head)")
    with connect(url, "prebuilds-demo") as conn:
        conn.autocommit = True
        seed(conn, say)
    code = converge(url, say)
    with connect(url, "prebuilds-demo") as conn:
        conn.autocommit = True
        rows = conn.execute(query("preset_state")).fetchall()
        names = [d.name for d in conn.execute(query("preset_state")).description or []]
    say("")
    say("final prebuilds.preset_state:")
    say(format_state_table(names, rows))
    return code
