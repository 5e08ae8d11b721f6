"""``python -m bench``: our design against Coder's, in one run; prints tables.

Builds each scenario's fleet (bench/fleet.py) on the server in ``DATABASE_URL`` (a superuser:
it creates databases) or on an embedded PostgreSQL, copies it for the baseline with Coder's
indexes instead of ours (``harness.coder_database``), then measures, interleaved, after a
warm-up: the plan read of each design on a kept connection (warm, as Coder always runs and as
``prebuilds run`` will) and on a new connection per cycle (cron), client p50/p95; the server's
planning and execution time (EXPLAIN ANALYZE on the warm connections); a fresh backend's fixed
cost; and where our plan's time goes (auto_explain of the nested statements). ``--apply N,…``
adds full cycles applying N creates with the physical reference (not part of a default run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from bench import harness
from bench.fleet import SCENARIOS
from prebuilds import cycle

#: Issue 9's targets, checked against the current driver on every run.
TARGET_WARM = 10.0
TARGET_FRESH = 3.0
TARGET_USERS5 = 1.1
TARGET_PRESETS10 = 10.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenarios",
        default="dogfood,history10,users5,presets10",
        help="comma-separated, from: " + ", ".join(sorted(SCENARIOS)),
    )
    parser.add_argument("--cycles", type=int, default=20, help="measured plan cycles per mode")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured cycles first")
    parser.add_argument(
        "--server-cycles", type=int, default=5, help="EXPLAIN ANALYZE rounds per design"
    )
    parser.add_argument(
        "--baseline",
        choices=("coder", "historical"),
        default="coder",
        help="coder: Coder as of the seed issue (default); historical: the DISTINCT ON view of "
        "migration 000314, which Coder had abandoned by then (never a headline)",
    )
    parser.add_argument(
        "--apply", default="", help="action counts for full cycles (dogfood fleet), e.g. 10,1000"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per applied count")
    parser.add_argument(
        "--depths",
        default="",
        help="with --apply: also run the driver at these pipeline depths (e.g. 1: each action "
        "sent after the previous one's result), interleaved with the default depth's runs",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    args.apply = [int(n) for n in args.apply.split(",") if n.strip()]
    args.depths = [int(d) for d in args.depths.split(",") if d.strip()]
    return args


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


SETTINGS = (
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "random_page_cost",
    "jit",
    "max_parallel_workers_per_gather",
    "plan_cache_mode",
)


def server_facts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute("select version(), pg_jit_available()").fetchone()
        assert row is not None
        settings = {
            name: conn.execute("select current_setting(%s)", (name,)).fetchone()[0]  # type: ignore[index]
            for name in SETTINGS
        }
    return {
        "server": row[0].split(",")[0],
        "jit_available": row[1],
        "settings": settings,
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
    }


def _samples(s: harness.Samples) -> dict[str, float]:
    return {"p50": s.p50, "p95": s.p95}


def _design(d: harness.DesignResult) -> dict[str, Any]:
    return {
        "warm_ms": _samples(d.warm),
        "fresh_ms": _samples(d.fresh),
        "connect_ms": _samples(d.connect),
        "server_ms": d.server.p50,
        "planning_ms": d.planning.p50,
        "execution_ms": d.execution.p50,
        "per_query_server_ms": {k: v.p50 for k, v in d.per_query.items()},
        "actions": d.actions,
    }


_DURATION = re.compile(r"duration: ([\d.]+) ms")
_ACTUAL = re.compile(r"actual time=[\d.]+\.\.([\d.]+) rows=[\d.]+ loops=(\d+)")
_NODE = re.compile(r"^\s*(?:->\s*)?([A-Z][^(]*?)\s+\(cost=")


def summarise_nested(notices: list[str]) -> list[str]:
    """auto_explain's plans, innermost first, reduced to: each statement's duration and top node,
    its CTEs' times and the function scans' times (a node's actual total time x loops; a CTE's
    time includes what it reads, a function scan's includes planning the function's body).
    Statements under 0.05 ms (set_config, the lock's helpers) are counted, not shown."""
    if not notices:
        return ["    (auto_explain not available)"]
    out, trivial = [], 0
    for text in notices:
        m = _DURATION.search(text)
        ms = float(m[1]) if m else 0.0
        if ms < 0.05:
            trivial += 1
            continue
        lines = text.splitlines()
        plan = [ln for ln in lines if "(cost=" in ln]
        top = _NODE.match(plan[0]) if plan else None
        query_text = next((ln for ln in lines if ln.startswith("Query Text:")), "")
        label = query_text[len("Query Text:") :].strip().lstrip("- ")[:60] or "(a function body)"
        out.append(f"    {ms:8.2f} ms  {label}; top node {top[1] if top else '?'}")
        for i, line in enumerate(lines):
            stripped = line.strip()
            node = None
            if stripped.startswith("CTE ") and i + 1 < len(lines):
                node, timing = stripped, _ACTUAL.search(lines[i + 1])
            elif "Function Scan on" in stripped:
                node, timing = stripped.split("  (")[0].lstrip("-> "), _ACTUAL.search(stripped)
            if node and timing:
                out.append(f"      {node:<40} {float(timing[1]) * int(timing[2]):8.2f} ms")
    out.append(f"    (+ {trivial} statements under 0.05 ms)")
    return out


def run(args: argparse.Namespace, server_url: str, say: Callable[[str], None]) -> dict[str, Any]:
    facts = server_facts(server_url)
    say(f"server: {facts['server']}; machine: {facts['machine']}")
    results: dict[str, Any] = {
        "facts": facts,
        "baseline": args.baseline,
        "cycles": args.cycles,
        "plans": {},
        "apply": {},
    }
    for name in args.scenarios:
        db = harness.build_scenario(server_url, name, say)
        url = harness.with_database(server_url, db)
        started = time.perf_counter()
        coder_db = harness.coder_database(server_url, db)
        base_url = harness.with_database(server_url, coder_db)
        say(
            "  copied for the baseline with Coder's indexes in "
            f"{time.perf_counter() - started:.1f} s"
        )
        plans = harness.measure_plans(
            url,
            base_url,
            args.cycles,
            warmup=args.warmup,
            server_cycles=args.server_cycles,
            variant=args.baseline,
        )
        entry: dict[str, Any] = {
            "ours": _design(plans.ours),
            "baseline": _design(plans.base),
            "select1_fresh_ms": plans.select1_fresh.p50,
            "select1_warm_ms": plans.select1_warm.p50,
            "ratio_warm_p50": plans.base.warm.p50 / plans.ours.warm.p50,
            "ratio_fresh_p50": plans.base.fresh.p50 / plans.ours.fresh.p50,
            "ratio_server": plans.base.server.p50 / plans.ours.server.p50,
            "nested": summarise_nested(harness.nested_plan(url)),
        }
        results["plans"][name] = entry
        say(
            f"  plan {name}: warm ours {plans.ours.warm.p50:.1f} ms, baseline "
            f"{plans.base.warm.p50:.1f} ms ({entry['ratio_warm_p50']:.1f}x); fresh ours "
            f"{plans.ours.fresh.p50:.1f} ms, baseline {plans.base.fresh.p50:.1f} ms "
            f"({entry['ratio_fresh_p50']:.1f}x)"
        )
        harness.drop_database(server_url, coder_db)
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
        depths = [d for d in args.depths if d != cycle.PIPELINE_DEPTH]
        runs: dict[str, list[harness.ApplyResult]] = {
            "ours": [],
            **{f"ours-d{d}": [] for d in depths},
            "baseline": [],
            "physical": [],
        }
        for i in range(args.repeat):
            runs["ours"].append(harness.apply_ours(server_url, template, n))
            for d in depths:
                runs[f"ours-d{d}"].append(harness.apply_ours(server_url, template, n, depth=d))
            runs["baseline"].append(harness.apply_baseline(server_url, template, n))
            runs["physical"].append(harness.apply_physical(server_url, template, n))
            physical = runs["physical"][-1].rate
            say(
                f"  apply {n}, round {i + 1}: "
                + ", ".join(
                    f"{design} {rs[-1].rate:.0f}/s ({rs[-1].rate / physical:.0%})"
                    for design, rs in runs.items()
                )
            )
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
            f"  apply {n}: ours (depth {cycle.PIPELINE_DEPTH}) {o['rate_per_s']:.0f}/s "
            f"({o['peak_connections']} conns), baseline {b['rate_per_s']:.0f}/s "
            f"({b['peak_connections']} conns), physical {p['rate_per_s']:.0f}/s; ours at "
            f"{o['rate_per_s'] / p['rate_per_s']:.0%} of physical"
            + "".join(
                f"; depth {d} {out[str(n)][f'ours-d{d}']['rate_per_s']:.0f}/s "
                f"({out[str(n)][f'ours-d{d}']['rate_per_s'] / p['rate_per_s']:.0%})"
                for d in depths
            )
        )
    harness.drop_database(server_url, settled)
    return out


