"""``python -m bench.wake``: a loop woken by changes (issue 11, SPEC 6.1), measured.

**Claim to replacement.** One preset with a pool of ``--pool`` eligible prebuilds, a simulated
provisioner thread that completes every job at once (with a ready agent), and a real
``prebuilds run --interval 300s`` subprocess. ``--claims`` claims, one every ``--spacing``
seconds, each from an autocommit connection. For each: the time from the claim's return (its
commit) to the creation of its replacement (``workspaces.created_at`` of the next prebuild the
reconciler created for the preset: the create transaction's start, a millisecond or so before its
commit). Same machine, same clock. Prints p50, p95, p99 and max.

**Idle load.** A settled pool and nothing changing: ``prebuilds run`` for ``--idle-seconds``
at ``--interval 60s`` (Coder's fixed tick) and at ``300s`` (the new default), one after the
other. Counts the cycles it ran (``reconciliation_runs``) and the transactions its sessions
committed (``pg_stat_database``, minus the benchmark's own), and projects both to an hour from
the wake schedule: with nothing due (``next_change_at`` null) a loop wakes only every
``--interval``.

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

from bench.harness import create_database, drop_database, server, with_database
from prebuilds import migrations
from prebuilds.dbsource import REPO_ROOT

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


def idle_load(server_url: str, interval: float, seconds: float) -> tuple[int, int]:
    """(cycles, driver transactions) of ``prebuilds run --interval`` over ``seconds`` idle."""
    name = f"bench_wake_idle_{int(interval)}"
    url = fresh_db(server_url, name)
    proc = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for n in range(20):
                preset = scalar(conn, "select fixture.active_preset(%s, 2)", (f"t{n}",))
                conn.execute(
                    "select fixture.prebuild(%s, now()) from generate_series(1, 2)", (preset,)
                )
            conn.execute("select pg_stat_force_next_flush()")
            before = scalar(
                conn,
                "select xact_commit + xact_rollback from pg_stat_database "
                "where datname = current_database()",
            )
            proc = start_run(url, f"{interval}s")
            time.sleep(seconds)
            stop_run(proc)
            proc = None
            time.sleep(1.0)  # backends flush their statistics when they exit
            conn.execute("select pg_stat_clear_snapshot()")
            after = scalar(
                conn,
                "select xact_commit + xact_rollback from pg_stat_database "
                "where datname = current_database()",
            )
            cycles = scalar(conn, "select count(*) from prebuilds.reconciliation_runs")
            # This connection's own statements in between: the two stats reads and the clear.
            return cycles, after - before - 3
    finally:
        if proc is not None:
            stop_run(proc)
        drop_database(server_url, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wake", description=__doc__)
    parser.add_argument("--claims", type=int, default=100, help="claims, one at a time")
    parser.add_argument("--pool", type=int, default=10, help="pool size of the preset")
    parser.add_argument("--spacing", type=float, default=0.3, help="seconds between claims")
    parser.add_argument(
        "--idle-seconds", type=float, default=65.0, help="idle run per interval (0: skip)"
    )
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
        if args.idle_seconds > 0:
            print(f"idle load: 20 settled pools, nothing changing, {args.idle_seconds:g} s each")
            print("interval  cycles  driver xacts  xacts/cycle  cycles/hour  xacts/hour")
            for interval in (60.0, 300.0):
                cycles, xacts = idle_load(server_url, interval, args.idle_seconds)
                per_cycle = xacts / max(cycles, 1)
                per_hour = 3600 / interval
                print(
                    f"{interval:>7g}s  {cycles:>6}  {xacts:>12}  {per_cycle:>11.1f}  "
                    f"{per_hour:>11.0f}  {per_hour * per_cycle:>10.0f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
