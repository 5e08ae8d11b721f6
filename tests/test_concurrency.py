"""Real concurrency against one database: several drivers at once, claims racing deletes, and the
reconciler's connection budget (SPEC 1, 4.5, 4.6)."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import psycopg

from prebuilds import cycle
from prebuilds.cycle import run_cycle
from prebuilds.model import Outcome
from tests.support import active_pools, overfull, run_cli, scalar, start_cli, wait_until
from tests.support import active_preset as preset

Conn = psycopg.Connection[Any]

GATE_KEY = 4242  # a test-only advisory lock key, unrelated to driver.locks.RECONCILE

# The winner of the reconcile lock inserts its run row after reading the plan; this trigger makes
# that insert wait for an advisory lock the test holds, so the winner provably holds the
# reconcile lock while the other drivers try to take it.
HOLD_THE_WINNER = """
create function public.hold_the_winner() returns trigger language plpgsql as $$
begin
    perform pg_advisory_lock(4242);
    perform pg_advisory_unlock(4242);
    return new;
end $$;
create trigger hold_the_winner before insert on prebuilds.reconciliation_runs
for each row execute function public.hold_the_winner();
"""

# Claimed workspaces (owned by a real user) that have a delete build or are deleted: never any.
CLAIMED_BUT_DELETED = """
select count(*)
from prebuilds.workspaces as w
where w.owner_id <> prebuilds.system_user_id()
  and (w.deleted or exists (
      select from prebuilds.workspace_builds as b
      where b.workspace_id = w.id and b.transition = 'delete'))