def table(results: dict[str, Any]) -> str:
    f = results["facts"]
    lines = [
        "",
        f"machine: {f['machine']}",
        f"server:  {f['server']} (jit available: {f['jit_available']})",
        "settings: " + ", ".join(f"{k}={v}" for k, v in f["settings"].items()),
        f"baseline: {results['baseline']}"
        + (
            " (HISTORICAL: not Coder as of the seed issue)"
            if results["baseline"] != "coder"
            else ""
        ),
        f"cycles: {results['cycles']} per mode, interleaved, after warm-up",
        "",
        "Plan read, client ms (lock + read + decode; the baseline also plans per preset in Python)",
        f"{'scenario':<10} {'mode':<6} {'ours p50':>9} {'ours p95':>9} {'base p50':>9} "
        f"{'base p95':>9} {'ratio':>7} {'actions':>8}",
    ]
    for name, e in results["plans"].items():
        o, b = e["ours"], e["baseline"]
        for mode, key, ratio in (
            ("warm", "warm_ms", e["ratio_warm_p50"]),
            ("fresh", "fresh_ms", e["ratio_fresh_p50"]),
        ):
            lines.append(
                f"{name:<10} {mode:<6} {o[key]['p50']:>9.1f} {o[key]['p95']:>9.1f} "
                f"{b[key]['p50']:>9.1f} {b[key]['p95']:>9.1f} {ratio:>6.1f}x {o['actions']:>8}"
            )
    lines += [
        "",
        "Server ms (EXPLAIN ANALYZE on the warm connection, p50): planning + execution",
        "(ours: a SQL function's body is planned inside the outer statement's execution)",
        f"{'scenario':<10} {'ours plan':>10} {'ours exec':>10} {'ours tot':>9} "
        f"{'base plan':>10} {'base exec':>10} {'base tot':>9} {'ratio':>7}",
    ]
    for name, e in results["plans"].items():
        o, b = e["ours"], e["baseline"]
        lines.append(
            f"{name:<10} {o['planning_ms']:>10.2f} {o['execution_ms']:>10.2f} "
            f"{o['server_ms']:>9.1f} {b['planning_ms']:>10.2f} {b['execution_ms']:>10.2f} "
            f"{b['server_ms']:>9.1f} {e['ratio_server']:>6.1f}x"
        )
    lines += [
        "",
        "A fresh backend's fixed cost (ms, p50): connect; select 1 fresh vs warm; our read fresh",
        "minus warm (the catalogue caches a new backend fills on its first plan)",
        f"{'scenario':<10} {'connect':>8} {'sel1 new':>9} {'sel1 warm':>10} {'ours cat':>9} "
        f"{'base cat':>9}",
    ]
    for name, e in results["plans"].items():
        o, b = e["ours"], e["baseline"]
        lines.append(
            f"{name:<10} {o['connect_ms']['p50']:>8.1f} {e['select1_fresh_ms']:>9.2f} "
            f"{e['select1_warm_ms']:>10.2f} {o['fresh_ms']['p50'] - o['warm_ms']['p50']:>9.1f} "
            f"{b['fresh_ms']['p50'] - b['warm_ms']['p50']:>9.1f}"
        )
    lines += ["", "Baseline server ms per snapshot query (p50)"]
    for name, e in results["plans"].items():
        per = e["baseline"]["per_query_server_ms"]
        lines.append(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in per.items()))
    lines += ["", "Where our read's time goes (auto_explain, nested statements, warm connection)"]
    for name, e in results["plans"].items():
        lines.append(f"  {name}:")
        lines += e["nested"]
    lines += ["", "Issue 9 targets (current driver)"]
    plans = results["plans"]
    for name in ("dogfood", "history10", "users5"):
        if name in plans:
            w, fr = plans[name]["ratio_warm_p50"], plans[name]["ratio_fresh_p50"]
            lines.append(
                f"  {name}: warm {w:.1f}x (target {TARGET_WARM:.0f}x: "
                f"{'met' if w >= TARGET_WARM else 'MISSED'}), fresh {fr:.1f}x (target "
                f"{TARGET_FRESH:.0f}x: {'met' if fr >= TARGET_FRESH else 'MISSED'})"
            )
    if "dogfood" in plans:
        base = plans["dogfood"]["ours"]["warm_ms"]["p50"]
        for name, target in (("users5", TARGET_USERS5), ("presets10", TARGET_PRESETS10)):
            if name in plans:
                r = plans[name]["ours"]["warm_ms"]["p50"] / base
                lines.append(
                    f"  {name} / dogfood, ours warm p50: {r:.2f}x (target <= {target}x: "
                    f"{'met' if r <= target else 'MISSED'})"
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
