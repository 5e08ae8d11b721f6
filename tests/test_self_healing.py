"""Self-healing pools (SPEC 5) with real connections: the whole loop converging with no person
acting, each write function's re-check under a concurrent change, the failures index, and the
operator commands `failures` and `cleanup`."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any
from uuid import UUID

import psycopg
import pytest
from prometheus_client import generate_latest

from prebuilds.cycle import run_cycle
from prebuilds.metrics import Metrics
from prebuilds.simulator import SIMULATED_DELETE_ERROR, SimulatedProvisioner
from tests.support import active_preset, run_cli, scalar, wait_until

Conn = psycopg.Connection[Any]


def prebuild(conn: Conn, preset: UUID, age: str, state: str, name: str) -> UUID:
    value: UUID = scalar(
        conn,
        "select fixture.prebuild(%s, now() - %s::interval, %s, true, "
        "prebuilds.system_user_id(), %s)",
        (preset, age, state, name),
    )
    return value


def state_of(conn: Conn) -> dict[UUID, dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute("select * from prebuilds.preset_state").fetchall()
    return {r["preset_id"]: r for r in rows}


def blocked_on_lock(conn: Conn, application_name: str) -> bool:
    return bool(
        scalar(
            conn,
            "select exists (select from pg_stat_activity where application_name = %s "
            "and wait_event_type = 'Lock')",
            (application_name,),
        )
    )


def call_in_thread(
    url: str, name: str, sql: str, params: Any
) -> tuple[threading.Thread, list[Any]]:
    """Run ``sql`` on a connection of its own in a thread; its first column lands in the list."""
    result: list[Any] = []

    def run() -> None:
        with psycopg.connect(url, autocommit=True, application_name=name) as c:
            result.append(scalar(c, sql, params))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


# --- the whole loop ----------------------------------------------------------------------------


def test_pools_heal_themselves_with_no_person_acting(conn: Conn, db_url: str) -> None:
    """Reconciler cycles and a simulated provisioner whose deletes fail twice per workspace, that
    dies in the middle of two builds, and whose starts of one template fail until that preset is
    hard-limited, then work again. With short timeouts the pools converge, nobody resumes
    anything, and every step is visible on the way."""
    conn.execute(
        "update prebuilds.settings set delete_retry_interval = '200 milliseconds', "
        "job_heartbeat_timeout = '1 second', backoff_interval = '200 milliseconds', "
        "hard_limit_cooldown = '1 second'"
    )
    # Two surplus running prebuilds: their deletes fail twice each, then succeed.
    deletes = active_preset(conn, "deletes", 1)
    for i, age in enumerate(("3 hours", "2 hours", "1 hour"), start=1):
        prebuild(conn, deletes, age, "running", f"deletes-{i}")
    # The provisioner dies while building the first two of this pool.
    hangs = active_preset(conn, "hangs", 2)
    # Every start fails until the preset is hard-limited; then the template is fixed.
    flaky = active_preset(conn, "flaky", 1)
    # Cut from 5 to 1 while 5 initial builds are still queued.
    queue = active_preset(conn, "queue", 1)
    for i in range(1, 6):
        prebuild(conn, queue, f"{10 - i} seconds", "starting", f"queued-{i}")

    provisioner = SimulatedProvisioner(
        conn, failing_presets=[flaky], failing_deletes=2, abandon={hangs: 2}
    )
    seen: Counter[str] = Counter()
    hard_limited_seen = retrying_seen = False
    deadline = time.monotonic() + 90
    converged = False
    while time.monotonic() < deadline:
        result = run_cycle(db_url)
        assert result.status == "done" and result.failed == 0, result.outcomes
        for outcome in result.outcomes:
            if outcome.outcome == "applied":
                seen[outcome.action.action] += 1
                seen[outcome.action.reason.split(":")[0].split(" ")[0]] += 1
        done = provisioner.drain()
        seen.update(done)
        state = state_of(conn)
        if state[flaky]["hard_limited"]:
            hard_limited_seen = True
            assert state[flaky]["blocked_reason"] == "hard_limited"
            provisioner.failing_presets.clear()  # someone fixed the template; nobody resumes
        retrying_seen = retrying_seen or state[deletes]["retrying_deletes"] > 0
        plan_empty = not scalar(
            conn, "select exists (select from prebuilds.reconciliation_actions)"
        )
        healthy = all(
            (
                state[p]["actual"],
                state[p]["eligible"],
                state[p]["starting"],
                state[p]["deleting"],
                state[p]["retrying_deletes"],
                state[p]["quarantined"],
                state[p]["hard_limited"],
            )
            == (state[p]["desired"], state[p]["desired"], 0, 0, 0, 0, False)
            for p in (deletes, hangs, flaky, queue)
        )
        if healthy and plan_empty and not done:
            converged = True
            break
        time.sleep(0.15)
    assert converged, (seen, state_of(conn))

    # Each rule acted: 4 surplus queued builds cancelled, 2 hung starts failed, the deletes
    # retried (2 surplus x 2 failures), a probe after the hard limit.
    assert seen["cancel"] == 4, seen
    assert seen["fail_job"] == 2, seen
    assert seen["retry"] == 4, seen
    assert seen["probe"] >= 1, seen
    assert seen["delete failed"] == 4 and seen["start hung"] == 2, seen
    assert hard_limited_seen and retrying_seen
    assert (
        scalar(conn, "select count(*) from prebuilds.presets where failures_reset_at is not null")
        == 0
    ), "nobody resumed a preset"
    # The failures stay visible: the hung jobs and the failed deletes, with their errors.
    errors = Counter(
        r[0].split(" for ")[0]
        for r in conn.execute("select error from prebuilds.prebuild_failures").fetchall()
    )
    assert errors["hung: no heartbeat"] == 2 and errors[SIMULATED_DELETE_ERROR] == 4, errors
    # And counted for the metrics.
    metrics = Metrics()
    metrics.refresh(conn)
    text = generate_latest(metrics.registry).decode()
    assert "prebuilds_hung_jobs_failed_total 2.0" in text
    assert "prebuilds_delete_retries_total 4.0" in text
    assert (
        'prebuilds_preset_quarantined{organization="acme",preset="default",template="deletes"} 0.0'
        in text
    )


# --- re-checks under concurrent changes ------------------------------------------------------


def test_fail_job_waits_for_a_heartbeat_in_progress_and_then_leaves_the_job(
    conn: Conn, db_url: str
) -> None:
    pool = active_preset(conn, "t", 1)
    ws = prebuild(conn, pool, "10 minutes", "provisioning", "silent")
    job = scalar(conn, "select fixture.latest_job(%s)", (ws,))
    assert (
        scalar(
            conn, "select count(*) from prebuilds.reconciliation_actions where action = 'fail_job'"
        )
        == 1
    )
    with psycopg.connect(db_url, application_name="provisioner") as provisioner:
        # The provisioner's heartbeat holds the job's row until it commits.
        assert scalar(provisioner, "select prebuilds.heartbeat_job(%s)", (job,)) is True
        thread, result = call_in_thread(
            db_url, "reconciler", "select prebuilds.fail_job(%s)", (ws,)
        )
        wait_until(lambda: blocked_on_lock(conn, "reconciler"), "fail_job waiting for the job row")
        provisioner.commit()
    thread.join(10)
    assert result == [False], "the heartbeat that committed first wins"
    assert scalar(conn, "select status from prebuilds.provisioner_jobs where id = %s", (job,)) == (
        "running"
    )


def test_a_job_completed_while_fail_job_waits_stays_as_completed(conn: Conn, db_url: str) -> None:
    pool = active_preset(conn, "t", 1)
    ws = prebuild(conn, pool, "10 minutes", "provisioning", "silent")
    job = scalar(conn, "select fixture.latest_job(%s)", (ws,))
    with psycopg.connect(db_url, application_name="provisioner") as provisioner:
        assert scalar(provisioner, "select prebuilds.complete_job(%s, null)", (job,)) is True
        thread, result = call_in_thread(
            db_url, "reconciler", "select prebuilds.fail_job(%s)", (ws,)
        )
        wait_until(lambda: blocked_on_lock(conn, "reconciler"), "fail_job waiting for the job row")
        provisioner.commit()
    thread.join(10)
    assert result == [False]
    assert scalar(conn, "select status from prebuilds.provisioner_jobs where id = %s", (job,)) == (
        "succeeded"
    )


def test_cancel_rechecks_the_surplus_under_the_presets_lock(conn: Conn, db_url: str) -> None:
    """The plan says cancel (1 running, 1 queued, 1 desired); meanwhile an operator grows the
    pool, holding the preset's row: the cancel waits, then sees no surplus and keeps the build."""
    pool = active_preset(conn, "t", 1)
    prebuild(conn, pool, "1 hour", "running", "running")
    queued = prebuild(conn, pool, "1 minute", "starting", "queued")
    assert scalar(conn, "select action from prebuilds.reconciliation_actions") == "cancel"
    with psycopg.connect(db_url, application_name="operator") as operator:
        operator.execute(
            "update prebuilds.presets set desired_instances = 2 where id = %s", (pool,)
        )
        thread, result = call_in_thread(
            db_url, "reconciler", "select prebuilds.cancel_prebuild(%s)", (queued,)
        )
        wait_until(lambda: blocked_on_lock(conn, "reconciler"), "cancel waiting for the preset")
        operator.commit()
    thread.join(10)
    assert result == [False]
    assert (
        scalar(conn, "select deleted from prebuilds.workspaces where id = %s", (queued,)) is False
    )