"""


def running_prebuilds(conn: Conn, preset_id: UUID, count: int) -> list[UUID]:
    """``count`` running, ready prebuilds of a preset, one minute apart in age, oldest first."""
    rows = conn.execute(
        "select fixture.prebuild(%s, now() - make_interval(mins => %s - n)) "
        "from generate_series(1, %s) as n order by n",
        (preset_id, count + 1, count),
    ).fetchall()
    return [r[0] for r in rows]


def backend_waiting(conn: Conn, pid: int) -> bool:
    row = conn.execute(
        "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", (pid,)
    ).fetchone()
    return bool(row and row[0])


# --- several drivers at once -----------------------------------------------------------------


def test_five_drivers_at_once_exactly_one_applies(conn: Conn, db_url: str) -> None:
    pools = {preset(conn, f"big-{i}", desired): desired for i, desired in enumerate((60, 50, 40))}
    surplus = preset(conn, "surplus", 2)
    running_prebuilds(conn, surplus, 12)
    planned = Counter(
        r[0] for r in conn.execute("select action from prebuilds.reconciliation_actions")
    )
    assert planned == {"create": 150, "delete": 10}
    conn.execute(HOLD_THE_WINNER)
    conn.execute("select pg_advisory_lock(%s)", (GATE_KEY,))

    procs = [start_cli("reconcile", url=db_url) for _ in range(5)]
    try:
        # Four of them find the lock held and exit at once; one is held at the gate.
        wait_until(lambda: sum(p.poll() is not None for p in procs) >= 4, "four drivers to exit")
        (winner,) = [p for p in procs if p.poll() is None]
        wait_until(
            lambda: (
                scalar(
                    conn,
                    "select count(*) from pg_stat_activity where datname = current_database() "
                    "and application_name = %s and wait_event_type = 'Lock'",
                    (cycle.WRITE_APPLICATION_NAME,),
                )
                == 1
            ),
            "the winner to wait at the gate",
        )
        assert winner.poll() is None
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (GATE_KEY,))
        outputs = [p.communicate(timeout=60) for p in procs]

    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, (out, err)
        if proc is not winner:
            assert out.strip() == "prebuilds: another reconciler holds the lock; nothing done"
            assert err == ""
    assert (
        "applied 0 cancel, 10 delete, 150 create; 0 skipped, 0 failed"
        in outputs[procs.index(winner)][0]
    )
    assert conn.execute(
        "select status, actions_planned, actions_applied, actions_skipped, actions_failed "
        "from prebuilds.reconciliation_runs"
    ).fetchall() == [("succeeded", 160, 160, 0, 0)]
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_action_log") == 160
    # Applied once: each pool holds exactly its desired size, no surplus prebuild was deleted
    # twice, and the plan is now empty.
    now = active_pools(conn)
    assert {p: (now[p].running, now[p].starting) for p in pools} == {
        p: (0, d) for p, d in pools.items()
    }
    assert (now[surplus].running, now[surplus].starting) == (2, 0)
    assert overfull(conn) == []
    assert (
        scalar(
            conn,
            "select count(*) from (select workspace_id from prebuilds.workspace_builds "
            "where transition = 'delete' group by workspace_id having count(*) > 1) as twice",
        )
        == 0
    )
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 0


# --- claims racing deletes -------------------------------------------------------------------

ROUNDS = 100


def test_claim_racing_delete_never_deletes_a_claimed_workspace(conn: Conn, db_url: str) -> None:
    """delete_prebuild and claim_prebuild on the same prebuild, started at the same moment from
    two connections, ROUNDS times. Exactly one wins, and a claimed workspace is never deleted."""
    user = scalar(conn, "select fixture.user('racer')")
    jitter = random.Random(20261127)
    wins: Counter[str] = Counter()
    with (
        psycopg.connect(db_url, autocommit=True, options="-c statement_timeout=10s") as deleter,
        psycopg.connect(db_url, autocommit=True, options="-c statement_timeout=10s") as claimer,
        ThreadPoolExecutor(2) as pool,
    ):

        def delete(barrier: threading.Barrier, ws: UUID, delay: float) -> bool:
            barrier.wait()
            time.sleep(delay)
            deleted: bool = scalar(deleter, "select prebuilds.delete_prebuild(%s)", (ws,))
            return deleted

        def claim(barrier: threading.Barrier, preset_id: UUID, name: str, delay: float) -> Any:
            barrier.wait()
            time.sleep(delay)
            return scalar(
                claimer, "select prebuilds.claim_prebuild(%s, %s, %s)", (preset_id, user, name)
            )

        for i in range(ROUNDS):
            preset_id = preset(conn, f"race-{i}", 1)
            (ws,) = running_prebuilds(conn, preset_id, 1)
            barrier = threading.Barrier(2)
            # A random head start of up to 2 ms for one side, so both orders happen.
            d_delay, c_delay = (jitter.uniform(0, 0.002), 0.0)[:: jitter.choice((1, -1))]
            deleting = pool.submit(delete, barrier, ws, d_delay)
            claiming = pool.submit(claim, barrier, preset_id, f"claimed-{i}", c_delay)
            deleted, claimed = deleting.result(timeout=20), claiming.result(timeout=20)

            assert deleted != (claimed is not None), f"round {i}: {deleted=} {claimed=}"
            owner, last = conn.execute(
                "select w.owner_id, b.transition from prebuilds.workspaces as w "
                "join prebuilds.workspace_builds as b on b.id = w.latest_build_id "
                "where w.id = %s",
                (ws,),
            ).fetchall()[0]
            if claimed is not None:
                wins["claim"] += 1
                assert claimed == ws
                assert (owner, last) == (user, "start")
            else:
                wins["delete"] += 1
                assert last == "delete" and owner != user
            assert scalar(conn, CLAIMED_BUT_DELETED) == 0, f"round {i}"
    assert wins.total() == ROUNDS
    print(f"claim/delete race over {ROUNDS} rounds: {dict(wins)}")


def test_claim_and_delete_in_both_orders(conn: Conn, db_url: str) -> None:
    """The two interleavings of the race, forced with open transactions."""
    user = scalar(conn, "select fixture.user('racer')")
    preset_id = preset(conn, "race", 3)
    first, second, third = running_prebuilds(conn, preset_id, 3)
    claim_sql = "select prebuilds.claim_prebuild(%s, %s, %s)"

    # A regression that makes one side wait for the other turns into an error, not a hang.
    timeout = "-c statement_timeout=10s"
    with (
        psycopg.connect(db_url, options=timeout) as a,
        psycopg.connect(db_url, options=timeout) as b,
    ):
        # 1. The delete holds the row: a claim skips it (takes the next one), then sees it gone.
        assert scalar(a, "select prebuilds.delete_prebuild(%s)", (first,)) is True
        assert scalar(b, claim_sql, (preset_id, user, "w1")) == second
        b.rollback()
        a.commit()
        assert scalar(b, claim_sql, (preset_id, user, "w1")) == second
        b.commit()

        # 2. The claim holds the row: the delete waits for it, then finds no prebuild.
        assert scalar(a, claim_sql, (preset_id, user, "w2")) == third
        with ThreadPoolExecutor(1) as pool:
            deleting = pool.submit(
                lambda: scalar(b, "select prebuilds.delete_prebuild(%s)", (third,))
            )
            b_pid = b.info.backend_pid
            wait_until(lambda: backend_waiting(conn, b_pid), "the delete to wait for the claim")
            a.commit()
            assert deleting.result(timeout=20) is False
        b.commit()

        # 3. A claim rolled back leaves a prebuild, which the waiting delete then deletes.
        fourth = running_prebuilds(conn, preset_id, 1)[0]
        assert scalar(a, claim_sql, (preset_id, user, "w3")) == fourth
        with ThreadPoolExecutor(1) as pool:
            deleting = pool.submit(
                lambda: scalar(b, "select prebuilds.delete_prebuild(%s)", (fourth,))
            )
            wait_until(lambda: backend_waiting(conn, b_pid), "the delete to wait for the claim")
            a.rollback()
            assert deleting.result(timeout=20) is True
        b.commit()

    assert scalar(conn, CLAIMED_BUT_DELETED) == 0
    owners = dict(
        conn.execute(
            "select w.id, w.owner_id = %s from prebuilds.workspaces as w where w.id = any(%s)",
            (user, [first, second, third, fourth]),
        ).fetchall()
    )
    assert owners == {first: False, second: True, third: True, fourth: False}


SLOW_DELETES = """
create function public.slow_delete() returns trigger language plpgsql as $$
begin
    if new.transition = 'delete' then
        perform pg_sleep(0.005);
    end if;
    return new;
