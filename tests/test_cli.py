"""`prebuilds reconcile` as a real process: exit codes and what it prints (SPEC 4.6)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from prebuilds import locks
from prebuilds.migrations import EXPECTED_REVISION
from tests.fixtures import drop_database, with_database
from tests.support import run_cli, scalar

Conn = psycopg.Connection[Any]

EXIT_OK, EXIT_ACTIONS_FAILED, EXIT_CANNOT_RUN = 0, 1, 2


def preset(conn: Conn, template: str, desired: int) -> UUID:
    value: UUID = scalar(conn, "select fixture.active_preset(%s, %s)", (template, desired))
    return value


def small_fleet(conn: Conn) -> None:
    """Two surplus prebuilds to delete, two creates, a queued build to cancel, a backoff note."""
    surplus = preset(conn, "surplus", 1)
    for name, age in (("surplus-1", "3 hours"), ("surplus-2", "2 hours"), ("surplus-3", "1 hour")):
        conn.execute(
            "select fixture.prebuild(%s, now() - %s::interval, 'running', true, "
            "prebuilds.system_user_id(), %s)",
            (surplus, age, name),
        )
    preset(conn, "short", 2)
    moved = preset(conn, "moved", 1)
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '1 minute', 'starting', false, "
        "prebuilds.system_user_id(), 'queued')",
        (moved,),
    )
    conn.execute("select fixture.new_version('moved', 'v2')")
    flaky = preset(conn, "flaky", 1)
    conn.execute("select fixture.prebuild(%s, now() - interval '10 seconds', 'failed')", (flaky,))


def fingerprint(conn: Conn) -> tuple[Any, ...]:
    """Everything a cycle could write."""
    row = conn.execute(
        """
        select
            (select count(*) from prebuilds.workspaces),
            (select count(*) from prebuilds.workspaces where deleted),
            (select count(*) from prebuilds.workspace_builds),
            (select count(*) from prebuilds.provisioner_jobs where status <> 'pending'),
            (select count(*) from prebuilds.reconciliation_runs),
            (select count(*) from prebuilds.reconciliation_action_log)
        """
    ).fetchone()
    assert row is not None
    return tuple(row)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- exit 0 ----------------------------------------------------------------------------------


def test_reconcile_applies_the_plan_and_prints_a_summary(conn: Conn, db_url: str) -> None:
    small_fleet(conn)
    proc = run_cli("reconcile", "-v", url=db_url)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    # -v: one line per action (the backoff note too), then the summary.
    assert len(lines) == 7
    assert "#6 noted   backoff acme/flaky@v1/default: backoff: 1 failed" in lines[5]
    # Two writers report as they finish, so within a phase the order may vary; the phases may not:
    # the cancel and both deletes come before either create.
    removals, creates = lines[:3], lines[3:5]
    assert sum("applied cancel  acme/moved@v1/default" in line for line in removals) == 1
    assert sum("surplus: 3 running, 1 desired" in line for line in removals) == 2
    assert all("applied create  acme/short@v1/default" in line for line in creates), creates
    assert lines[-1].startswith(
        "prebuilds: run 1: applied 1 cancel, 2 delete, 2 create; 0 skipped, 0 failed, "
        "1 presets in backoff"
    )
    assert scalar(conn, "select status from prebuilds.reconciliation_runs") == "succeeded"

    # Nothing left to do: the next run applies nothing.
    again = run_cli("reconcile", url=db_url)
    assert again.returncode == EXIT_OK
    assert "applied 0 cancel, 0 delete, 0 create; 0 skipped, 0 failed" in one_line(again.stdout)


def test_dry_run_prints_the_plan_with_reasons_and_writes_nothing(conn: Conn, db_url: str) -> None:
    small_fleet(conn)
    before = fingerprint(conn)
    # It takes no lock: it works while another reconciler holds it.
    with psycopg.connect(db_url) as other:
        assert scalar(other, "select pg_try_advisory_xact_lock(%s)", (locks.RECONCILE,))
        proc = run_cli("reconcile", "--dry-run", url=db_url)
        other.rollback()

    assert proc.returncode == EXIT_OK, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert out.splitlines()[0].split() == ["seq", "action", "preset", "workspace", "reason"]
    actions, held_back = out.split("\n\n", 1)
    body = [line.split(None, 2) for line in actions.splitlines()[2:]]
    # The pool in backoff is also named below the plan, with why nothing is created for it.
    assert held_back.startswith("pools held back") and "backoff" in held_back, held_back
    assert [(b[0], b[1]) for b in body] == [
        ("1", "cancel"),
        ("2", "delete"),
        ("3", "delete"),
        ("4", "create"),
        ("5", "create"),
        ("6", "backoff"),
    ]
    assert "outdated version v1 (active: v2): initial build still queued" in out
    assert out.count("surplus: 3 running, 1 desired") == 2
    assert out.count("missing: 0 running, 0 starting, 2 desired") == 2
    assert "backoff: 1 failed build(s) in the last 01:00:00" in out
    for name in ("queued", "surplus-1", "surplus-2"):
        assert str(scalar(conn, "select fixture.ws(%s)", (name,))) in out
    assert fingerprint(conn) == before
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_runs") == 0


def test_dry_run_with_nothing_to_do(conn: Conn, db_url: str) -> None:
    proc = run_cli("reconcile", "--dry-run", url=db_url)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (EXIT_OK, "nothing to do", "")


def test_paused_reconcile_exits_0_says_paused_and_applies_nothing(conn: Conn, db_url: str) -> None:
    small_fleet(conn)
    conn.execute("update prebuilds.settings set reconciliation_paused = true")
    before = fingerprint(conn)

    proc = run_cli("reconcile", url=db_url)

    assert proc.returncode == EXIT_OK, proc.stderr
    assert "reconciliation is paused" in one_line(proc.stdout)
    assert "nothing done" in proc.stdout
    after = fingerprint(conn)
    # Only the run row recording the paused cycle; no build, job or action.
    assert after[:4] == before[:4] and after[5] == before[5] == 0
    assert conn.execute("select status from prebuilds.reconciliation_runs").fetchall() == [
        ("paused",)
    ]
    dry = run_cli("reconcile", "--dry-run", url=db_url)
    assert (dry.returncode, dry.stdout.strip()) == (
        EXIT_OK,
        "reconciliation is paused: the plan is empty",
    )


def test_lock_held_elsewhere_exits_0_and_says_so(conn: Conn, db_url: str) -> None:
    small_fleet(conn)
    before = fingerprint(conn)
    with psycopg.connect(db_url) as other:
        assert scalar(other, "select pg_try_advisory_xact_lock(%s)", (locks.RECONCILE,))
        proc = run_cli("reconcile", url=db_url)
        other.rollback()
    assert proc.returncode == EXIT_OK, proc.stderr
    assert one_line(proc.stdout) == "prebuilds: another reconciler holds the lock; nothing done"
    assert fingerprint(conn) == before


# --- exit 1 ----------------------------------------------------------------------------------


def test_a_failed_action_exits_1_and_prints_the_failure(conn: Conn, db_url: str) -> None:
    small_fleet(conn)
    conn.execute(
        """
        create function public.refuse_delete() returns trigger language plpgsql as $$
        begin
            if new.transition = 'delete' and new.workspace_id = fixture.ws('surplus-2') then
                raise exception 'test trigger: refusing to delete workspace surplus-2';
            end if;
            return new;
        end $$;
        create trigger refuse_delete before insert on prebuilds.workspace_builds
        for each row execute function public.refuse_delete();
        """
    )
    surplus_2 = scalar(conn, "select fixture.ws('surplus-2')")

    proc = run_cli("reconcile", url=db_url)

    assert proc.returncode == EXIT_ACTIONS_FAILED, (proc.stdout, proc.stderr)
    # The failure, once, with the workspace, the reason and the error, on stderr.
    failure = [line for line in proc.stderr.splitlines() if "refusing" in line]
    assert len(failure) == 1, proc.stderr
    assert "failed" in failure[0] and str(surplus_2) in failure[0]
    assert "surplus: 3 running, 1 desired" in failure[0]
    assert "error: test trigger: refusing to delete workspace surplus-2" in failure[0]
    assert "applied 1 cancel, 1 delete, 2 create; 0 skipped, 1 failed" in one_line(proc.stdout)
    assert conn.execute(
        "select outcome, error from prebuilds.reconciliation_action_log where workspace_id = %s",
        (surplus_2,),
    ).fetchall() == [("failed", "test trigger: refusing to delete workspace surplus-2")]
    assert conn.execute(
        "select status, actions_applied, actions_failed from prebuilds.reconciliation_runs"
    ).fetchall() == [("failed", 4, 1)]


# --- exit 2 ----------------------------------------------------------------------------------


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A database without the prebuilds schema."""
    name = f"prebuilds_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    yield with_database(server_url, name)
    drop_database(server_url, name)


