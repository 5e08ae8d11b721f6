"""The ``prebuilds`` command.

Exit codes (SPEC 4.6): 0 done (also when another reconciler holds the lock, or reconciliation is
paused), 1 some actions failed, 2 cannot run (no database, schema not at the driver's revision,
bad configuration), each with a one-line message naming the cause.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import psycopg

from driver import __version__, migrations
from driver.cycle import CannotRun, first_line, plan_only, run_cycle
from driver.model import CycleResult, Outcome
from driver.report import format_outcome, format_plan

EXIT_OK, EXIT_ACTIONS_FAILED, EXIT_CANNOT_RUN = 0, 1, 2

log = logging.getLogger("prebuilds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prebuilds",
        description="Keep pools of prebuilt workspaces at their desired size. The rules live in "
        "the database (prebuilds.reconciliation_actions); this command applies them.",
        epilog="Exit codes: 0 done (also: lock held elsewhere, paused), 1 some actions failed, "
        "2 cannot run.",
    )
    parser.add_argument("--version", action="version", version=f"prebuilds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--database-url",
            default=os.environ.get("DATABASE_URL"),
            metavar="URL",
            help="postgresql:// URL of the database (default: $DATABASE_URL)",
        )
        return p

    rec = with_db(
        sub.add_parser(
            "reconcile",
            help="run one reconciliation cycle and exit (for cron)",
            description="Take the reconciler lock, read prebuilds.reconciliation_actions in one "
            "query and apply it through two write connections: cancels and deletes first, "
            "then creates. Every cycle and action outcome is recorded in "
            "prebuilds.reconciliation_runs and prebuilds.reconciliation_action_log. If another "
            "reconciler holds the lock, says so and exits 0.",
        )
    )
    rec.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan with reasons and apply nothing (takes no lock, writes nothing)",
    )
    rec.add_argument("-v", "--verbose", action="store_true", help="print every action's outcome")

    demo = sub.add_parser(
        "demo",
        help="reconcile a demo fleet to convergence (embedded PostgreSQL without DATABASE_URL)",
        description="Seed a small realistic fleet and alternate reconcile cycles with a "
        "simulated provisioner until the pools converge. Without DATABASE_URL it runs on a "
        "throwaway embedded PostgreSQL; with it, it needs an empty database.",
    )
    demo.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        metavar="URL",
        help="use this (empty) database instead of an embedded server (default: $DATABASE_URL)",
    )

    with_db(
        sub.add_parser(
            "migrate",
            help="apply the schema migrations (same as `alembic upgrade head`)",
            description="Bring the prebuilds schema to the revision this driver needs.",
        )
    )

    freeze = sub.add_parser(
        "freeze",
        help="(development) freeze db/ as a migration's SQL",
        description="Freeze db/ objects into the SQL of an Alembic revision. Without OBJECT, "
        "all of db/ becomes alembic/sql/REVISION_upgrade.sql (an initial revision). With "
        "OBJECTs (paths under db/), REVISION_upgrade.sql gets their current text and "
        "REVISION_downgrade.sql their text from the previous revision, below a marker line; "
        "what you wrote above it (drops, alters) is kept. See README, 'Adding a migration'.",
    )
    freeze.add_argument("revision", help="revision id, e.g. 0002")
    freeze.add_argument(
        "objects", nargs="*", metavar="OBJECT", help="db/ file that the revision changes"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="prebuilds: %(levelname)s: %(message)s")
    log.setLevel(logging.INFO)
    try:
        return dispatch(args)
    except CannotRun as exc:
        print(f"prebuilds: cannot run: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except psycopg.Error as exc:
        print(f"prebuilds: cannot run: database error: {first_line(exc)}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        print("prebuilds: interrupted", file=sys.stderr)
        return 130


def require_url(args: argparse.Namespace) -> str:
    url: str | None = args.database_url
    if not url:
        raise CannotRun("no database: set DATABASE_URL or pass --database-url")
    return url


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "reconcile":
        url = require_url(args)
        if args.dry_run:
            print(format_plan(plan_only(url)))
            return EXIT_OK
        return reconcile(url, verbose=args.verbose)
    if args.command == "demo":
        from driver.demo import run_demo

        return run_demo(args.database_url, sys.stdout)
    if args.command == "migrate":
        migrations.upgrade(require_url(args))
        print(f"prebuilds: schema at revision {migrations.head_revision()}")
        return EXIT_OK
    if args.command == "freeze":
        try:
            paths = migrations.freeze(args.revision, args.objects)
        except ValueError as exc:
            raise CannotRun(str(exc)) from exc
        for path in paths:
            print(f"prebuilds: wrote {path}")
        return EXIT_OK
    raise AssertionError(args.command)


def reconcile(url: str, *, verbose: bool) -> int:
    def report(outcome: Outcome) -> None:
        if verbose or outcome.outcome == "failed":
            print(
                format_outcome(outcome),
                file=sys.stderr if outcome.outcome == "failed" else sys.stdout,
            )

    result = run_cycle(url, on_outcome=report)
    print(summary(result))
    return result.exit_code


def summary(result: CycleResult) -> str:
    if result.status == "lock_busy":
        return "prebuilds: another reconciler holds the lock; nothing done"
    if result.status == "paused":
        return (
            f"prebuilds: run {result.run_id}: reconciliation is paused "
            "(prebuilds.settings.reconciliation_paused); nothing done"
        )
    kinds = ", ".join(f"{result.tally('applied', k)} {k}" for k in ("cancel", "delete", "create"))
    return (
        f"prebuilds: run {result.run_id}: applied {kinds}; "
        f"{result.tally('skipped')} skipped, {result.failed} failed, "
        f"{result.tally('noted')} presets in backoff "
        f"(plan {result.plan_seconds * 1000:.0f} ms, apply {result.apply_seconds * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
