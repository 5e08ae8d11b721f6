"""``python -m bench.pooler``: does the plan's cached plan survive PgBouncer in transaction mode?

Issue 9 asks for plan caching that keeps working behind a transaction-mode pooler, where
client-side prepared statements do not. ``reconciliation_actions_at`` caches its plan inside the
server (a PL/pgSQL wrapper with a generic plan, revision 0007), so any server connection that
served one read serves the next ones from its cache, whichever client sent them.

Builds a scenario fleet (dogfood by default), starts a PgBouncer in transaction mode in front of
the server (``tests/servers.py``, the same one the test suite uses; PgBouncer must be installed),
then measures, interleaved, the plan read on a kept client connection in four ways:

* ``cached``: ``select * from prebuilds.reconciliation_actions`` (what the driver reads),
  directly and through PgBouncer;
* ``uncached``: the same rules planned on every call (``prebuilds.planned_actions_at(now())``,
  the SQL function the wrapper inlines, as a top-level statement), directly and through PgBouncer.

Runs on ``DATABASE_URL`` (a superuser URL: it creates a database) or an embedded server.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psycopg

from bench import harness
from bench.harness import server as harness_server
from tests.servers import pgbouncer

READS = {
    "cached": "select * from prebuilds.reconciliation_actions",
    "uncached": "select * from prebuilds.planned_actions_at(now())",
}


def timed(conn: psycopg.Connection[Any], statement: str) -> float:
    started = time.perf_counter()
    conn.execute(statement).fetchall()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pooler", description=__doc__)
    parser.add_argument("--scenario", default="dogfood", help="a fleet of bench/fleet.py")
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first")
    args = parser.parse_args(argv)

    with harness_server() as server_url:
        db = harness.build_scenario(server_url, args.scenario, print)
        direct_url = harness.with_database(server_url, db)
        with pgbouncer(direct_url, "transaction") as pooled_url:
            conns = {
                where: psycopg.connect(url, autocommit=True, prepare_threshold=None)
                for where, url in (("direct", direct_url), ("pgbouncer", pooled_url))
            }
            samples: dict[tuple[str, str], harness.Samples] = {
                (read, where): harness.Samples() for read in READS for where in conns
            }
            try:
                for n in range(args.warmup + args.rounds):
                    for (read, where), out in samples.items():
                        ms = timed(conns[where], READS[read])
                        if n >= args.warmup:
                            out.add_ms(ms)
            finally:
                for conn in conns.values():
                    conn.close()
    print(
        f"\nplan read on a kept client connection, {args.scenario}, {args.rounds} rounds "
        "(client ms)\nread       via          p50     p95"
    )
    for (read, where), out in samples.items():
        print(f"{read:<10} {where:<10} {out.p50:7.1f} {out.p95:7.1f}")
    for where in conns:
        ratio = samples[("uncached", where)].p50 / samples[("cached", where)].p50
        print(f"{where}: the cached read is {ratio:.1f}x faster than the uncached one (p50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