def test_two_retries_of_one_failed_delete_queue_one_delete(conn: Conn, db_url: str) -> None:
    pool = active_preset(conn, "t", 0)
    ws = prebuild(conn, pool, "1 hour", "running", "ws")
    conn.execute("select fixture.build(%s, 'delete', 'failed', now() - interval '1 hour')", (ws,))
    with psycopg.connect(db_url, application_name="first") as first:
        assert scalar(first, "select prebuilds.delete_prebuild(%s)", (ws,)) is True
        thread, result = call_in_thread(
            db_url, "second", "select prebuilds.delete_prebuild(%s)", (ws,)
        )
        wait_until(lambda: blocked_on_lock(conn, "second"), "the second retry waiting")
        first.commit()
    thread.join(10)
    assert result == [False], "the second sees a delete in flight"
    assert (
        scalar(
            conn, "select count(*) from prebuilds.workspace_builds where workspace_id = %s", (ws,)
        )
        == 3
    )


def test_cleanup_skips_a_prebuild_being_claimed_and_never_deletes_it(
    conn: Conn, db_url: str
) -> None:
    pool = active_preset(conn, "t", 1)
    stopped = prebuild(conn, pool, "2 days", "stopped", "stopped")
    alice = scalar(conn, "select fixture.user('alice')")
    with psycopg.connect(db_url, application_name="platform") as platform:
        # A platform transaction hands the stopped prebuild to alice (it holds the row).
        platform.execute(
            "update prebuilds.workspaces set owner_id = %s where id = %s", (alice, stopped)
        )
        rows = conn.execute(
            "select outcome from prebuilds.cleanup_prebuilds(array['stopped'], p_dry_run => false)"
        ).fetchall()
        assert rows == [("skipped: busy (a claim or a delete holds it)",)]
        platform.commit()
    assert (
        conn.execute(
            "select * from prebuilds.cleanup_prebuilds(array['stopped'], p_dry_run => false)"
        ).fetchall()
        == []
    ), "once claimed it is no longer a prebuild"
    assert (
        scalar(
            conn,
            "select count(*) from prebuilds.workspace_builds where workspace_id = %s",
            (stopped,),
        )
        == 2
    )


