"""``python -m bench.burst``: misses under a burst, three ways (issue 11, SPEC 6.3).

A simulated day: claims of one preset arrive as a Poisson process at ``--rate`` per hour, stepping
up ``--burst-factor`` times for one hour (10:00-11:00); every prebuild takes ``--build-minutes``
to build. The same arrivals are run three ways, each in its own fresh database:

* **tick**: a fixed pool (``desired_instances = --pool``), reconciled every 60 s — Coder's loop;
* **woken**: the same fixed pool, reconciled 250 ms after every change (a claim, a finished build),
  as ``prebuilds run`` is woken by notifications (bench/wake.py measures that delay), with a
  resync every 5 minutes;
* **demand**: woken likewise, the pool demand-sized: ``desired_instances = --pool`` as the base,
  ``max_instances = --max``, ``settings.demand_window = --window``.

Time is virtual, so a day takes a minute: every decision is the real plan,
``prebuilds.reconciliation_actions_at(t)`` at the simulated instant t (so the demand formula,
claim_stats and the build-time median are the product's SQL), and the simulation writes the
rows that ``create_prebuild``, the provisioner and ``claim_prebuild`` would write, stamped with t
instead of ``now()`` (bench/burst.sql) — the write functions themselves stamp ``now()``, which a
simulation cannot move. A claim takes the oldest ready prebuild or misses; a surplus delete frees
its slot at once. Reported per way: claims, misses and the miss rate (all day, and in the burst
hour), and the cost: the average number of idle ready prebuilds and of prebuilds alive (ready or
building), sampled every simulated minute.

Runs on ``DATABASE_URL`` (a superuser URL: it creates databases) or an embedded server.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from bench.harness import create_database, drop_database
from bench.harness import server as harness_server
from prebuilds import migrations
from prebuilds.queries import parse

DAY_START = datetime(2030, 1, 1, tzinfo=UTC)
BURST = (timedelta(hours=10), timedelta(hours=11))
TICK = timedelta(seconds=60)
WAKE_DELAY = timedelta(milliseconds=250)
RESYNC = timedelta(minutes=5)


def query(name: str) -> sql.SQL:
    return sql.SQL(parse((Path(__file__).with_name("burst.sql")).read_text())[name])


def arrivals(rate_per_hour: float, factor: float, seed: int) -> list[datetime]:
    """Claim instants of a Poisson process over one day, ``factor`` times faster in the burst
    hour (thinning of a process at the peak rate)."""
    rng = random.Random(seed)
    peak = rate_per_hour * factor / 3600
    out: list[datetime] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= 86400:
            return out
        offset = timedelta(seconds=t)
        rate = peak if BURST[0] <= offset < BURST[1] else rate_per_hour / 3600
        if rng.random() < rate / peak:
            out.append(DAY_START + offset)


@dataclass
class Outcome:
    way: str
    claims: int = 0
    misses: int = 0
    burst_claims: int = 0
    burst_misses: int = 0
    idle_ready: float = 0.0  #: average over the day's minutes
    alive: float = 0.0  #: ready or building, average over the day's minutes
    cycles: int = 0
    creates: int = 0
    deletes: int = 0
    peak_desired: int = 0

    @property
    def miss_rate(self) -> float:
        return self.misses / self.claims if self.claims else 0.0

    @property
    def burst_miss_rate(self) -> float:
        return self.burst_misses / self.burst_claims if self.burst_claims else 0.0


@dataclass(order=True)
class Event:
    at: datetime
    order: int  #: builds finish before claims, claims before cycles at the same instant
    kind: str = field(compare=False)
    payload: Any = field(compare=False, default=None)


class Pool:
    """The simulation's view of the prebuilds (mirrors what it wrote)."""

    def __init__(self) -> None:
        self.building: dict[UUID, UUID] = {}  # workspace -> job
        self.ready: dict[UUID, datetime] = {}  # workspace -> created_at (claims take the oldest)

    def alive(self) -> int:
        return len(self.building) + len(self.ready)


