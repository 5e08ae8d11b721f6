"""``python -m bench.idle``: what reconciling costs when nothing changes (issue 9, "idle cost").

Builds a scenario fleet (``bench/fleet.py``, dogfood by default), settles it (every pool at its
size), then runs ``--cycles`` idle cycles two ways, interleaved:

* **loop**: one ``cycle.Session`` kept across cycles, as ``prebuilds run`` does, with its
  metrics read on the plan connection;
* **cron**: ``cycle.run_cycle`` on fresh connections each time, as ``prebuilds reconcile`` from
  cron does (metrics not read).

For each it counts the statements and round trips the driver sends (the benchmark's counting
connection class) and the server time they cost: the sum, over the driver's sessions, of the
transaction time PostgreSQL reports (``pg_stat_database.active_time``, milliseconds spent
executing statements, PostgreSQL 14+) between before and after. Prints per cycle and per hour at
``--interval`` (default 60 s, Coder's fixed tick, so the two compare directly).

Runs on ``DATABASE_URL`` (a superuser URL: it creates a database) or an embedded server.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import psycopg

from bench import baseline, harness
from bench.harness import server as harness_server
from prebuilds import cycle
from prebuilds.metrics import Metrics


class _Counting(baseline.CountingConnection):
    counter = baseline.RoundTrips()


def active_ms(admin: psycopg.Connection[Any], dbname: str) -> float:
    """Milliseconds the server spent executing statements in the database so far."""
    admin.execute("select pg_stat_clear_snapshot()")
    row = admin.execute(
        "select active_time from pg_stat_database where datname = %s", (dbname,)
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--scenario", default="dogfood", help="a fleet of bench/fleet.py")
    parser.add_argument("--cycles", type=int, default=20, help="idle cycles per mode")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between cycles")
    args = parser.parse_args(argv)

    with harness_server() as server_url:
        db = harness.build_scenario(server_url, args.scenario, print)
        url = harness.with_database(server_url, db)
        harness.settle(url)
        counter = baseline.RoundTrips()
        _Counting.counter = counter
        cycle.connection_class = _Counting
        cycle.write_cursor_class = baseline.CountingClientCursor
        stats: dict[str, dict[str, list[float]]] = {
            mode: {"statements": [], "round_trips": [], "server_ms": [], "client_ms": []}
            for mode in ("loop", "cron")
        }
        try:
            with (
                psycopg.connect(server_url, autocommit=True) as admin,
                cycle.Session(url) as session,
            ):
                metrics = Metrics()
                session.run_cycle()  # warm the kept connections
                session.refresh_metrics(metrics)
                for _ in range(args.cycles):
                    for mode in ("loop", "cron"):
                        before = (counter.statements, counter.round_trips, active_ms(admin, db))
                        started = time.perf_counter()
                        if mode == "loop":
                            result = session.run_cycle()
                            session.refresh_metrics(metrics)
                        else:
                            result = cycle.run_cycle(url)
                        client = (time.perf_counter() - started) * 1000
                        time.sleep(0.6)  # the statistics collector reports with a delay
                        after = (counter.statements, counter.round_trips, active_ms(admin, db))
                        assert result.plan is not None and not result.plan.has_work
                        s = stats[mode]
                        s["statements"].append(after[0] - before[0])
                        s["round_trips"].append(after[1] - before[1])
                        s["server_ms"].append(after[2] - before[2])
                        s["client_ms"].append(client)
        finally:
            cycle.connection_class = psycopg.Connection
            cycle.write_cursor_class = psycopg.ClientCursor
            harness.drop_database(server_url, db)
            harness.drop_database(server_url, f"{db}_coder")

        per_hour = 3600 / args.interval
        print(
            f"\nidle cycles, {args.scenario} fleet settled; {platform.processor() or 'cpu'}, "
            f"{os.cpu_count()} cores; medians of {args.cycles} cycles per mode"
        )
        print(
            f"{'mode':6} {'stmts':>6} {'trips':>6} {'server ms':>10} {'client ms':>10} "
            f"{'per hour at ' + format(args.interval, 'g') + ' s: stmts':>28} {'server s':>9}"
        )
        for mode, s in stats.items():
            stmts = statistics.median(s["statements"])
            srv = statistics.median(s["server_ms"])
            print(
                f"{mode:6} {stmts:6.0f} {statistics.median(s['round_trips']):6.0f} "
                f"{srv:10.1f} {statistics.median(s['client_ms']):10.1f} "
                f"{stmts * per_hour:28.0f} {srv * per_hour / 1000:9.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