end $$;
create trigger slow_delete before insert on prebuilds.workspace_builds
for each row execute function public.slow_delete();
"""


def test_cycle_racing_claims_never_deletes_a_claimed_workspace(conn: Conn, db_url: str) -> None:
    """A real cycle deletes surplus prebuilds (oldest first) while three users claim from the
    same pool (also oldest first). Deletes are slowed to 5 ms each (a test-only trigger) so the
    claims land while they are being applied."""
    users = [scalar(conn, "select fixture.user(%s)", (f"user-{i}",)) for i in range(3)]
    conn.execute(SLOW_DELETES)
    skipped_total = 0
    for round_no in range(4):
        preset_id = preset(conn, f"crowded-{round_no}", 2)
        running_prebuilds(conn, preset_id, 40)
        applying = threading.Event()
        done = threading.Event()

        def on_outcome(_: Outcome, applying: threading.Event = applying) -> None:
            applying.set()

        def claim_loop(
            user: UUID,
            n: int,
            preset_id: UUID = preset_id,
            round_no: int = round_no,
            applying: threading.Event = applying,
            done: threading.Event = done,
        ) -> list[UUID]:
            claimed: list[UUID] = []
            with psycopg.connect(db_url, autocommit=True) as c:
                applying.wait(timeout=20)
                while not done.is_set() and len(claimed) < n:
                    ws = scalar(
                        c,
                        "select prebuilds.claim_prebuild(%s, %s, %s)",
                        (preset_id, user, f"dev-{round_no}-{user}-{len(claimed)}"),
                    )
                    if ws is None:
                        break
                    claimed.append(ws)
                    time.sleep(0.002)
            return claimed

        with ThreadPoolExecutor(len(users)) as pool:
            claimers = [pool.submit(claim_loop, u, 6) for u in users]
            try:
                result = run_cycle(db_url, on_outcome=on_outcome)
            finally:
                applying.set()
                done.set()
            claimed = [ws for f in claimers for ws in f.result(timeout=20)]

        assert result.exit_code == 0
        assert len(claimed) == len(set(claimed)) > 0
        assert scalar(conn, CLAIMED_BUT_DELETED) == 0, f"round {round_no}"
        log = conn.execute(
            "select l.outcome, w.owner_id = prebuilds.system_user_id(), exists ("
            "  select from prebuilds.workspace_builds as b"
            "  where b.workspace_id = w.id and b.transition = 'delete') "
            "from prebuilds.reconciliation_action_log as l "
            "join prebuilds.workspaces as w on w.id = l.workspace_id "
            "where l.run_id = %s and l.action = 'delete' and l.preset_id = %s",
            (result.run_id, preset_id),
        ).fetchall()
        assert log, "the cycle planned no deletes"
        for outcome, still_prebuild, has_delete in log:
            # Applied: still a prebuild, being deleted. Skipped: claimed first, left alone.
            assert (outcome, still_prebuild, has_delete) in (
                ("applied", True, True),
                ("skipped", False, False),
            )
        skipped_total += sum(1 for r in log if r[0] == "skipped")
    # The race did happen: some deletes found their prebuild claimed under them.
    print(f"cycle/claims race: {skipped_total} deletes skipped because claimed meanwhile")
    assert skipped_total > 0


# --- connection budget -----------------------------------------------------------------------


def test_a_big_cycle_never_holds_more_than_three_connections(conn: Conn, db_url: str) -> None:
    """pg_stat_activity, sampled every 2 ms from another connection while `prebuilds reconcile`
    applies 250 actions, never shows more than 3 reconciler connections (and does show the
    write pool at work)."""
    for i in range(4):
        preset(conn, f"wide-{i}", 55)
    surplus = preset(conn, "surplus", 0)
    running_prebuilds(conn, surplus, 30)
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 250

    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(db_url, autocommit=True) as watcher:
            while not stop.is_set():
                row = watcher.execute(
                    "select count(*), count(*) filter (where application_name = %s) "
                    "from pg_stat_activity where datname = current_database() "
                    "and application_name like 'prebuilds-reconciler%%'",
                    (cycle.WRITE_APPLICATION_NAME,),
                ).fetchone()
                assert row is not None
                samples.append((row[0], row[1]))
                time.sleep(0.002)

    with ThreadPoolExecutor(1) as pool:
        sampler = pool.submit(sample)
        time.sleep(0.05)
        try:
            proc: subprocess.CompletedProcess[str] = run_cli("reconcile", url=db_url)
        finally:
            stop.set()
        sampler.result(timeout=20)

    assert proc.returncode == 0, proc.stderr
    assert "applied 0 cancel, 30 delete, 220 create" in proc.stdout
    busy = [s for s in samples if s[0]]
    assert len(busy) >= 20, f"only {len(busy)} samples during the cycle"
    assert max(total for total, _ in samples) <= 3, max(samples)
    # The samples can see the limit being reached: both write connections were observed.
    assert max(total for total, _ in samples) >= 2
    assert max(writers for _, writers in samples) == 2
