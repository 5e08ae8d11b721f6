"""Faults on the write path (issue 7): the lock is the only licence to write, waits are bounded,
dead runs are recognised, outcomes are honest, and one mistake cannot become an outage.

Every test uses real drivers (subprocesses or run_cycle) against a real server, and prints the
figure it proved (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import psycopg
import pytest

from prebuilds import cycle
from prebuilds.cycle import CannotRun, Limits, run_cycle
from tests.servers import PrivateDb
from tests.support import active_preset as preset
from tests.support import overfull, run_cli, scalar, start_cli, wait_until

Conn = psycopg.Connection[Any]

# Each create (the workspace insert) takes a few milliseconds more, so a cycle of a few hundred
# creates lasts long enough to be hit in the middle.
SLOW_CREATES = """
create function public.slow_create() returns trigger language plpgsql as $$
begin
    perform pg_sleep(%s);
    return new;
end $$;
create trigger slow_create before insert on prebuilds.workspaces
for each row execute function public.slow_create();
"""


def slow_creates(conn: Conn, seconds: float) -> None:
    conn.execute(SLOW_CREATES.replace("%s", str(seconds)))


def applied(conn: Conn, run_id: int | None = None) -> int:
    count: int = scalar(
        conn,
        "select count(*) from prebuilds.reconciliation_action_log "
        "where outcome = 'applied' and (%(run)s::bigint is null or run_id = %(run)s)",
        {"run": run_id},
    )
    return count


def plan_backend(conn: Conn) -> int:
    """The backend of the running driver's plan connection (it holds the reconcile lock)."""
    pid: int = scalar(
        conn,
        "select pid from pg_stat_activity where datname = current_database() "
        "and application_name = %s",
        (cycle.APPLICATION_NAME,),
    )
    return pid


def runs(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select id, status, actions_applied, actions_failed, error from "
        "prebuilds.reconciliation_runs order by id"
    ).fetchall()


def overlapping_runs(conn: Conn) -> int:
    """Pairs of runs whose applied actions interleave in time (started_at … finished_at)."""
    count: int = scalar(
        conn,
        """
        with span as (
            select run_id, min(started_at) as first_start, max(finished_at) as last_finish
            from prebuilds.reconciliation_action_log
            where outcome in ('applied', 'skipped')
            group by run_id
        )
        select count(*) from span as a join span as b on a.run_id < b.run_id
        where a.first_start < b.last_finish and b.first_start < a.last_finish
        """,
    )
    return count


# --- the lock is the only licence to write ---------------------------------------------------


def test_killed_plan_connection_stops_the_writers_and_a_second_run_waits(
    conn: Conn, db_url: str
) -> None:
    """pg_terminate_backend of the plan connection mid-cycle: the first driver applies nothing
    that starts after the kill, a second driver takes the free lock and applies the rest, and
    the two never apply at the same time."""
    pools = [preset(conn, f"big-{i}", 150) for i in range(4)]
    slow_creates(conn, 0.004)
    first = start_cli("reconcile", url=db_url)
    try:
        wait_until(lambda: applied(conn) >= 60, "the first driver to apply 60 actions", timeout=30)
        pid = plan_backend(conn)
        assert scalar(conn, "select pg_terminate_backend(%s, 10000)", (pid,))
        killed_at = scalar(conn, "select clock_timestamp()")
        second = run_cli("reconcile", url=db_url, timeout=120)
    finally:
        out, err = first.communicate(timeout=60)

    assert first.returncode == 1, (out, err)
    assert "lost the reconcile lock" in out + err
    assert second.returncode == 0, (second.stdout, second.stderr)
    (run1, status1, applied1, _, error1), (_, status2, applied2, failed2, _) = runs(conn)
    assert status1 == "failed" and "lost the reconcile lock" in error1
    started_after_kill = scalar(
        conn,
        "select count(*) from prebuilds.reconciliation_action_log "
        "where run_id = %s and started_at > %s",
        (run1, killed_at),
    )
    assert started_after_kill == 0
    assert overlapping_runs(conn) == 0
    assert (status2, failed2) == ("succeeded", 0)
    assert applied1 + applied2 == 600 and applied1 == applied(conn, run1)
    assert overfull(conn) == []
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 0
    print(
        f"\nkilled plan connection: run 1 applied {applied1} then stopped, 0 actions started "
        f"after the kill; run 2 applied {applied2}; overlaps 0; pools {len(pools)} at size"
    )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_restart_mid_cycle_stops_the_first_run(private_db: PrivateDb, mode: str) -> None:
    """pg_ctl restart mid-cycle: the plan connection and its lock die, the write pool reconnects
    to the restarted server, and its next action is refused; a second driver started at once
    applies the rest, never at the same time as the first."""
    url = private_db.url
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(4):
            preset(conn, f"big-{i}", 150)
        slow_creates(conn, 0.004)
        first = start_cli("reconcile", url=url)
        wait_until(lambda: applied(conn) >= 60, "the first driver to apply 60 actions", timeout=30)
    seconds = private_db.server.restart(mode)
    second = start_cli("reconcile", url=url)
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 1, (out1, err1)
    assert "lost the reconcile lock" in out1 + err1
    assert second.returncode == 0, (out2, err2)
    with psycopg.connect(url, autocommit=True) as conn:
        (run1, status1, applied1, *_), *_later = runs(conn)
        assert status1 in ("failed", "abandoned")
        # Nothing of the first run was written by the restarted server.
        after_restart = scalar(
            conn,
            "select count(*) from prebuilds.reconciliation_action_log "
            "where run_id = %s and outcome = 'applied' and started_at > pg_postmaster_start_time()",
            (run1,),
        )
        assert after_restart == 0
        assert overlapping_runs(conn) == 0
        for _ in range(2):  # the second run may have planned before the first gave up
            if scalar(conn, "select count(*) from prebuilds.reconciliation_actions"):
                assert run_cli("reconcile", url=url).returncode == 0
        assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 0
        assert overfull(conn) == []
        total = applied(conn)
    assert total == 600
    print(
        f"\nrestart -m {mode} ({seconds:.2f} s) mid-cycle: run 1 applied {applied1}, 0 after the "
        f"restart, ended {status1}; later runs applied {total - applied1}; overlaps 0"
    )