def simulate(url: str, way: str, claims_at: list[datetime], args: argparse.Namespace) -> Outcome:
    out = Outcome(way)
    pool = Pool()
    build_time = timedelta(minutes=args.build_minutes)
    preset: dict[str, Any] = {"name": "pool", "desired_instances": args.pool}
    if way == "demand":
        preset["max_instances"] = args.max
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query("publish"), {"preset": json.dumps(preset)})
        conn.execute(
            query("settings"),
            {
                "demand_window": timedelta(minutes=args.window),
                "build_time": build_time,
            },
        )
        preset_id = conn.execute(query("preset_id")).fetchone()[0]  # type: ignore[index]
        user_id = conn.execute(query("claimant")).fetchone()[0]  # type: ignore[index]

        events: list[Event] = []
        serial = iter(range(10**9))

        def push(at: datetime, order: int, kind: str, payload: Any = None) -> None:
            heapq.heappush(events, Event(at, order * 10**9 + next(serial), kind, payload))

        # The day starts with a full pool, built before midnight.
        start = DAY_START - build_time
        for _ in range(args.pool):
            row = conn.execute(query("create"), {"preset_id": preset_id, "now": start}).fetchone()
            assert row is not None
            ws, job = row
            conn.execute(query("complete"), {"job_id": job, "now": DAY_START})
            pool.ready[ws] = start
        for at in claims_at:
            push(at, 1, "claim")
        if way == "tick":
            at = DAY_START
            while at < DAY_START + timedelta(days=1):
                push(at, 2, "cycle")
                at += TICK
        else:
            at = DAY_START
            while at < DAY_START + timedelta(days=1):
                push(at, 2, "cycle")
                at += RESYNC
        minute = DAY_START
        samples_ready: list[int] = []
        samples_alive: list[int] = []
        cycle_due: datetime | None = None
        end = DAY_START + timedelta(days=1)

        while events:
            ev = heapq.heappop(events)
            if ev.at >= end:
                break
            while minute <= ev.at:
                samples_ready.append(len(pool.ready))
                samples_alive.append(pool.alive())
                minute += timedelta(minutes=1)
            if ev.kind == "built":
                ws, job = ev.payload
                if ws in pool.building:
                    conn.execute(query("complete"), {"job_id": job, "now": ev.at})
                    del pool.building[ws]
                    pool.ready[ws] = ev.at
                    changed = True
                else:
                    changed = False
            elif ev.kind == "claim":
                in_burst = BURST[0] <= ev.at - DAY_START < BURST[1]
                out.claims += 1
                out.burst_claims += in_burst
                if pool.ready:
                    ws = min(pool.ready, key=lambda w: (pool.ready[w], str(w)))
                    del pool.ready[ws]
                    conn.execute(query("claim"), {"workspace_id": ws, "user_id": user_id})
                    hit = 1
                else:
                    out.misses += 1
                    out.burst_misses += in_burst
                    hit = 0
                conn.execute(
                    query("count_claim"),
                    {"preset_id": preset_id, "now": ev.at, "hits": hit, "misses": 1 - hit},
                )
                changed = True
            else:  # a cycle
                if ev.kind == "woken":
                    cycle_due = None
                out.cycles += 1
                plan = conn.execute(query("plan"), {"now": ev.at}).fetchall()
                for action, workspace_id in plan:
                    if action == "create":
                        row = conn.execute(
                            query("create"), {"preset_id": preset_id, "now": ev.at}
                        ).fetchone()
                        assert row is not None
                        ws, job = row
                        pool.building[ws] = job
                        push(ev.at + build_time, 0, "built", (ws, job))
                        out.creates += 1
                    elif action in ("delete", "cancel"):
                        conn.execute(query("delete"), {"workspace_id": workspace_id})
                        pool.ready.pop(workspace_id, None)
                        pool.building.pop(workspace_id, None)
                        out.deletes += 1
                out.peak_desired = max(out.peak_desired, pool.alive())
                changed = False
            if changed and way != "tick" and cycle_due is None:
                cycle_due = ev.at + WAKE_DELAY
                push(cycle_due, 2, "woken")
        while minute < end:
            samples_ready.append(len(pool.ready))
            samples_alive.append(pool.alive())
            minute += timedelta(minutes=1)
    out.idle_ready = sum(samples_ready) / len(samples_ready)
    out.alive = sum(samples_alive) / len(samples_alive)
    return out


def databases(server_url: str, ways: list[str]) -> Iterator[tuple[str, str]]:
    for way in ways:
        db = f"bench_burst_{way}"
        url = create_database(server_url, db)
        try:
            migrations.upgrade(url)
            yield way, url
        finally:
            drop_database(server_url, db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--rate", type=float, default=30, help="claims per hour outside the burst")
    parser.add_argument(
        "--burst-factor", type=float, default=5, help="rate multiplier, 10:00-11:00"
    )
    parser.add_argument("--build-minutes", type=float, default=10, help="build time of a prebuild")
    parser.add_argument("--pool", type=int, default=10, help="desired_instances of every way")
    parser.add_argument("--max", type=int, default=50, help="max_instances of the demand way")
    parser.add_argument("--window", type=float, default=60, help="demand_window, minutes")
    parser.add_argument("--seed", type=int, default=11, help="seed of the arrivals")
    parser.add_argument("--json", action="store_true", help="print a JSON document")
    args = parser.parse_args(argv)

    claims_at = arrivals(args.rate, args.burst_factor, args.seed)
    ways = ["tick", "woken", "demand"]
    outcomes: list[Outcome] = []
    with harness_server() as server_url:
        for way, url in databases(server_url, ways):
            outcomes.append(simulate(url, way, claims_at, args))
    if args.json:
        print(json.dumps({"args": vars(args), "outcomes": [asdict(o) for o in outcomes]}, indent=2))
        return 0
    print(
        f"one simulated day, {len(claims_at)} claims (Poisson, {args.rate:g}/h, "
        f"x{args.burst_factor:g} 10:00-11:00), builds {args.build_minutes:g} min, "
        f"desired_instances {args.pool}, "
        f"demand: max_instances {args.max}, demand_window {args.window:g} min, seed {args.seed}"
    )
    print(
        "way      claims  misses  miss%  burst miss%  idle ready  alive  cycles  creates  deletes"
    )
    for o in outcomes:
        print(
            f"{o.way:<8} {o.claims:6d} {o.misses:7d} {100 * o.miss_rate:6.1f} "
            f"{100 * o.burst_miss_rate:12.1f} {o.idle_ready:11.2f} {o.alive:6.2f} "
            f"{o.cycles:7d} {o.creates:8d} {o.deletes:8d}"
        )
    tick, _, demand = outcomes
    if tick.misses:
        print(
            f"demand vs tick: misses x{demand.misses / tick.misses:.2f}, idle ready prebuilds "
            f"x{demand.idle_ready / tick.idle_ready:.2f}, alive x{demand.alive / tick.alive:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