@pytest.mark.parametrize("dry_run", [False, True], ids=["reconcile", "dry-run"])
@pytest.mark.parametrize(
    ("target", "cause"),
    [
        (
            "no-socket",
            'socket "/nonexistent/prebuilds-no-such-dir/.s.PGSQL.5432" failed: '
            "No such file or directory",
        ),
        ("refused", 'connection to server at "127.0.0.1", port 1 failed: Connection refused'),
        ("no-database", 'database "prebuilds_no_such_database" does not exist'),
        ("bad-url", 'invalid URI query parameter: "no_such_option"'),
    ],
)
def test_unreachable_database_exits_2(
    server_url: str, target: str, cause: str, dry_run: bool
) -> None:
    url = {
        "no-socket": "postgresql://postgres@/postgres?host=/nonexistent/prebuilds-no-such-dir",
        # Port 1 on loopback: nothing listens there.
        "refused": "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=5",
        "no-database": with_database(server_url, "prebuilds_no_such_database"),
        "bad-url": "postgresql://postgres@/postgres?no_such_option=1",
    }[target]
    proc = run_cli("reconcile", *(["--dry-run"] if dry_run else []), url=url, timeout=30)
    assert proc.returncode == EXIT_CANNOT_RUN, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    line = one_line(proc.stderr)
    prefix = "bad database URL: " if target == "bad-url" else "cannot connect to the database: "
    assert line.startswith("prebuilds: cannot run: " + prefix), line
    assert cause in line