def test_a_server_idle_in_transaction_timeout_does_not_break_a_cycle(
    conn: Conn, db_url: str
) -> None:
    """A server with idle_in_transaction_session_timeout = 1s: the plan transaction sits idle
    while the writers apply for several seconds, and survives (its own local timeout and the
    keepalive)."""
    dbname = conn.info.dbname
    conn.execute(f"alter database {dbname} set idle_in_transaction_session_timeout = '1s'")
    for i in range(2):
        preset(conn, f"big-{i}", 150)
    slow_creates(conn, 0.015)
    started = time.monotonic()
    result = run_cycle(db_url)
    elapsed = time.monotonic() - started
    assert elapsed > 2.0, "the cycle must outlast the server's idle timeout to prove anything"
    assert result.lock_lost is None and result.failed == 0
    assert result.tally("applied") == 300
    assert runs(conn)[0][1:4] == ("succeeded", 300, 0)
    print(f"\nidle_in_transaction_session_timeout=1s: a {elapsed:.1f} s cycle applied 300 of 300")


# --- bounded waits -----------------------------------------------------------------------------


def test_a_locked_preset_row_fails_alone_and_is_retried_next_cycle(conn: Conn, db_url: str) -> None:
    """A platform transaction holds one preset row locked: that preset's creates fail after the
    lock timeout (its later creates are not even attempted), every other action is applied, and
    the next cycle fills the preset once the row is free."""
    stuck = preset(conn, "stuck", 5)
    others = [preset(conn, f"free-{i}", 5) for i in range(3)]
    with psycopg.connect(db_url) as holder:
        holder.execute("select 1 from prebuilds.presets where id = %s for update", (stuck,))
        started = time.monotonic()
        result = run_cycle(db_url, limits=Limits(lock_timeout=1.0))
        elapsed = time.monotonic() - started
        holder.rollback()
    failed = [o for o in result.outcomes if o.outcome == "failed"]
    assert {o.action.preset_id for o in failed} == {stuck} and len(failed) == 5
    # Never two creates of one preset at once: one lock timeout in all, not one per writer.
    assert sum(not (o.error or "").startswith("not attempted") for o in failed) == 1
    assert sum((o.error or "").startswith("not attempted") for o in failed) == 4
    assert result.tally("applied") == 15 and result.exit_code == 1
    assert elapsed < 1.0 + 1.5, elapsed
    logged = scalar(
        conn,
        "select count(*) from prebuilds.reconciliation_action_log "
        "where outcome = 'failed' and preset_id = %s",
        (stuck,),
    )
    assert logged == 5
    assert runs(conn)[0][1:4] == ("failed", 15, 5)
    # The history command shows them.
    history = run_cli("history", url=db_url)
    assert history.returncode == 0 and "lock timeout" in history.stdout
    again = run_cycle(db_url, limits=Limits(lock_timeout=1.0))
    assert again.failed == 0 and again.tally("applied") == 5
    assert {o.action.preset_id for o in again.outcomes} == {stuck}
    assert len(others) == 3 and overfull(conn) == []
    print(
        f"\nlocked preset row, lock_timeout 1 s: cycle took {elapsed:.2f} s, 15 other actions "
        "applied, 5 of the locked preset failed (logged), all 5 applied next cycle"
    )


def test_a_locked_row_holds_the_plan_read_only_until_the_statement_timeout(
    conn: Conn, db_url: str
) -> None:
    """The plan read has its own bound: a plan that cannot finish is a one-line exit 2."""
    preset(conn, "web", 1)
    with psycopg.connect(db_url) as holder:
        holder.execute("lock table prebuilds.settings in access exclusive mode")
        started = time.monotonic()
        with pytest.raises(CannotRun, match=r"(lock timeout|took too long|statement timeout)"):
            run_cycle(db_url, limits=Limits(lock_timeout=0.5, statement_timeout=1.0))
        elapsed = time.monotonic() - started
        holder.rollback()
    assert elapsed < 5
    assert runs(conn) == []


