"""``python -m bench``: our design against the per-preset baseline, in one run; prints a table.

Builds each scenario's fleet (bench/fleet.py) on the server in ``DATABASE_URL`` (a superuser:
it creates databases) or on an embedded PostgreSQL, then measures, interleaved:
plan time (client and server, p50/p95), the same with ``jit`` forced on and off, full cycles
applying N creates with peak connections, statements and round trips, and the physical
reference (the same rows written by plain SQL over two connections).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from bench import harness
from bench.fleet import SCENARIOS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenarios",
        default="dogfood,history10,users5,presets10",
        help="comma-separated, from: " + ", ".join(sorted(SCENARIOS)),
    )
    parser.add_argument("--cycles", type=int, default=20, help="measured plan cycles per design")
    parser.add_argument("--jit-cycles", type=int, default=10, help="plan cycles per jit setting")
    parser.add_argument(
        "--apply", default="10,100,1000", help="action counts for full cycles (dogfood fleet)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per applied count")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    args.apply = [int(n) for n in args.apply.split(",") if n.strip()]
    return args


def server_facts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select version(), current_setting('jit'), pg_jit_available(), "
            "current_setting('shared_buffers'), current_setting('work_mem')"
        ).fetchone()
    assert row is not None
    return {
        "server": row[0].split(",")[0],
        "jit": row[1],
        "jit_available": row[2],
        "shared_buffers": row[3],
        "work_mem": row[4],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
    }


def run(args: argparse.Namespace, server_url: str, say: Callable[[str], None]) -> dict[str, Any]:
    facts = server_facts(server_url)
    say(f"server: {facts['server']}; jit={facts['jit']} (available: {facts['jit_available']})")
    results: dict[str, Any] = {"facts": facts, "plans": {}, "apply": {}}
    for name in args.scenarios:
        db = harness.build_scenario(server_url, name, say)
        url = harness.with_database(server_url, db)
        plans = harness.measure_plans(url, args.cycles)
        entry: dict[str, Any] = {
            "ours_p50_ms": plans.ours_client.p50,
            "ours_p95_ms": plans.ours_client.p95,
            "ours_server_ms": statistics.median(plans.ours_server),
            "baseline_p50_ms": plans.base_client.p50,
            "baseline_p95_ms": plans.base_client.p95,
            "baseline_server_ms": statistics.median(plans.base_server),
            "ratio_p50": plans.base_client.p50 / plans.ours_client.p50,
            "ours_actions": plans.ours_actions,
            "baseline_actions": plans.base_actions,
        }
        if facts["jit_available"]:
            for setting in ("on", "off"):
                jit = harness.measure_plans(url, args.jit_cycles, warmup=1, jit=setting)
                entry[f"ours_jit_{setting}_p50_ms"] = jit.ours_client.p50
                entry[f"baseline_jit_{setting}_p50_ms"] = jit.base_client.p50
        results["plans"][name] = entry
        say(
            f"  plan {name}: ours p50 {entry['ours_p50_ms']:.1f} ms, baseline p50 "
            f"{entry['baseline_p50_ms']:.1f} ms ({entry['ratio_p50']:.1f}x)"
        )
        if name != "dogfood" or not args.apply:
            harness.drop_database(server_url, db)
    if "dogfood" in args.scenarios and args.apply:
        results["apply"] = measure_apply(args, server_url, say)
        harness.drop_database(server_url, "bench_dogfood")
    return results


def measure_apply(
    args: argparse.Namespace, server_url: str, say: Callable[[str], None]
) -> dict[str, Any]:
    settled = "bench_settled"
    url = harness.create_database(server_url, settled, "bench_dogfood")
    cycles = harness.settle(url)
    say(f"  dogfood fleet settled in {cycles} cycles")
    out: dict[str, Any] = {}
    for n in args.apply:
        template = f"bench_apply_{n}"
        harness.add_creates(harness.create_database(server_url, template, settled), n)
        runs: dict[str, list[harness.ApplyResult]] = {"ours": [], "baseline": [], "physical": []}
        for _ in range(args.repeat):
            runs["ours"].append(harness.apply_ours(server_url, template, n))
            runs["baseline"].append(harness.apply_baseline(server_url, template, n))
            runs["physical"].append(harness.apply_physical(server_url, template, n))
        harness.drop_database(server_url, template)
        out[str(n)] = {
            design: {
                "cycle_s": statistics.median(r.seconds for r in rs),
                "apply_s": statistics.median(r.apply_seconds for r in rs),
                "rate_per_s": statistics.median(r.rate for r in rs),
                "applied": rs[0].applied,
                "peak_connections": max(r.peak_connections for r in rs),
                "statements": statistics.median(r.statements for r in rs),
                "round_trips": statistics.median(r.round_trips for r in rs),
            }
            for design, rs in runs.items()
        }
        o, b, p = (out[str(n)][d] for d in ("ours", "baseline", "physical"))
        say(
            f"  apply {n}: ours {o['rate_per_s']:.0f}/s ({o['peak_connections']} conns), "
            f"baseline {b['rate_per_s']:.0f}/s ({b['peak_connections']} conns), physical "
            f"{p['rate_per_s']:.0f}/s; ours at {o['rate_per_s'] / p['rate_per_s']:.0%} of physical"
        )
    harness.drop_database(server_url, settled)
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "",
        "Plan time (ms; client = lock + read + decode on a fresh connection, as cron runs it)",
    ]
    lines.append(
        f"{'scenario':<10} {'ours p50':>9} {'ours p95':>9} {'ours srv':>9} "
        f"{'base p50':>9} {'base p95':>9} {'base srv':>9} {'ratio':>7} {'actions':>8}"
    )
    for name, e in results["plans"].items():
        lines.append(
            f"{name:<10} {e['ours_p50_ms']:>9.1f} {e['ours_p95_ms']:>9.1f} "
            f"{e['ours_server_ms']:>9.1f} {e['baseline_p50_ms']:>9.1f} "
            f"{e['baseline_p95_ms']:>9.1f} {e['baseline_server_ms']:>9.1f} "
            f"{e['ratio_p50']:>6.1f}x {e['ours_actions']:>8}"
        )
    if any("ours_jit_on_p50_ms" in e for e in results["plans"].values()):
        lines += [
            "",
            "jit (p50 ms)",
            f"{'scenario':<10} {'ours on':>9} {'ours off':>9} {'base on':>9} {'base off':>9}",
        ]
        for name, e in results["plans"].items():
            lines.append(
                f"{name:<10} {e['ours_jit_on_p50_ms']:>9.1f} {e['ours_jit_off_p50_ms']:>9.1f} "
                f"{e['baseline_jit_on_p50_ms']:>9.1f} {e['baseline_jit_off_p50_ms']:>9.1f}"
            )
    if results["apply"]:
        lines += [
            "",
            "Full cycles applying N creates (dogfood fleet, settled; medians)",
            f"{'N':>5} {'design':<9} {'cycle s':>8} {'apply s':>8} {'rate/s':>8} "
            f"{'peak conns':>10} {'stmts':>7} {'trips':>7}",
        ]
        for n, designs in results["apply"].items():
            for design, r in designs.items():
                lines.append(
                    f"{n:>5} {design:<9} {r['cycle_s']:>8.2f} {r['apply_s']:>8.2f} "
                    f"{r['rate_per_s']:>8.0f} {r['peak_connections']:>10} "
                    f"{r['statements']:>7.0f} {r['round_trips']:>7.0f}"
                )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    if url := os.environ.get("DATABASE_URL"):
        results = run(args, url, say)
    else:
        from prebuilds.embedded import embedded_server

        with embedded_server() as embedded_url:
            results = run(args, embedded_url, say)
    results["seconds"] = time.perf_counter() - started
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
