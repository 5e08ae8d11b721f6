"""Prometheus metrics (issue 3, section 3): the textfile of `reconcile --metrics-file`, the HTTP
endpoint of `run --metrics-port`, and lifetime counters that come from the database."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from prebuilds import locks
from tests.fixtures import with_database
from tests.support import run_cli, scalar
from tests.test_loop import LiveCli, free_port

Conn = psycopg.Connection[Any]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

POOL_GAUGES = ("desired", "running", "eligible", "expired", "starting")
REASONS = ("paused", "hard_limited", "backoff", "capped")


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def pool(samples: Samples, template: str, preset: str = "default") -> dict[str, float]:
    """The per-preset gauges of acme/<template>/<preset>, and the blocked reason set to 1."""
    labels = {"organization": "acme", "template": template, "preset": preset}
    gauges = {g: value(samples, f"prebuilds_preset_{g}", **labels) for g in POOL_GAUGES}
    blocked = {r: value(samples, "prebuilds_preset_blocked", **labels, reason=r) for r in REASONS}
    assert set(blocked.values()) <= {0.0, 1.0} and sum(blocked.values()) <= 1, blocked
    return {**gauges, **{f"blocked_{r}": v for r, v in blocked.items() if v}}


def counters(samples: Samples) -> tuple[float, float, float]:
    return (
        value(samples, "prebuilds_created_total"),
        value(samples, "prebuilds_failed_total"),
        value(samples, "prebuilds_claimed_total"),
    )


def database_samples(samples: Samples) -> Samples:
    """The samples read from the database (pools and lifetime counters), not the process's own."""
    return {k: v for k, v in samples.items() if not k[0].startswith("prebuilds_reconcile_")}


def preset(conn: Conn, template: str, desired: int, ttl: int | None = None) -> UUID:
    value: UUID = scalar(conn, "select fixture.active_preset(%s, %s, %s)", (template, desired, ttl))
    return value


def prebuild(
    conn: Conn, preset_id: UUID, age: str, state: str = "running", ready: bool = True
) -> UUID:
    value: UUID = scalar(
        conn,
        "select fixture.prebuild(%s, now() - %s::interval, %s, %s)",
        (preset_id, age, state, ready),
    )
    return value


def work_the_queue(conn: Conn, *, fail_first_start: bool) -> None:
    """A provisioner: completes every queued job; with ``fail_first_start`` the first prebuild
    start fails with 'boom'."""
    fail = fail_first_start
    while row := conn.execute(
        "select job_id, transition, initiator_id = prebuilds.system_user_id() "
        "from prebuilds.acquire_job('test-provisioner')"
    ).fetchone():
        job, transition, prebuild_job = row
        if transition == "start" and prebuild_job and fail:
            conn.execute("select prebuilds.complete_job(%s, 'boom')", (job,))
            fail = False
            continue
        conn.execute("select prebuilds.complete_job(%s, null)", (job,))
        if transition == "start":
            conn.execute("select prebuilds.report_agent_lifecycle(%s, 'main', 'ready')", (job,))


def claim(conn: Conn, preset_id: UUID, owner: UUID, name: str) -> None:
    claimed = scalar(conn, "select prebuilds.claim_prebuild(%s, %s, %s)", (preset_id, owner, name))
    assert claimed is not None


def real_events(conn: Conn, owner: UUID) -> tuple[int, int, int]:
    """Creates, failures and claims counted from what happened (not from preset_counters)."""
    row = conn.execute(
        """
        select
            (select count(*) from prebuilds.reconciliation_action_log
             where action = 'create' and outcome = 'applied'),
            (select count(*) from prebuilds.provisioner_jobs where error = 'boom'),
            (select count(*) from prebuilds.workspaces where owner_id = %s)
        """,
        (owner,),
    ).fetchone()
    assert row is not None
    return (row[0], row[1], row[2])


