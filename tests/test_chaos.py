"""Chaos (issue 7): several real drivers at once over many rounds, SIGKILLed at random points,
while a provisioner builds, people claim and operators invalidate. Bounded in time; prints what
it proved.
"""

from __future__ import annotations

import random
import signal
import time
from typing import Any
from uuid import UUID

import psycopg

from prebuilds.simulator import SimulatedProvisioner
from tests.support import overfull, run_cli, scalar, start_cli
from tests.test_concurrency import CLAIMED_BUT_DELETED
from tests.test_faults import overlapping_runs, slow_creates

Conn = psycopg.Connection[Any]

ROUNDS = 14
DRIVERS_PER_ROUND = 3


def wait_for_running_run(conn: Conn, timeout: float) -> int | None:
    """The driver pid of the run being applied, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "select pid from prebuilds.reconciliation_runs where status = 'running'"
        ).fetchone()
        if row:
            pid: int = row[0]
            return pid
        time.sleep(0.005)
    return None


def test_drivers_killed_at_random_never_overlap_or_overfill(conn: Conn, db_url: str) -> None:
    rng = random.Random(20261129)
    presets: list[UUID] = [
        scalar(conn, "select fixture.active_preset(%s, %s)", (f"chaos-{i}", desired))
        for i, desired in enumerate((40, 30, 25, 20, 15, 10))
    ]
    user = scalar(conn, "select fixture.user('chaos-claimer')")
    slow_creates(conn, 0.003)
    provisioner = SimulatedProvisioner(conn, "chaos-provisioner")
    kills = claims = invalidations = 0
    overfull_seen: list[Any] = []
    started = time.monotonic()

    for round_no in range(ROUNDS):
        drivers = [start_cli("reconcile", url=db_url) for _ in range(DRIVERS_PER_ROUND)]
        # Kill the driver that holds the lock, at a random point of its apply phase.
        holder = wait_for_running_run(conn, timeout=3)
        victim = next((p for p in drivers if p.pid == holder), None)
        if victim is not None:
            # Within the apply phase: with two actions in flight per write connection a round's
            # refills apply in tens of milliseconds, and a later kill only finds a finished run.
            time.sleep(rng.uniform(0, 0.03))
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
                kills += 1
        for proc in drivers:
            out, err = proc.communicate(timeout=120)
            if proc is not victim:
                assert proc.returncode in (0, 1), (out, err)
                assert "Traceback" not in err, err
        overfull_seen += overfull(conn)
        provisioner.drain(limit=rng.randint(20, 120))
        for _ in range(rng.randint(0, 4)):
            preset_id = rng.choice(presets)
            name = f"claimed-{round_no}-{claims}"
            if scalar(conn, "select prebuilds.claim_prebuild(%s, %s, %s)", (preset_id, user, name)):
                claims += 1
        if round_no % 3 == 2:
            conn.execute(
                "update prebuilds.presets set last_invalidated_at = now() where id = %s",
                (rng.choice(presets),),
            )
            invalidations += 1
        overfull_seen += overfull(conn)

    # Then calm: cycles and the provisioner until the plan is empty.
    cycles = 0
    while scalar(conn, "select count(*) from prebuilds.reconciliation_actions") and cycles < 10:
        calm = run_cli("reconcile", url=db_url, timeout=120)
        assert calm.returncode == 0, (calm.stdout, calm.stderr)
        provisioner.drain()
        cycles += 1
    provisioner.drain()

    statuses = dict(
        conn.execute(
            "select status, count(*) from prebuilds.reconciliation_runs group by status"
        ).fetchall()
    )
    runs_total = sum(statuses.values())
    assert overfull_seen == []
    assert overlapping_runs(conn) == 0
    assert scalar(conn, CLAIMED_BUT_DELETED) == 0
    assert "running" not in statuses, statuses
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 0
    # Every run's counters agree with its action log (abandoned ones included).
    mismatched = scalar(
        conn,
        """
        select count(*) from prebuilds.reconciliation_runs as r
        where r.actions_applied <> (
            select count(*) from prebuilds.reconciliation_action_log as l
            where l.run_id = r.id and l.outcome = 'applied'
        )
        """,
    )
    assert mismatched == 0
    pools = conn.execute(
        "select desired, actual, eligible from prebuilds.preset_state order by preset_id"
    ).fetchall()
    assert all(desired == actual == eligible for desired, actual, eligible in pools), pools
    assert kills >= ROUNDS // 3 and statuses.get("abandoned", 0) >= kills // 2
    print(
        f"\nchaos: {ROUNDS} rounds of {DRIVERS_PER_ROUND} drivers, {kills} SIGKILLs, "
        f"{claims} claims, {invalidations} invalidations; {runs_total} runs {statuses}; "
        f"overlaps 0, pools over desired 0, converged in {cycles} calm cycles; "
        f"{time.monotonic() - started:.0f} s"
    )
