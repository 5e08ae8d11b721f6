"""Woken by changes (SPEC 6.1) and claims counted (SPEC 6.2), from pytest with real connections:
every source of a notification (LISTEN in the test), claim counting under concurrent claims, and
`prebuilds run` as a real process reacting to a claim and coalescing a burst."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
import pytest

from tests.support import run_cli, scalar
from tests.test_loop import LiveCli, count

Conn = psycopg.Connection[Any]

CHANNEL = "prebuilds_reconcile"


@contextmanager
def listening(db_url: str) -> Iterator[Callable[..., list[str]]]:
    """A LISTEN connection; the yielded function returns the payloads that arrived so far
    (waiting up to a second for the first one, then a moment for the rest)."""
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f"listen {CHANNEL}")

        def received(first_within: float = 1.0) -> list[str]:
            payloads = [
                n.payload
                for n in listener.notifies(timeout=first_within, stop_after=1)
                if n.channel == CHANNEL
            ]
            if payloads:
                payloads += [
                    n.payload for n in listener.notifies(timeout=0.1) if n.channel == CHANNEL
                ]
            return payloads

        yield received


def preset_with_prebuilds(conn: Conn, template: str, desired: int, running: int) -> UUID:
    preset: UUID = scalar(conn, "select fixture.active_preset(%s, %s)", (template, desired))
    conn.execute(
        "select fixture.prebuild(%s, now() - make_interval(mins => n)) "
        "from generate_series(1, %s) as n",
        (preset, running),
    )
    return preset


def test_every_source_of_a_plan_change_notifies_with_a_readable_payload(
    conn: Conn, db_url: str
) -> None:
    preset = preset_with_prebuilds(conn, "web", 2, 1)
    alice = scalar(conn, "select fixture.user('alice')")
    with listening(db_url) as received:
        assert received(0.2) == [], "setting up sent notifications that were not read"

        claimed = scalar(conn, "select prebuilds.claim_prebuild(%s, %s, 'a')", (preset, alice))
        assert claimed is not None
        assert received() == [f"claim {preset} hit"]
        assert scalar(conn, "select prebuilds.claim_prebuild(%s, %s, 'b')", (preset, alice)) is None
        assert received() == [f"claim {preset} miss"]

        # The claim's job, then a prebuild's job, completing.
        claim_job = scalar(conn, "select fixture.latest_job(%s)", (claimed,))
        conn.execute(
            "update prebuilds.provisioner_jobs set started_at = now(), worker_id = 'w' "
            "where id = %s",
            (claim_job,),
        )
        assert scalar(conn, "select prebuilds.complete_job(%s)", (claim_job,))
        assert received() == [f"job {claim_job} succeeded"]
        created = scalar(conn, "select prebuilds.create_prebuild(%s)", (preset,))
        assert created is not None
        assert received(0.3) == [], "the reconciler's own writes must not wake it"
        job = scalar(conn, "select fixture.latest_job(%s)", (created,))
        conn.execute(
            "update prebuilds.provisioner_jobs set started_at = now(), worker_id = 'w' "
            "where id = %s",
            (job,),
        )
        assert scalar(conn, "select prebuilds.complete_job(%s, 'boom')", (job,))
        assert received() == [f"job {job} failed"]

        # A person's job without a preset cannot change the plan.
        user_ws = scalar(
            conn,
            "insert into prebuilds.workspaces (organization_id, template_id, owner_id, name) "
            "select organization_id, template_id, %s, 'own' from prebuilds.workspaces "
            "where id = %s returning id",
            (alice, claimed),
        )
        own_job = scalar(
            conn,
            "insert into prebuilds.provisioner_jobs (initiator_id, started_at) "
            "values (%s, now()) returning id",
            (alice,),
        )
        conn.execute(
            "insert into prebuilds.workspace_builds (workspace_id, build_number, "
            "template_version_id, transition, initiator_id, job_id) "
            "select %s, 1, b.template_version_id, 'start', %s, %s "
            "from prebuilds.workspace_builds as b where b.job_id = %s",
            (user_ws, alice, own_job, claim_job),
        )
        assert scalar(conn, "select prebuilds.complete_job(%s)", (own_job,))
        assert received(0.3) == []

        # The platform's calls (SPEC 7) and the operator's.
        conn.execute(
            "select prebuilds.configure_preset(%s, '{\"desired_instances\": 3}')", (preset,)
        )
        assert received() == [f"preset {preset}"]
        conn.execute(
            "select prebuilds.configure_preset(%s, '{\"desired_instances\": 3}')", (preset,)
        )
        assert received(0.3) == [], "an update that changes nothing must not notify"
        conn.execute("select prebuilds.invalidate_presets('acme', 'web')")
        assert received() == [f"preset {preset}"]
        conn.execute("select prebuilds.resume_preset(%s)", (preset,))
        assert received() == [f"preset {preset}"]
        conn.execute("select fixture.timezone(%s, 'Europe/Berlin')", (preset,))
        assert received() == [f"preset {preset}"]

        conn.execute("select fixture.schedule(%s, '* 8-18 * * 1-5', 5)", (preset,))
        assert received() == [f"schedules {preset}"]
        conn.execute(
            "update prebuilds.preset_schedules set desired_instances = 6 where preset_id = %s",
            (preset,),
        )
        assert received() == [f"schedules {preset}"]
        conn.execute("delete from prebuilds.preset_schedules where preset_id = %s", (preset,))
        assert received() == [f"schedules {preset}"]

        template = scalar(
            conn,
            "select t.id from prebuilds.templates as t where t.name = 'web'",
        )
        version = scalar(
            conn,
            "select prebuilds.publish_template_version('acme', 'web', 'v2', %s)",
            (json.dumps([{"name": "default", "desired_instances": 1}]),),
        )
        assert version is not None
        payloads = received()
        assert set(payloads) == {f"template {template}", payloads[0]} and len(payloads) == 2
        assert any(p.startswith("preset ") for p in payloads), payloads
        conn.execute("select prebuilds.deprecate_template('acme', 'web')")
        assert received() == [f"template {template}"]
        conn.execute("select prebuilds.delete_template('acme', 'web')")
        assert received() == [f"template {template}"]

        conn.execute("select prebuilds.set_reconciliation_paused(true)")
        assert received() == ["settings"]
        conn.execute("update prebuilds.settings set backoff_interval = '2 minutes'")
        assert received() == ["settings"]

        # A bulk write: one notification per statement, naming the row count.
        conn.execute(
            "insert into prebuilds.presets (template_version_id, name, desired_instances) "
            "select v.id, 'bulk-' || n, 1 from prebuilds.template_versions as v, "
            "generate_series(1, 50) as n where v.name = 'v1'"
        )
        assert received() == ["preset (50 rows)"]

        # Nothing for a transaction that rolled back.
        with conn.transaction(force_rollback=True):
            conn.execute("update prebuilds.settings set backoff_interval = '3 minutes'")
        assert received(0.3) == []


THREADS = 6
CALLS = 30


def test_concurrent_claims_are_all_counted_hits_and_misses(conn: Conn, db_url: str) -> None:
    """Several connections claim one preset at once until its pool is long empty: every call is
    in claim_stats (hits + misses = calls), hits are the prebuilds handed over, and
    preset_state and the lifetime counters agree."""
    pool = 100
    preset = preset_with_prebuilds(conn, "hot", pool, pool)
    users = [scalar(conn, "select fixture.user(%s)", (f"u{i}",)) for i in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    results: list[UUID | None] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(i: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                barrier.wait()
                for n in range(CALLS):
                    got = scalar(
                        c,
                        "select prebuilds.claim_prebuild(%s, %s, %s)",
                        (preset, users[i], f"ws-{i}-{n}"),
                    )
                    with lock:
                        results.append(got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    hits = sum(r is not None for r in results)
    assert hits == pool and len(results) == THREADS * CALLS
    row = conn.execute(
        "select sum(hits)::int, sum(misses)::int, count(distinct shard)::int "
        "from prebuilds.claim_stats where preset_id = %s",
        (preset,),
    ).fetchone()
    assert row is not None
    assert (row[0], row[1]) == (pool, THREADS * CALLS - pool)
    assert row[2] > 1, "concurrent backends should count into several shard rows"
    state = conn.execute(
        "select claims_last_hour, misses_last_hour from prebuilds.preset_state "
        "where preset_id = %s",
        (preset,),
    ).fetchone()
    assert state == (pool, THREADS * CALLS - pool)
    lifetime = conn.execute(
        "select sum(claimed)::int, sum(missed)::int from prebuilds.preset_counters "
        "where preset_id = %s",
        (preset,),
    ).fetchone()
    assert lifetime == (pool, THREADS * CALLS - pool)


def test_claim_of_an_unknown_preset_is_an_error_naming_it(conn: Conn) -> None:
    alice = scalar(conn, "select fixture.user('alice')")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="no preset with id"):
        conn.execute("select prebuilds.claim_prebuild(gen_random_uuid(), %s, 'x')", (alice,))
    assert count(conn, "select count(*) from prebuilds.claim_stats") == 0


def test_claim_stats_are_pruned_after_their_retention(conn: Conn) -> None:
    preset = preset_with_prebuilds(conn, "web", 1, 0)
    conn.execute(
        "insert into prebuilds.claim_stats (preset_id, bucket, hits, misses) values "
        "(%s, date_trunc('minute', now() - interval '8 days'), 1, 1), "
        "(%s, date_trunc('minute', now() - interval '6 days'), 2, 0)",
        (preset, preset),
    )
    assert scalar(conn, "select prebuilds.prune_claim_stats()") == 1
    conn.execute("update prebuilds.settings set claim_stats_retention = '1 day'")
    assert scalar(conn, "select prebuilds.prune_claim_stats()") == 1
    assert count(conn, "select count(*) from prebuilds.claim_stats") == 0
    with pytest.raises(psycopg.errors.CheckViolation, match="claim_stats_retention"):
        conn.execute("update prebuilds.settings set claim_stats_retention = '1 minute'")


# --- prebuilds run, woken by changes --------------------------------------------------------


def refill(conn: Conn, stop: threading.Event) -> None:
    """A provisioner in a thread: completes every pending job with a ready agent."""
    with psycopg.connect(conn.info.dsn, autocommit=True) as c:
        while not stop.is_set():
            row = c.execute("select job_id from prebuilds.acquire_job('test-worker')").fetchone()
            if row is None:
                time.sleep(0.01)
                continue
            job = row[0]
            c.execute("select prebuilds.complete_job(%s)", (job,))
            c.execute("select prebuilds.report_agent_lifecycle(%s, 'main', 'ready')", (job,))


def runs(conn: Conn) -> int:
    return count(conn, "select count(*) from prebuilds.reconciliation_runs")


def test_run_replaces_a_claimed_prebuild_at_once_and_coalesces_a_burst(
    conn: Conn, db_url: str
) -> None:
    """With --interval 300s, a claim is replaced within seconds (it cannot be the interval), and
    a burst of claims wakes the loop a few times, not once per claim."""
    preset = preset_with_prebuilds(conn, "web", 30, 30)
    users = [scalar(conn, "select fixture.user(%s)", (f"u{i}",)) for i in range(30)]
    stop = threading.Event()
    provisioner = threading.Thread(target=refill, args=(conn, stop), daemon=True)
    provisioner.start()
    try:
        with LiveCli("run", "--interval", "300s", url=db_url) as loop:
            loop.wait_for(lambda: runs(conn) >= 1, "the first cycle")
            loop.wait_for_line(loop.stdout, "listening on prebuilds_reconcile")
            time.sleep(0.5)
            before = runs(conn)

            claimed_at = time.monotonic()
            assert scalar(conn, "select prebuilds.claim_prebuild(%s, %s, 'a')", (preset, users[0]))
            loop.wait_for(
                lambda: (
                    count(
                        conn,
                        "select count(*) from prebuilds.workspaces "
                        "where owner_id = prebuilds.system_user_id() and not deleted",
                    )
                    == 30
                ),
                "a replacement",
                timeout=5,
            )
            reaction = time.monotonic() - claimed_at
            assert reaction < 5, reaction
            time.sleep(0.5)
            after_one = runs(conn)
            assert after_one > before

            # A burst: 25 claims from one connection in quick succession.
            for i in range(1, 26):
                conn.execute(
                    "select prebuilds.claim_prebuild(%s, %s, %s)", (preset, users[i], f"b{i}")
                )
            loop.wait_for(
                lambda: (
                    count(
                        conn,
                        "select count(*) from prebuilds.workspaces "
                        "where owner_id = prebuilds.system_user_id() and not deleted",
                    )
                    == 30
                    and count(
                        conn,
                        "select count(*) from prebuilds.provisioner_jobs "
                        "where completed_at is null",
                    )
                    == 0
                ),
                "the burst replaced",
                timeout=10,
            )
            time.sleep(0.5)
            burst_cycles = runs(conn) - after_one
            # 25 claims, the claims' 25 jobs and the 25 creates' jobs completing: 75
            # notifications. Coalesced, they make far fewer cycles.
            assert 1 <= burst_cycles <= 25, burst_cycles
            assert loop.stop() == 0
    finally:
        stop.set()
        provisioner.join(5)
    overlapping = count(
        conn,
        "select count(*) from prebuilds.reconciliation_runs as a "
        "join prebuilds.reconciliation_runs as b on a.id < b.id "
        "and b.started_at < a.finished_at",
    )
    assert overlapping == 0, "two cycles ran at once"


def test_run_wakes_at_next_change_at_without_a_notification(conn: Conn, db_url: str) -> None:
    """A prebuild whose TTL runs out in two seconds is deleted then, with --interval 300s and no
    write at all."""
    preset = scalar(conn, "select fixture.active_preset('web', 1, 60)")
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '58 seconds', 'running', true, "
        "prebuilds.system_user_id(), 'ageing')",
        (preset,),
    )
    with LiveCli("run", "--interval", "300s", url=db_url) as loop:
        loop.wait_for(lambda: runs(conn) >= 1, "the first cycle")
        loop.wait_for(
            lambda: (
                count(
                    conn,
                    "select count(*) from prebuilds.workspace_builds as b "
                    "join prebuilds.workspaces as w on w.id = b.workspace_id "
                    "where w.name = 'ageing' and b.transition = 'delete'",
                )
                == 1
            ),
            "the expired prebuild's delete",
            timeout=8,
        )
        assert loop.stop() == 0


def test_run_keeps_cycling_and_listens_again_when_the_listen_connection_dies(
    conn: Conn, db_url: str
) -> None:
    preset = preset_with_prebuilds(conn, "web", 3, 3)
    alice = scalar(conn, "select fixture.user('alice')")
    with LiveCli("run", "--interval", "300s", url=db_url) as loop:
        loop.wait_for_line(loop.stdout, "listening on prebuilds_reconcile")
        loop.wait_for(lambda: runs(conn) >= 1, "the first cycle")
        killed = scalar(
            conn,
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where application_name = 'prebuilds-reconciler-listen' "
            "and datname = current_database()",
        )
        assert killed == 1
        loop.wait_for(
            lambda: any(
                "the listen connection broke" in line for line in loop.stderr + loop.stdout
            ),
            "the loss logged",
        )
        loop.wait_for(
            lambda: (
                sum(
                    "listening on prebuilds_reconcile" in line for line in loop.stdout + loop.stderr
                )
                >= 2
            ),
            "listening again",
            timeout=10,
        )
        before = runs(conn)
        assert scalar(conn, "select prebuilds.claim_prebuild(%s, %s, 'x')", (preset, alice))
        loop.wait_for(lambda: runs(conn) > before, "a cycle woken by the claim", timeout=5)
        assert loop.stop() == 0


def test_status_shows_the_last_hours_claims_and_hit_rate(conn: Conn, db_url: str) -> None:
    preset = preset_with_prebuilds(conn, "web", 3, 3)
    alice = scalar(conn, "select fixture.user('alice')")
    for n in range(4):  # three hits, then a miss
        conn.execute("select prebuilds.claim_prebuild(%s, %s, %s)", (preset, alice, f"w{n}"))
    proc = run_cli("status", "--json", url=db_url)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert (row["claims_last_hour"], row["misses_last_hour"], row["hit_rate_last_hour"]) == (
        3,
        1,
        75.0,
    )
    text = run_cli("status", url=db_url)
    assert text.returncode == 0, text.stderr
    header, _rule, line = text.stdout.splitlines()[:3]
    assert "CLAIMS_1H" in header and "MISSES_1H" in header and "HIT_RATE_1H" in header
    assert "75%" in line.split()


def test_claims_in_flight_notify_once_and_a_cycle_waits_for_them(conn: Conn, db_url: str) -> None:
    """One claim in flight at a time notifies (a NOTIFY serialises commits database-wide): a
    claim committed while another holds the notifier key sends nothing, the other's commit
    notifies for both, and wait_for_claims (run before each loop cycle) waits for every claim
    in flight, so the cycle that notification starts sees both."""
    preset = preset_with_prebuilds(conn, "web", 3, 3)
    alice = scalar(conn, "select fixture.user('alice')")
    with (
        listening(db_url) as received,
        psycopg.connect(db_url) as first,
        psycopg.connect(db_url, autocommit=True) as loop,
    ):
        assert scalar(first, "select prebuilds.claim_prebuild(%s, %s, 'a')", (preset, alice))
        # `first` is in flight (not committed): another claim commits without notifying.
        assert scalar(conn, "select prebuilds.claim_prebuild(%s, %s, 'b')", (preset, alice))
        assert received(0.3) == []
        # A cycle's wait times out while a claim is in flight.
        assert scalar(loop, "select prebuilds.wait_for_claims(50)") is False
        first.commit()
        assert received() == [f"claim {preset} hit"]
        assert scalar(loop, "select prebuilds.wait_for_claims(50)") is True


def test_run_replaces_every_claim_of_concurrent_claimers(conn: Conn, db_url: str) -> None:
    """Concurrent claimers, most of whose claims leave the notification to another one: with
    --interval 300s every claimed prebuild is still replaced within seconds."""
    pool = 40
    preset = preset_with_prebuilds(conn, "web", pool, pool)
    users = [scalar(conn, "select fixture.user(%s)", (f"u{i}",)) for i in range(THREADS)]
    stop = threading.Event()
    provisioner = threading.Thread(target=refill, args=(conn, stop), daemon=True)
    provisioner.start()
    live = (
        "select count(*) from prebuilds.workspaces "
        "where owner_id = prebuilds.system_user_id() and not deleted"
    )
    try:
        with LiveCli("run", "--interval", "300s", url=db_url) as loop:
            loop.wait_for_line(loop.stdout, "listening on prebuilds_reconcile")
            loop.wait_for(lambda: runs(conn) >= 1, "the first cycle")
            barrier = threading.Barrier(THREADS)
            errors: list[BaseException] = []

            def claimer(i: int) -> None:
                try:
                    with psycopg.connect(db_url, autocommit=True) as c:
                        barrier.wait()
                        for n in range(5):
                            c.execute(
                                "select prebuilds.claim_prebuild(%s, %s, %s)",
                                (preset, users[i], f"c{i}-{n}"),
                            )
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=claimer, args=(i,)) for i in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            claimed = count(
                conn,
                "select count(*) from prebuilds.workspaces "
                "where owner_id <> prebuilds.system_user_id()",
            )
            assert claimed > 0
            loop.wait_for(
                lambda: (
                    count(conn, live) == pool
                    and count(
                        conn,
                        "select count(*) from prebuilds.provisioner_jobs "
                        "where completed_at is null",
                    )
                    == 0
                ),
                "every claim replaced",
                timeout=10,
            )
            assert loop.stop() == 0
    finally:
        stop.set()
        provisioner.join(5)