def test_metrics_file_holds_pools_blocked_reasons_and_lifetime_counters(
    conn: Conn, db_url: str, tmp_path: Path
) -> None:
    web = preset(conn, "web", 2, ttl=3600)
    prebuild(conn, web, "2 hours")  # expired
    prebuild(conn, web, "10 minutes")  # eligible
    prebuild(conn, web, "5 minutes", ready=False)  # running, not ready
    broken = preset(conn, "broken", 1)
    for age in ("3 minutes", "2 minutes", "1 minute"):
        prebuild(conn, broken, age, "failed")  # three failures in a row: hard limit
    api = preset(conn, "api", 3)
    path = tmp_path / "prebuilds.prom"

    # A replica that does not get the lock still exports the pools, as they are.
    with psycopg.connect(db_url) as other:
        assert scalar(other, "select pg_try_advisory_xact_lock(%s)", (locks.RECONCILE,))
        busy = run_cli("reconcile", "--metrics-file", str(path), url=db_url)
        other.rollback()
    assert busy.returncode == 0, busy.stderr
    assert "another reconciler holds the lock" in busy.stdout
    first_text = path.read_text()
    first = parse(first_text)
    assert pool(first, "web") == {
        "desired": 2,
        "running": 3,
        "eligible": 1,
        "expired": 1,
        "starting": 0,
    }
    assert pool(first, "broken") == {
        "desired": 1,
        "running": 0,
        "eligible": 0,
        "expired": 0,
        "starting": 0,
        "blocked_hard_limited": 1,
    }
    assert pool(first, "api") == dict.fromkeys(POOL_GAUGES, 0) | {"desired": 3}
    assert counters(first) == (0, 0, 0)
    assert value(first, "prebuilds_reconcile_lock_busy") == 1
    # No cycle ever finished: 0, which the README's staleness alert treats as "never".
    assert value(first, "prebuilds_reconcile_last_success_timestamp_seconds") == 0

    # Real events: a cycle creates 3 (and deletes the expired one), a provisioner fails one of
    # them, people claim two prebuilds.
    cycle = run_cli("reconcile", url=db_url)
    assert cycle.returncode == 0, cycle.stderr
    work_the_queue(conn, fail_first_start=True)
    alice: UUID = scalar(conn, "select fixture.user('alice')")
    claim(conn, api, alice, "alice-api")
    claim(conn, web, alice, "alice-web")
    # web has no eligible prebuild left: a miss (SPEC 6.2).
    assert scalar(conn, "select prebuilds.claim_prebuild(%s, %s, 'x')", (web, alice)) is None

    with path.open() as old:
        proc = run_cli("reconcile", "--metrics-file", str(path), url=db_url)
        assert proc.returncode == 0, proc.stderr
        # Replaced by a rename: a reader of the old file still has all of it, the path names a
        # new file, and no temporary file is left beside it.
        assert old.read() == first_text
        assert os.fstat(old.fileno()).st_ino != path.stat().st_ino
    assert os.listdir(tmp_path) == ["prebuilds.prom"]

    second = parse(path.read_text())
    # web: the expired one deleted, one claimed, the not-ready one left: this cycle created one.
    assert pool(second, "web") == {
        "desired": 2,
        "running": 1,
        "eligible": 0,
        "expired": 0,
        "starting": 1,
    }
    # api: one failed, one claimed, one left; the failure holds creates back.
    assert pool(second, "api") == {
        "desired": 3,
        "running": 1,
        "eligible": 1,
        "expired": 0,
        "starting": 0,
        "blocked_backoff": 1,
    }
    assert pool(second, "broken")["blocked_hard_limited"] == 1
    assert counters(second) == (4, 1, 2)
    claims = {
        (preset_name, result): value(
            second,
            "prebuilds_preset_claims_total",
            organization="acme",
            template=preset_name,
            preset="default",
            result=result,
        )
        for preset_name in ("web", "api")
        for result in ("hit", "miss")
    }
    assert claims == {("web", "hit"): 1, ("web", "miss"): 1, ("api", "hit"): 1, ("api", "miss"): 0}
    assert counters(second) == real_events(conn, alice)
    assert value(second, "prebuilds_reconcile_lock_busy") == 0
    assert (
        value(second, "prebuilds_reconcile_actions_total", action="create", outcome="applied") == 1
    )
    assert value(second, "prebuilds_reconcile_cycles_total", result="done") == 1
    last = value(second, "prebuilds_reconcile_last_success_timestamp_seconds")
    assert last == scalar(
        conn,
        "select extract(epoch from max(finished_at))::float8 from prebuilds.reconciliation_runs",
    )

    # A cron run that finds the lock busy reports the holder's last success, not 0 (which would
    # fire the README's own alert).
    with psycopg.connect(db_url) as other:
        assert scalar(other, "select pg_try_advisory_xact_lock(%s)", (locks.RECONCILE,))
        busy = run_cli("reconcile", "--metrics-file", str(path), url=db_url)
        other.rollback()
    assert busy.returncode == 0, busy.stderr
    third = parse(path.read_text())
    assert value(third, "prebuilds_reconcile_lock_busy") == 1
    assert value(third, "prebuilds_reconcile_last_success_timestamp_seconds") == last > 0


def test_an_unwritable_metrics_file_exits_2_with_one_line(conn: Conn, db_url: str) -> None:
    proc = run_cli("reconcile", "--metrics-file", "/nonexistent/prebuilds.prom", url=db_url)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        "prebuilds: cannot run: cannot write metrics to /nonexistent/prebuilds.prom:"
    )