# --- dead runs are recognised ------------------------------------------------------------------


def test_a_killed_driver_leaves_an_abandoned_run_with_true_counts(conn: Conn, db_url: str) -> None:
    for i in range(3):
        preset(conn, f"big-{i}", 100)
    slow_creates(conn, 0.004)
    proc = start_cli("reconcile", url=db_url)
    wait_until(lambda: applied(conn) >= 40, "the driver to apply 40 actions", timeout=30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # The dead driver's plan connection goes when the server notices the closed socket.
    wait_until(
        lambda: (
            scalar(
                conn,
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and application_name like 'prebuilds-reconciler%%'",
            )
            == 0
        ),
        "the dead driver's backends to go",
        timeout=30,
    )
    done_before = applied(conn)
    result = run_cycle(db_url)
    assert result.failed == 0
    (run1, status1, applied1, _, error1), (_, status2, *_rest) = runs(conn)
    assert status1 == "abandoned" and "died or lost its connection" in error1
    assert applied1 == done_before == applied(conn, run1) > 0
    assert status2 == "succeeded"
    assert applied(conn) == 300 and overfull(conn) == []
    print(f"\nSIGKILL mid-cycle: run 1 abandoned with {applied1} applied (= its log); run 2 done")


# --- honest outcomes ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2])
def test_write_connections_killed_one_by_one(
    conn: Conn, db_url: str, depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the write pool's backends, one at a time, while a cycle applies: the pool replaces
    them, the actions in flight on them (up to ``depth`` per connection) are failed or (if they
    committed) applied according to the log, and every other action is applied."""
    monkeypatch.setattr(cycle, "PIPELINE_DEPTH", depth)
    for i in range(4):
        preset(conn, f"big-{i}", 100)
    slow_creates(conn, 0.004)
    kills = 0
    outcome: dict[str, Any] = {}

    def cycle_in_thread() -> None:
        outcome["result"] = run_cycle(db_url)

    thread = threading.Thread(target=cycle_in_thread)
    thread.start()
    wait_until(lambda: applied(conn) >= 20, "the cycle to start applying", timeout=30)
    while thread.is_alive() and kills < 6:
        pids = [
            r[0]
            for r in conn.execute(
                "select pid from pg_stat_activity where datname = current_database() "
                "and application_name = %s",
                (cycle.WRITE_APPLICATION_NAME,),
            )
        ]
        if pids:
            conn.execute("select pg_terminate_backend(%s, 5000)", (pids[kills % len(pids)],))
            kills += 1
        time.sleep(0.15)
    thread.join(timeout=120)
    result = outcome["result"]
    assert kills >= 3
    assert result.lock_lost is None
    logged_applied = applied(conn)
    assert result.tally("applied") == logged_applied
    run = runs(conn)[0]
    assert run[2] == logged_applied and run[3] == result.failed
    assert result.failed <= kills * depth
    failed_logged = scalar(
        conn, "select count(*) from prebuilds.reconciliation_action_log where outcome = 'failed'"
    )
    assert failed_logged == result.failed
    assert overfull(conn) == []
    print(
        f"\ndepth {depth}: {kills} write connections killed mid-cycle: {logged_applied} applied, "
        f"{result.failed} failed (all logged), counts match the log"
    )


# --- limits ------------------------------------------------------------------------------------


def test_max_actions_per_cycle_spreads_a_big_plan_over_cycles(conn: Conn, db_url: str) -> None:
    preset(conn, "a", 15)
    preset(conn, "b", 10)
    conn.execute("update prebuilds.settings set max_actions_per_cycle = 10")
    plan = run_cli("plan", url=db_url)
    assert "15 more actions wait for later cycles" in plan.stdout, plan.stdout
    applied_per_cycle = []
    for _ in range(3):
        proc = run_cli("reconcile", url=db_url)
        assert proc.returncode == 0, proc.stderr
        applied_per_cycle.append(runs(conn)[-1][2])
    assert applied_per_cycle == [10, 10, 5]
    deferred = [
        r[0]
        for r in conn.execute(
            "select actions_deferred from prebuilds.reconciliation_runs order by id"
        )
    ]
    assert deferred == [15, 5, 0]
    assert "more deferred to the next cycles" in run_cli("reconcile", "-v", url=db_url).stdout or (
        scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 0
    )


def test_without_the_settings_row_every_command_says_so(conn: Conn, db_url: str) -> None:
    with pytest.raises(psycopg.errors.RestrictViolation, match="must keep its one row"):
        conn.execute("delete from prebuilds.settings")
    with pytest.raises(psycopg.errors.RestrictViolation):
        conn.execute("truncate prebuilds.settings")
    # Only by disabling the guard (a superuser) can the row go; then a clear exit 2.
    conn.execute("alter table prebuilds.settings disable trigger settings_keep_row")
    conn.execute("delete from prebuilds.settings")
    for command in (["reconcile"], ["plan"], ["reconcile", "--dry-run"]):
        proc = run_cli(*command, url=db_url)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "prebuilds.settings has no row" in lines[0], lines
        assert "Traceback" not in proc.stderr
