"""Benchmark fleets: deterministic, set-based generation of a Coder-like deployment (issue 4).

``build_fleet(conn, SCENARIOS["dogfood"])`` fills an empty database migrated to head with
organizations, users, templates with long version histories, presets (about 97% of them on
inactive versions, most of those with a dead pool), live prebuilds in every situation the
reconciler meets (statement ``situations`` in fleet.sql: healthy, not ready, missing, surplus,
TTL-expired, invalidated, starting, stopping, deleting, backoff, hard-limited, resumed,
scheduled, canceled, pool removed; outdated or deprecated presets still holding prebuilds or
queued builds), live workspaces of people (some claimed prebuilds) and a long history of
deleted workspaces; each build has its provisioner job, each successful start its agents. The
SQL is in ``bench/fleet.sql``: named statements, run in order in one transaction, all set-based
(``insert … select … from generate_series``), staged in temp tables.

Determinism: a scenario (with its seed) gives the same rows, ids included: small tables use
md5-based uuids of (seed, kind, number); workspaces, builds, jobs and agents use time-ordered
uuids (``fleet_time_uuid``: UUIDv7 layout, time counted from a fixed origin, random part md5), so
inserts in creation order append to the indexes; that, and loading without per-row triggers, is
what makes history10 take about a minute and a half instead of several.

Timestamps: every one is ``anchor - interval``. The anchor is the server's ``now()`` at
generation unless given, because the plan is evaluated at ``now()`` and the situations are ages
(TTL expiry, backoff windows, in-flight jobs); ``FleetSummary.anchor`` reports it. Two fleets
built with the same anchor are identical row for row; built at different times they differ only
by the shift of their anchors. After generation: backoff holds creates for about 6 minutes past
the anchor (then those presets simply create); TTL, invalidation and in-flight margins are hours
or stay true; scheduled presets follow the wall clock ('* 9-18 * * 1-5', '* 0-6 * * *' in UTC or
Europe/Berlin).

``python -m bench.fleet dogfood`` builds a scenario into ``$DATABASE_URL`` (migrated to head
first; it must hold no fleet yet) or into a throwaway embedded server, and prints the summary and
the plan at ``now()``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from prebuilds.queries import parse

FLEET_SQL = Path(__file__).resolve().with_name("fleet.sql")


@dataclass(frozen=True)
class Scenario:
    """The size of a fleet. Counts are targets: the summary reports what was generated."""

    name: str
    organizations: int
    templates: int
    #: Every preset, on every version (old versions hold ~97% of them at dogfood scale).
    presets: int
    #: Presets on the active version of live templates: pools with something to keep.
    active_presets: int
    live_prebuilds: int
    user_workspaces: int
    #: Builds of deleted workspaces (deleted prebuilds, claimed and people's workspaces).
    historical_builds: int
    seed: int = 42

    @property
    def users(self) -> int:
        """Real users: about one per three live workspaces of people."""
        return max(10, self.user_workspaces // 3)


_DOGFOOD = Scenario(
    name="dogfood",
    organizations=5,
    templates=60,
    presets=3_100,
    active_presets=100,
    live_prebuilds=340,
    user_workspaces=1_000,
    historical_builds=200_000,
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        # A few hundred rows with every situation, for tests.
        Scenario(
            name="tiny",
            organizations=2,
            templates=5,
            presets=60,
            active_presets=16,
            live_prebuilds=80,
            user_workspaces=30,
            historical_builds=300,
        ),
        # Coder's own deployment, as in the original report (3,121 presets).
        _DOGFOOD,
        Scenario(
            name="history10",
            organizations=_DOGFOOD.organizations,
            templates=_DOGFOOD.templates,
            presets=_DOGFOOD.presets,
            active_presets=_DOGFOOD.active_presets,
            live_prebuilds=_DOGFOOD.live_prebuilds,
            user_workspaces=_DOGFOOD.user_workspaces,
            historical_builds=10 * _DOGFOOD.historical_builds,
        ),
        # Ten times the templates too, so versions keep dogfood's shape (1-2 presets each).
        Scenario(
            name="presets10",
            organizations=_DOGFOOD.organizations,
            templates=10 * _DOGFOOD.templates,
            presets=10 * _DOGFOOD.presets,
            active_presets=10 * _DOGFOOD.active_presets,
            live_prebuilds=10 * _DOGFOOD.live_prebuilds,
            user_workspaces=_DOGFOOD.user_workspaces,
            historical_builds=_DOGFOOD.historical_builds,
        ),
        Scenario(
            name="users5",
            organizations=_DOGFOOD.organizations,
            templates=_DOGFOOD.templates,
            presets=_DOGFOOD.presets,
            active_presets=_DOGFOOD.active_presets,
            live_prebuilds=_DOGFOOD.live_prebuilds,
            user_workspaces=5 * _DOGFOOD.user_workspaces,
            historical_builds=_DOGFOOD.historical_builds,
        ),
    )
}


@dataclass(frozen=True)
class FleetSummary:
    """What ``build_fleet`` generated (counted in the database) and how long it took."""

    scenario: str
    seed: int
    anchor: datetime
    #: replica, trigger_disabled or checked (see ``build_fleet``).
    load_mode: str
    organizations: int
    users: int
    templates: int
    template_versions: int
    presets: int
    active_presets: int
    preset_schedules: int
    live_prebuilds: int
    user_workspaces: int
    deleted_workspaces: int
    workspaces: int
    historical_builds: int
    builds: int
    jobs: int
    agents: int
    #: Presets per situation (active: healthy, backoff, surplus…; inactive: outdated_running…).
    presets_by_situation: Mapping[str, int]
    #: Live prebuilds per situation of their preset.
    prebuilds_by_situation: Mapping[str, int]
    #: Live prebuilds per state of their latest build (ready, not_ready, failed, stopping…).
    prebuilds_by_state: Mapping[str, int]
    #: Generation, commit included.
    seconds: float
    #: VACUUM after the commit (0 when skipped).
    vacuum_seconds: float
    step_seconds: Mapping[str, float]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["anchor"] = self.anchor.isoformat()
        return d

    def format(self) -> str:
        lines = [
            f"fleet {self.scenario} (seed {self.seed}, anchor {self.anchor.isoformat()}): "
            f"generated in {self.seconds:.1f} s ({self.load_mode} load), "
            f"vacuum {self.vacuum_seconds:.1f} s",
        ]
        for name in COUNT_FIELDS:
            lines.append(f"  {name:<20} {getattr(self, name):>10,}")
        lines.append("  situations (presets / live prebuilds):")
        for kind, n in self.presets_by_situation.items():
            lines.append(f"    {kind:<20} {n:>6,} / {self.prebuilds_by_situation.get(kind, 0):,}")
        lines.append(
            "  live prebuilds by state: "
            + ", ".join(f"{s} {n:,}" for s, n in self.prebuilds_by_state.items())
        )
        slow = sorted(self.step_seconds.items(), key=lambda kv: -kv[1])[:6]
        lines.append("  slowest steps: " + ", ".join(f"{s} {t:.2f} s" for s, t in slow))
        return "\n".join(lines)


#: The FleetSummary fields that count rows.
COUNT_FIELDS: Sequence[str] = (
    "organizations",
    "users",
    "templates",
    "template_versions",
    "presets",
    "active_presets",
    "preset_schedules",
    "live_prebuilds",
    "user_workspaces",
    "deleted_workspaces",
    "workspaces",
    "historical_builds",
    "builds",
    "jobs",
    "agents",
)


class FleetError(RuntimeError):
    """The database cannot take a fleet (not empty, not migrated)."""


@cache
def _statements() -> dict[str, str]:
    return parse(FLEET_SQL.read_text())


def statement(name: str) -> sql.SQL:
    """A named statement of ``bench/fleet.sql``."""
    try:
        text = _statements()[name]
    except KeyError:
        raise KeyError(f"no statement named {name!r} in {FLEET_SQL}") from None
    # The text comes from our own file, never from input.
    return sql.SQL(text)


#: Staging: temp tables describing every row to write.
PLAN_STEPS: Sequence[str] = (
    "analyze_parameters",
    "fleet_uuid",
    "fleet_time_uuid",
    "fleet_rand",
    "plan_templates",
    "plan_versions",
    "plan_presets",
    "situations",
    "assign_active_situations",
    "assign_inactive_situations",
    "size_pools",
    "number_pooled_presets",
    "fill_pooled_numbers",
    "plan_live",
    "plan_user_workspaces",
    "plan_history",
    "plan_workspaces",
    "plan_live_builds",
    "plan_user_builds",
    "plan_history_builds",
    "plan_latest_builds",
)

_PARENTS: Sequence[str] = (
    "insert_users",
    "insert_organizations",
    "insert_templates",
    "insert_template_versions",
    "set_active_versions",
    "insert_presets",
    "insert_preset_schedules",
)

#: How the staged rows are written, by load mode (see ``build_fleet``).
LOAD_STEPS: Mapping[str, Sequence[str]] = {
    # No per-row trigger: foreign keys and validations are checked once, set-based, afterwards;
    # the latest-build pointers are written with the workspaces.
    "replica": (
        "replica_mode_on",
        *_PARENTS,
        "insert_workspaces_with_latest",
        "insert_jobs",
        "insert_builds",
        "insert_agents",
        "insert_preset_counters",
        "replica_mode_off",
        "analyze_fleet",
        "verify_fleet",
    ),
    # Without the privilege for replica mode: foreign keys checked per row, the latest-build
    # trigger off and its pointers written by one UPDATE.
    "trigger_disabled": (
        *_PARENTS,
        "insert_workspaces",
        "insert_jobs",
        "disable_latest_build_trigger",
        "insert_builds",
        "set_latest_builds",
        "enable_latest_build_trigger",
        "insert_agents",
        "insert_preset_counters",
        "analyze_fleet",
    ),
    # Every trigger and foreign key on, builds inserted in build_number order per workspace: the
    # reference the faster modes are tested against (tests/test_bench_fleet.py).
    "checked": (
        *_PARENTS,
        "insert_workspaces",
        "insert_jobs",
        "insert_builds",
        "insert_agents",
        "insert_preset_counters",
        "analyze_fleet",
    ),
}


def _ensure_empty(conn: psycopg.Connection[Any]) -> None:
    try:
        row = conn.execute(statement("database_has_fleet")).fetchone()
    except psycopg.errors.UndefinedTable as exc:
        raise FleetError(f"the database is not migrated: {exc}") from exc
    if row is None or row[0]:
        raise FleetError("the database already holds a fleet: build into an empty database")


def build_fleet(
    conn: psycopg.Connection[Any],
    scenario: Scenario,
    *,
    anchor: datetime | None = None,
    load: str = "auto",
    vacuum: bool = True,
) -> FleetSummary:
    """Generate ``scenario`` into the empty, migrated database behind ``conn``.

    One transaction; on any error nothing is left behind. ``anchor`` (default: the server's
    ``now()``) is the instant every timestamp is relative to.

    ``load`` picks how rows are written (``LOAD_STEPS``); all three write the same rows, which
    tests/test_bench_fleet.py checks on the tiny fleet:

    - ``replica``: in ``session_replication_role = replica`` (superuser, or the SET privilege on
      that parameter), so no foreign-key check or trigger runs per row; afterwards every foreign
      key of the schema and the time-zone and schedule validations are checked once, set-based.
      The latest-build pointers are written with the workspaces, as the trigger would set them.
    - ``trigger_disabled``: foreign keys checked per row (several times slower); only the
      latest-build trigger is off and one UPDATE writes its pointers.
    - ``checked``: every trigger and foreign key on (slowest: one workspace update per build).
    - ``auto`` (default): ``replica`` when allowed, else ``trigger_disabled``.

    ``vacuum``: VACUUM the written tables after the commit when ``conn`` is idle, so benchmarks
    start from settled tables (statistics are gathered inside the transaction in every mode).
    """
    params = {
        "seed": scenario.seed,
        "anchor": anchor,
        "organizations": scenario.organizations,
        "templates": scenario.templates,
        "presets": scenario.presets,
        "active_presets": scenario.active_presets,
        "live_prebuilds": scenario.live_prebuilds,
        "user_workspaces": scenario.user_workspaces,
        "historical_builds": scenario.historical_builds,
        "users": scenario.users,
    }
    steps: dict[str, float] = {}

    def run(name: str, args: Mapping[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        conn.execute(statement(name), args)
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - t0

    started = time.perf_counter()
    with conn.transaction():
        _ensure_empty(conn)
        mode = _load_mode(conn, load)
        run("generation_settings")
        run("staging_buffers")
        run("parameters", params)
        for name in (*PLAN_STEPS, *LOAD_STEPS[mode]):
            run(name)
        summary_rows = _summary_rows(conn)
    seconds = time.perf_counter() - started

    t0 = time.perf_counter()
    if vacuum and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        autocommit = conn.autocommit
        conn.autocommit = True
        try:
            conn.execute(statement("vacuum_fleet"))
        finally:
            conn.autocommit = autocommit
    vacuum_seconds = time.perf_counter() - t0
    return FleetSummary(
        scenario=scenario.name,
        seed=scenario.seed,
        load_mode=mode,
        seconds=seconds,
        vacuum_seconds=vacuum_seconds,
        step_seconds=steps,
        **summary_rows,
    )


def _load_mode(conn: psycopg.Connection[Any], load: str) -> str:
    if load not in ("auto", *LOAD_STEPS):
        raise ValueError(f"load must be auto or one of {', '.join(LOAD_STEPS)}, not {load!r}")
    if load not in ("auto", "replica"):
        return load
    row = conn.execute(statement("can_bulk_load")).fetchone()
    if row and row[0]:
        return "replica"
    if load == "replica":
        raise FleetError(
            "a replica load needs superuser or SET on session_replication_role; use load='auto'"
        )
    return "trigger_disabled"


def _summary_rows(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        anchor = cur.execute(statement("anchor")).fetchone()
        counts = cur.execute(statement("table_counts")).fetchone()
        situations = cur.execute(statement("situation_counts")).fetchall()
        states = cur.execute(statement("state_counts")).fetchall()
    assert anchor is not None and counts is not None
    return {
        "anchor": anchor["anchor"],
        **counts,
        "presets_by_situation": {r["kind"]: r["presets"] for r in situations},
        "prebuilds_by_situation": {r["kind"]: r["prebuilds"] for r in situations},
        "prebuilds_by_state": {r["state"]: r["prebuilds"] for r in states},
    }


def plan_overview(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The plan at now() over the fleet: actions by kind, presets considered, blocked reasons."""
    with conn.cursor(row_factory=dict_row) as cur:
        t0 = time.perf_counter()
        actions = cur.execute(statement("actions_by_kind")).fetchall()
        plan_ms = (time.perf_counter() - t0) * 1000
        state = cur.execute(statement("state_overview")).fetchone()
    return {
        "plan_ms": round(plan_ms, 1),
        "actions": sum(r["n"] for r in actions),
        "actions_by_kind": {r["action"]: r["n"] for r in actions},
        **(state or {}),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet",
        description="Build a benchmark fleet into $DATABASE_URL (migrated to head first, must "
        "hold no fleet) or into a throwaway embedded PostgreSQL, and print what was generated.",
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-vacuum", action="store_true", help="skip the VACUUM afterwards")
    parser.add_argument(
        "--load",
        choices=("auto", *LOAD_STEPS),
        default="auto",
        help="how rows are written (default: replica when allowed, else trigger_disabled)",
    )
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    if args.seed is not None:
        scenario = Scenario(**{**asdict(scenario), "seed": args.seed})

    from prebuilds import migrations

    def build(url: str) -> dict[str, Any]:
        migrations.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            summary = build_fleet(conn, scenario, load=args.load, vacuum=not args.no_vacuum)
            overview = plan_overview(conn)
        if not args.json:
            print(summary.format())
            print(
                f"  plan at now(): {overview['actions']:,} actions "
                + json.dumps(overview["actions_by_kind"])
                + f" in {overview['plan_ms']} ms; preset_state: "
                + ", ".join(f"{k} {v}" for k, v in overview.items() if k.startswith("presets_"))
            )
        return {"summary": summary.as_dict(), "plan": overview}

    try:
        if url := os.environ.get("DATABASE_URL"):
            result = build(url)
        else:
            from prebuilds.embedded import embedded_server

            with embedded_server() as embedded_url:
                result = build(embedded_url)
    except (FleetError, psycopg.OperationalError) as exc:
        print(f"bench.fleet: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