def scrape(port: int) -> str | None:
    """The text at /metrics, or None while nothing answers (no proxy, whatever the environment
    says)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text: str = response.read().decode()
            return text
    except OSError:
        return None


def serve(url: str, port: int) -> LiveCli:
    return LiveCli(
        "run", "--interval", "0.2s", "--metrics-port", str(port), "--metrics-address",
        "127.0.0.1", url=url,
    )  # fmt: skip


def scrape_after_a_cycle(loop: LiveCli, port: int, result: str, *, read_db: bool = True) -> Samples:
    """Poll the endpoint until it reports a cycle with ``result`` and, with ``read_db``, the
    database snapshot read after it."""
    found: list[Samples] = []

    def cycled() -> bool:
        text = scrape(port)
        if text is None:
            return False
        samples = parse(text)
        ready = samples.get(("prebuilds_reconcile_cycles_total", (("result", result),)), 0) >= 1
        if read_db:
            ready = ready and ("prebuilds_created_total", ()) in samples
        found[:] = [samples] if ready else []
        return ready

    loop.wait_for(cycled, f"a {result} cycle on http://127.0.0.1:{port}/metrics")
    return found[0]


def test_run_serves_the_same_metrics_over_http_and_counters_survive_a_restart(
    conn: Conn, db_url: str, tmp_path: Path
) -> None:
    # Real events through the functions the platform calls: 2 created, 1 failed, 1 claimed.
    api = preset(conn, "api", 2)
    for _ in range(2):
        assert scalar(conn, "select prebuilds.create_prebuild(%s)", (api,)) is not None
    work_the_queue(conn, fail_first_start=True)
    bob: UUID = scalar(conn, "select fixture.user('bob')")
    claim(conn, api, bob, "bob-api")
    conn.execute("update prebuilds.settings set reconciliation_paused = true")

    port = free_port()
    with serve(db_url, port) as loop:
        served = scrape_after_a_cycle(loop, port, "paused")
        path = tmp_path / "prebuilds.prom"
        cron = run_cli("reconcile", "--metrics-file", str(path), url=db_url)
        assert cron.returncode == 0, cron.stderr
        assert loop.stop(signal.SIGTERM) == 0, loop.output()

    assert counters(served) == (2, 1, 1)
    assert value(served, "prebuilds_reconcile_paused") == 1
    assert pool(served, "api") == {
        "desired": 2,
        "running": 0,
        "eligible": 0,
        "expired": 0,
        "starting": 0,
        "blocked_paused": 1,
    }
    assert database_samples(served) == database_samples(parse(path.read_text()))

    # While no driver runs: one more create, which fails.
    assert scalar(conn, "select prebuilds.create_prebuild(%s)", (api,)) is not None
    work_the_queue(conn, fail_first_start=True)

    port = free_port()
    with serve(db_url, port) as loop:
        restarted = scrape_after_a_cycle(loop, port, "paused")
        assert loop.stop(signal.SIGTERM) == 0, loop.output()
    assert counters(restarted) == (3, 2, 1)
    assert counters(restarted) == real_counts(conn, bob)


def real_counts(conn: Conn, owner: UUID) -> tuple[int, int, int]:
    """real_events, for creates made by create_prebuild directly (not through a cycle)."""
    row = conn.execute(
        """
        select
            (select count(*) from prebuilds.workspace_builds
             where build_number = 1 and transition = 'start'),
            (select count(*) from prebuilds.provisioner_jobs where error = 'boom'),
            (select count(*) from prebuilds.workspaces where owner_id = %s)
        """,
        (owner,),
    ).fetchone()
    assert row is not None
    return (row[0], row[1], row[2])


def test_no_database_counters_are_served_before_the_database_was_read(server_url: str) -> None:
    """A loop that cannot reach its database serves its own metrics, but not lifetime counters
    of 0, which Prometheus would take for a counter reset."""
    port = free_port()
    with serve(with_database(server_url, "prebuilds_no_such_database"), port) as loop:
        samples = scrape_after_a_cycle(loop, port, "error", read_db=False)
        assert loop.stop(signal.SIGTERM) == 0, loop.output()
    assert not [k for k in samples if k[0].startswith(("prebuilds_preset_", "prebuilds_created"))]
    assert ("prebuilds_failed_total", ()) not in samples
    assert any("does not exist" in line for line in loop.stderr), loop.output()


def test_a_metrics_port_in_use_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli(
            "run", "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
            url="postgresql://postgres@/never-used?host=/nonexistent",
        )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"prebuilds: cannot run: cannot serve metrics on port {port}:")