# --- the failures view's cost ----------------------------------------------------------------


def test_prebuild_failures_reads_failed_jobs_newest_first_from_an_index(conn: Conn) -> None:
    pool = active_preset(conn, "t", 1)
    # A history: 2,000 succeeded jobs, 200 failed ones.
    conn.execute(
        """
        select fixture.prebuild(%s, now() - make_interval(mins => i),
            case when i %% 10 = 0 then 'failed' else 'stopped' end)
        from generate_series(1, 2000) as i
        """,
        (pool,),
    )
    conn.execute("analyze")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "explain select * from prebuilds.prebuild_failures limit 20"
        ).fetchall()
    )
    assert "provisioner_jobs_failed_idx" in plan, plan
    assert "Sort" not in plan.split("Limit")[1].split("->")[1], plan
    assert scalar(conn, "select count(*) from prebuilds.prebuild_failures") == 200


# --- the operator commands -------------------------------------------------------------------


def test_failures_and_cleanup_commands(conn: Conn, db_url: str) -> None:
    pool = active_preset(conn, "web", 1)
    prebuild(conn, pool, "3 days", "failed", "broken")
    prebuild(conn, pool, "2 days", "stopped", "stopped")
    prebuild(conn, pool, "1 hour", "running", "fine")

    proc = run_cli("failures", url=db_url)
    assert proc.returncode == 0, proc.stderr
    assert "broken" in proc.stdout and "terraform apply failed" in proc.stdout
    assert "acme/web@v1/default" in proc.stdout

    proc = run_cli("failures", "--template", "web", "--since", "1d", "--json", url=db_url)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    proc = run_cli("failures", "--template", "nope", url=db_url)
    assert proc.returncode == 2 and "no such template 'nope'" in proc.stderr

    proc = run_cli("cleanup", "--dry-run", url=db_url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("would delete") == 2
    assert "dry run: 2 prebuild(s) would be deleted; nothing changed" in proc.stdout
    assert (
        scalar(conn, "select count(*) from prebuilds.workspace_builds where transition = 'delete'")
        == 0
    )

    proc = run_cli("cleanup", "--stopped", "--json", url=db_url)
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert [(r["workspace_name"], r["outcome"]) for r in document["prebuilds"]] == [
        ("stopped", "delete queued")
    ]
    assert (
        scalar(conn, "select count(*) from prebuilds.workspace_builds where transition = 'delete'")
        == 1
    )

    proc = run_cli("cleanup", "--older-than", "0s", url=db_url)
    assert proc.returncode == 2 and "--older-than" in proc.stderr


# --- the provisioner's timeouts --------------------------------------------------------------


def test_provisioner_statements_run_with_the_reconcilers_local_timeouts(db_url: str) -> None:
    """Every statement of `prebuilds provision` runs in a transaction that starts with its
    --lock-timeout and --statement-timeout, local to that transaction: a heartbeat waiting on a
    job row locked elsewhere gives up instead of freezing the worker."""
    from psycopg_pool import ConnectionPool

    from prebuilds.cycle import Limits
    from prebuilds.provision import Options, Provisioner, StopSignals

    options = Options(command="true", worker_id="w", limits=Limits(0.2, 3.0))
    provisioner = Provisioner(db_url, options, StopSignals())
    with ConnectionPool(db_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        provisioner.pool = pool
        with provisioner._connection() as conn:
            assert scalar(conn, "show lock_timeout") == "200ms"
            assert scalar(conn, "show statement_timeout") == "3s"
        with pool.connection() as conn:
            assert scalar(conn, "show lock_timeout") == "0", "nothing stays on the connection"
        with psycopg.connect(db_url, autocommit=True) as setup:
            pool_id = active_preset(setup, "t", 1)
            ws = prebuild(setup, pool_id, "1 minute", "provisioning", "ws")
            job = scalar(setup, "select fixture.latest_job(%s)", (ws,))
        with psycopg.connect(db_url) as holder:
            holder.execute(
                "select from prebuilds.provisioner_jobs where id = %s for update", (job,)
            )
            started = time.monotonic()
            with (
                pytest.raises(psycopg.errors.LockNotAvailable),
                provisioner._connection() as conn,
            ):
                conn.execute("select prebuilds.heartbeat_job(%s)", (job,))
            assert time.monotonic() - started < 2
