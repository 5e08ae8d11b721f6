"""``python -m bench.wake``: a loop woken by changes (issue 11, SPEC 6.1), measured.

**Claim to replacement.** One preset with a pool of ``--pool`` eligible prebuilds, a simulated
provisioner thread that completes every job at once (with a ready agent), and a real
``prebuilds run --interval 300s`` subprocess. ``--claims`` claims, one every ``--spacing``
seconds, each from an autocommit connection. For each: the time from the claim's return (its
commit) to the creation of its replacement (``workspaces.created_at`` of the next prebuild the
reconciler created for the preset: the create transaction's start, a millisecond or so before its
commit). Same machine, same clock. Prints p50, p95, p99 and max.

**Idle load.** The ``--scenario`` fleet (dogfood by default) settled and nothing changing: idle
cycles of ``prebuilds run`` measured in process as ``python -m bench.idle`` does (its counting
connections; server time from ``pg_stat_database.active_time``), now with the ``next_change_at``
read each cycle ends with. Cycles per hour: 60 for a fixed one-minute tick (Coder's loop); for
the loop woken by changes, 12 resyncs at ``--interval 300s`` plus every instant
``next_change_at`` offers in the coming hour (walked from now: nothing changes, so each wake
asks again from the last). Notification wakes are zero by definition here.

Runs on ``DATABASE_URL`` (a superuser URL: it creates databases) or an embedded server.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any

import psycopg

from bench import baseline, harness, idle
from bench.harness import create_database, drop_database, server, with_database
from prebuilds import cycle, migrations
from prebuilds.dbsource import REPO_ROOT
from prebuilds.metrics import Metrics

FIXTURES = REPO_ROOT / "sql-tests" / "fixture.sql"


def scalar(conn: psycopg.Connection[Any], sql: Any, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def fresh_db(server_url: str, name: str) -> str:
    create_database(server_url, name)
    url = with_database(server_url, name)
    migrations.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIXTURES.read_text())
    return url


def provisioner(url: str, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        while not stop.is_set():
            row = c.execute("select job_id from prebuilds.acquire_job('bench')").fetchone()
            if row is None:
                time.sleep(0.002)
                continue
            c.execute("select prebuilds.complete_job(%s)", (row[0],))
            c.execute("select prebuilds.report_agent_lifecycle(%s, 'main', 'ready')", (row[0],))


def start_run(url: str, interval: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = url
    return subprocess.Popen(
        [sys.executable, "-m", "prebuilds.cli", "run", "--interval", interval],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def stop_run(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_runs(conn: psycopg.Connection[Any], n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while scalar(conn, "select count(*) from prebuilds.reconciliation_runs") < n:
        if time.monotonic() > deadline:
            raise SystemExit("prebuilds run did not cycle")
        time.sleep(0.05)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def claim_to_replacement(server_url: str, claims: int, pool: int, spacing: float) -> list[float]:
    url = fresh_db(server_url, "bench_wake_claims")
    stop = threading.Event()
    worker = threading.Thread(target=provisioner, args=(url, stop), daemon=True)
    proc = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            preset = scalar(conn, "select fixture.active_preset('web', %s)", (pool,))
            conn.execute(
                "select fixture.prebuild(%s, now() - make_interval(mins => n)) "
                "from generate_series(1, %s) as n",
                (preset, pool),
            )
            user = scalar(conn, "select fixture.user('bench')")
            worker.start()
            proc = start_run(url, "300s")
            wait_runs(conn, 1)
            time.sleep(1.5)  # the listen self-test and first cycle are done
            latencies: list[float] = []
            for i in range(claims):
                got = scalar(
                    conn, "select prebuilds.claim_prebuild(%s, %s, %s)", (preset, user, f"c{i}")
                )
                committed = datetime.now().astimezone()
                if got is None:
                    raise SystemExit(f"claim {i} missed: the pool was not refilled in time")
                deadline = time.monotonic() + 10
                while True:
                    created = scalar(
                        conn,
                        "select min(w.created_at) from prebuilds.workspaces as w "
                        "where w.owner_id = prebuilds.system_user_id() "
                        "and w.current_preset_id = %s and w.created_at > %s",
                        (preset, committed),
                    )
                    if created is not None or time.monotonic() > deadline:
                        break
                    time.sleep(0.002)
                if created is None:
                    raise SystemExit(f"claim {i}: no replacement within 10 s")
                latencies.append(max((created - committed).total_seconds(), 0.0))
                time.sleep(spacing)
            return latencies
    finally:
        stop.set()
        if proc is not None:
            stop_run(proc)
        worker.join(5)
        drop_database(server_url, "bench_wake_claims")


def idle_load(server_url: str, scenario: str, cycles: int) -> tuple[float, float, float, int]:
    """On a settled ``scenario`` fleet, in process (bench/idle.py's counting connections):
    median statements and server ms of one idle cycle of ``prebuilds run`` (the cycle, the
    metrics read, and — new — the wait for claims in flight and the ``next_change_at`` read), the
    wall time of that read alone,
    and how many instants ``next_change_at`` offers in the coming hour."""
    db = harness.build_scenario(server_url, scenario, print)
    url = harness.with_database(server_url, db)
    harness.settle(url)
    counter = baseline.RoundTrips()
    idle._Counting.counter = counter
    cycle.connection_class = idle._Counting
    cycle.write_cursor_class = baseline.CountingClientCursor
    statements: list[float] = []
    server_ms: list[float] = []
    client_ms: list[float] = []
    change_ms: list[float] = []
    try:
        with (
            psycopg.connect(server_url, autocommit=True) as admin,
            cycle.Session(url) as session,
        ):
            metrics = Metrics()
            session.run_cycle()  # warm the kept connections
            session.refresh_metrics(metrics)
            session.next_change_in()
            for _ in range(5):  # the next_change_at read alone, warm
                asked = time.perf_counter()
                session.next_change_in()
                change_ms.append((time.perf_counter() - asked) * 1000)
            for _ in range(cycles):
                before = (counter.statements, idle.active_ms(admin, db))
                asked = time.perf_counter()
                session.wait_for_claims(0.1)
                result = session.run_cycle()
                session.refresh_metrics(metrics)
                session.next_change_in()
                client_ms.append((time.perf_counter() - asked) * 1000)
                time.sleep(1.2)  # backends report statistics at most once a second
                after = (counter.statements, idle.active_ms(admin, db))
                assert result.plan is not None and not result.plan.has_work
                statements.append(after[0] - before[0])
                server_ms.append(after[1] - before[1])
            # The wake schedule of the coming hour, nothing changing: each instant next_change_at
            # offers, from now on.
            with psycopg.connect(url, autocommit=True) as conn:
                wakes = 0
                at = scalar(conn, "select now()")
                end = scalar(conn, "select now() + interval '1 hour'")
                while (at := scalar(conn, "select prebuilds.next_change_at(%s)", (at,))) and (
                    at < end
                ):
                    wakes += 1
    finally:
        cycle.connection_class = psycopg.Connection
        cycle.write_cursor_class = psycopg.ClientCursor
        harness.drop_database(server_url, db)
        harness.drop_database(server_url, f"{db}_coder")
    return (
        statistics.median(statements),
        statistics.median(server_ms),
        statistics.median(change_ms),
        wakes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wake", description=__doc__)
    parser.add_argument("--claims", type=int, default=100, help="claims, one at a time")
    parser.add_argument("--pool", type=int, default=10, help="pool size of the preset")
    parser.add_argument("--spacing", type=float, default=0.3, help="seconds between claims")
    parser.add_argument("--scenario", default="dogfood", help="idle fleet (bench/fleet.py)")
    parser.add_argument("--idle-cycles", type=int, default=8, help="idle cycles (0: skip)")
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, ")
    print(f"  {platform.system()} {platform.release()}, Python {platform.python_version()}")
    with server() as server_url:
        with psycopg.connect(server_url) as c:
            print(f"server: {scalar(c, 'select version()')}")
        latencies = claim_to_replacement(server_url, args.claims, args.pool, args.spacing)
        ms = [x * 1000 for x in latencies]
        print(
            f"claim -> replacement created, prebuilds run --interval 300s, {len(ms)} claims "
            f"{args.spacing:g} s apart: p50 {statistics.median(ms):.0f} ms, "
            f"p95 {pct(ms, 95):.0f} ms, p99 {pct(ms, 99):.0f} ms, max {max(ms):.0f} ms"
        )
        if args.idle_cycles > 0:
            stmts, srv, change, wakes = idle_load(server_url, args.scenario, args.idle_cycles)
            print(
                f"idle load, {args.scenario} fleet settled, nothing changing; medians of "
                f"{args.idle_cycles} cycles (wait_for_claims + cycle + metrics + next_change_at): "
                f"{stmts:.0f} "
                f"statements, {srv:.1f} ms server time; the next_change_at read {change:.1f} ms "
                f"(client wall time, median of 5); "
                f"next_change_at instants in the coming hour: {wakes}"
            )
            print(f"{'loop':34} {'cycles/hour':>11} {'statements/hour':>15} {'server s/hour':>13}")
            # A fixed tick has neither the wait for claims nor the next_change_at read; its server
            # time is taken as the woken cycle's minus the read's wall time (which bounds the
            # read's server time): if anything, the tick's cost is understated.
            tick_stmts = stmts - 2
            tick_srv = srv - change
            for name, per_hour, cycle_stmts, cycle_ms in (
                ("fixed tick, 60 s", 60, tick_stmts, tick_srv),
                ("woken by changes, --interval 300s", 3600 / 300 + wakes, stmts, srv),
            ):
                print(
                    f"{name:34} {per_hour:11.0f} {per_hour * cycle_stmts:15.0f} "
                    f"{per_hour * cycle_ms / 1000:13.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
