"""``python -m bench.apply_pooler``: the driver's apply phase at pipeline depth 1 and 2, directly
and through PgBouncer in transaction mode, against the physical reference (issue 9).

Pipelining (``cycle.PIPELINE_DEPTH``) sends a write connection's next action before the previous
one's result is back. How much that is worth depends on what a round trip costs: little over a
local Unix socket, more when every message crosses a pooler. Each round applies 1,000 creates on
a fresh copy of one settled dogfood fleet, five ways, interleaved: the driver at depth 2 and 1
directly, the same through a PgBouncer (``tests/servers.py``, as the test suite starts it; it
must be installed), and ``harness.apply_physical`` directly (the reference cannot go through
PgBouncer in transaction mode: it keeps server-side prepared statements). Rates are creates per
second of the apply phase; ratios are to the same round's reference. Every way runs with the
reference's connection sampler (``harness.connection_sampler``) alongside, as ``bench --apply``
does.

Runs on ``DATABASE_URL`` (a superuser URL: it creates databases) or an embedded server.
"""

from __future__ import annotations

import argparse
import statistics

from bench import harness
from prebuilds import cycle
from tests.servers import pgbouncer

RUN_DB = "bench_pooler_run"
WAYS = [("direct", 2), ("direct", 1), ("pgbouncer", 2), ("pgbouncer", 1)]


def driver_rate(server_url: str, url: str, depth: int) -> float:
    """The driver's apply rate, with the reference's connection sampler running alongside (so
    both pay for it alike)."""
    with harness.pipeline_depth(depth), harness.connection_sampler(server_url, RUN_DB):
        result = cycle.run_cycle(url)
    applied = result.tally("applied")
    assert result.failed == 0 and applied > 0, result
    return applied / result.apply_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apply_pooler", description=__doc__)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    args = parser.parse_args(argv)
    n = args.creates
    with harness.server() as server_url:
        harness.build_scenario(server_url, "dogfood", print)
        settled = harness.create_database(server_url, "bench_settled", "bench_dogfood")
        print(f"  settled in {harness.settle(settled)} cycles")
        template = "bench_apply_pooler"
        harness.add_creates(harness.create_database(server_url, template, "bench_settled"), n)
        direct_url = harness.create_database(server_url, RUN_DB, template)
        rates: dict[str, list[float]] = {f"{w} d{d}": [] for w, d in WAYS}
        rates["physical"] = []
        with pgbouncer(direct_url, "transaction") as pooled_url:
            for r in range(args.repeat):
                for where, depth in WAYS:
                    harness.create_database(server_url, RUN_DB, template)
                    url = direct_url if where == "direct" else pooled_url
                    rates[f"{where} d{depth}"].append(driver_rate(server_url, url, depth))
                rates["physical"].append(harness.apply_physical(server_url, template, n).rate)
                ref = rates["physical"][-1]
                print(
                    f"  round {r + 1}: "
                    + ", ".join(f"{k} {v[-1]:.0f}/s ({v[-1] / ref:.0%})" for k, v in rates.items())
                )
        for db in (RUN_DB, template, "bench_settled", "bench_dogfood"):
            harness.drop_database(server_url, db)
    ref = statistics.median(rates["physical"])
    print(f"\n{n:,} creates, medians of {args.repeat} rounds (ratio: to the reference's median)")
    for name, values in rates.items():
        p50 = statistics.median(values)
        print(f"  {name:<14} {p50:7.0f}/s  {p50 / ref:5.0%}  (min {min(values):.0f}/s)")
    for where in ("direct", "pgbouncer"):
        paired = [a / b for a, b in zip(rates[f"{where} d2"], rates[f"{where} d1"], strict=True)]
        print(
            f"  {where}: depth 2 / depth 1 per round, median {statistics.median(paired):.2f} "
            f"({sum(p > 1 for p in paired)} of {len(paired)} rounds above 1)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
