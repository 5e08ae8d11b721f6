"""``python -m bench.locked_row``: what one stuck preset row costs a cycle (issue 7).

A platform transaction holds one preset row ``for update`` for ``--hold`` seconds (60 by
default) while ``prebuilds reconcile`` runs with its default ``--lock-timeout`` (5 s). Prints how
long the cycle took, what it applied and failed, and what the next cycle did once the row was
free. Runs on ``DATABASE_URL`` (a superuser URL: it creates a database) or an embedded server.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from bench.harness import create_database, drop_database
from bench.harness import server as harness_server
from prebuilds import migrations

FIXTURES = Path(__file__).resolve().parent.parent / "sql-tests" / "fixture.sql"


def reconcile(url: str, *extra: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "prebuilds.cli", "reconcile", *extra],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    return time.monotonic() - started, (proc.stdout + proc.stderr).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.locked_row", description=__doc__)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds the row stays locked")
    parser.add_argument("--presets", type=int, default=20, help="presets besides the stuck one")
    parser.add_argument("--desired", type=int, default=10, help="pool size of every preset")
    args = parser.parse_args(argv)

    with harness_server() as server_url:
        db = "bench_locked_row"
        url = create_database(server_url, db)
        try:
            migrations.upgrade(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(FIXTURES.read_text())
                stuck = conn.execute(
                    "select fixture.active_preset('stuck', %s)", (args.desired,)
                ).fetchone()
                for i in range(args.presets):
                    conn.execute("select fixture.active_preset(%s, %s)", (f"t{i}", args.desired))
            assert stuck is not None
            released = threading.Event()

            def hold() -> None:
                with psycopg.connect(url) as holder:
                    holder.execute(
                        "select 1 from prebuilds.presets where id = %s for update", (stuck[0],)
                    )
                    released.wait(args.hold)
                    holder.rollback()

            holder = threading.Thread(target=hold)
            holder.start()
            time.sleep(0.5)
            seconds, output = reconcile(url)
            lines = output.splitlines()
            summary = next(line for line in lines if " run " in line and "applied" in line)
            print(f"row locked for {args.hold:.0f} s, --lock-timeout 5s (default):")
            print(f"  cycle took {seconds:.2f} s: {summary}")
            print(f"  {sum('failed' in line and '#' in line for line in lines)} failure lines")
            released.set()
            holder.join()
            seconds, output = reconcile(url)
            print(f"  next cycle, row free: {seconds:.2f} s: {output}")
        finally:
            drop_database(server_url, db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