@pytest.mark.parametrize("args", [["reconcile"], ["reconcile", "--dry-run"]])
def test_missing_database_url_exits_2(args: list[str]) -> None:
    proc = run_cli(*args, url=None)
    assert proc.returncode == EXIT_CANNOT_RUN
    assert proc.stdout == ""
    assert one_line(proc.stderr) == (
        "prebuilds: cannot run: no database: set DATABASE_URL or pass --database-url"
    )


@pytest.mark.parametrize("dry_run", [False, True], ids=["reconcile", "dry-run"])
def test_database_without_the_schema_exits_2(empty_db_url: str, dry_run: bool) -> None:
    proc = run_cli("reconcile", *(["--dry-run"] if dry_run else []), url=empty_db_url)
    assert proc.returncode == EXIT_CANNOT_RUN, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    line = one_line(proc.stderr)
    assert line.startswith("prebuilds: cannot run: the prebuilds schema is not installed ("), line
    assert "does not exist" in line and "alembic upgrade head" in line


@pytest.mark.parametrize("dry_run", [False, True], ids=["reconcile", "dry-run"])
def test_schema_at_another_revision_exits_2(conn: Conn, db_url: str, dry_run: bool) -> None:
    small_fleet(conn)
    conn.execute("update alembic_version set version_num = '0000'")
    before = fingerprint(conn)

    proc = run_cli("reconcile", *(["--dry-run"] if dry_run else []), url=db_url)

    assert proc.returncode == EXIT_CANNOT_RUN, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert one_line(proc.stderr) == (
        "prebuilds: cannot run: the database schema is at revision 0000, this driver needs "
        f"{EXPECTED_REVISION}; run `prebuilds migrate` (or `alembic upgrade head`), or upgrade "
        "the driver"
    )
    assert fingerprint(conn) == before
