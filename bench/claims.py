"""``python -m bench.claims``: the claim path under load (issue 9).

A fleet with one big pool (``--hot-desired`` prebuilds) and ``--presets`` smaller ones
(``--desired`` each), all seeded eligible, is cloned afresh for every configuration. In each, for
``--duration`` seconds, ``prebuilds run --interval 1s`` reconciles in a subprocess, a
``SimulatedProvisioner`` thread refills (it serves the claims' start builds first, as a real one
would), and N claimer threads (each its own autocommit connection) call
``prebuilds.claim_prebuild`` back to back, against ONE preset or ACROSS presets (each claim picks
a preset at random). Printed per configuration: claims/s, hits, misses, p50/p99 latency, false
misses, and what the claimers' backends were waiting on (``pg_stat_activity`` sampled every
10 ms: a hot counter row shows up as ``Lock:transactionid`` / ``Lock:tuple``).

**False misses.** A false miss is a claim that returned null while an eligible prebuild of its
preset existed that no one had locked. A later ``count(*)`` cannot tell that on its own: a prebuild
may have become eligible after the claim looked (the provisioner refills), or been claimed by
someone else between the miss and the check. So every claim is sent as
``select prebuilds.claim_prebuild(…), pg_current_snapshot()``: the outer statement's snapshot
S0 is taken before the function runs, hence before the snapshot its inner ``select … for update
skip locked`` uses; everything committed in S0 was visible to the claim. After a miss, the
claimer opens a transaction that it rolls back, takes a fresh xid X there
(``pg_current_xact_id()``: assigned after the miss returned, so any larger xid was assigned later
still), and counts two kinds of witnesses, each one a prebuild the claim must have found:

1. at once, in that transaction: prebuilds of the preset that are eligible now, are not locked
   now (``for update skip locked``), and whose defining row versions (workspace, latest build,
   job, agents, preset, template) were all committed in S0 — so the prebuild was eligible and
   unchanged from before the claim until now; a lock held at the claim and released since without
   a change could only come from a transaction that rolled back, and none does here;
2. after the run: prebuilds of the preset claimed by a transaction whose xid is above X — a
   transaction that had no xid, hence could hold no row lock, when the miss returned — whose
   pre-claim build, job and agents were committed in S0.

A miss with any witness is a false miss. A prebuild taken by a transaction that was already
running when the miss returned is no witness (it may well have held the lock when the claim
looked), so the count is a lower bound; it is sound: it never counts a miss the design allows.
Xids are compared as 64-bit ``xid8`` (the epoch taken from the snapshot).

Runs on ``DATABASE_URL`` (a superuser URL: it creates databases) or an embedded server.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import psycopg

from bench.harness import create_database, drop_database
from bench.harness import server as harness_server
from prebuilds import migrations
from prebuilds.simulator import SimulatedProvisioner

FIXTURES = Path(__file__).resolve().parent.parent / "sql-tests" / "fixture.sql"
APP = "bench-claimer"

# Full transaction id of a row's 32-bit xmin: the epoch is that of the current snapshot's xmax,
# which no visible row's xmin reaches (and which is less than 2^31 ahead of it).
HELPERS = """
create schema bench_claims;
create function bench_claims.full_xid(p_xid xid) returns xid8
language sql stable
return case
    when p_xid::text::bigint < 3 then p_xid::text::xid8
    else (pg_snapshot_xmax(pg_current_snapshot())::text::bigint
        - ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint - p_xid::text::bigint)
            % 4294967296 + 4294967296) % 4294967296
    )::text::xid8
end;
create function bench_claims.committed_in(p_xid xid, p_snap pg_snapshot) returns bool
language sql stable
return pg_visible_in_snapshot(bench_claims.full_xid(p_xid), p_snap);
"""

# Witnesses of kind 1: eligible and unlocked now, unchanged since S0 (the claim's predicate).
WITNESS_NOW = """
select count(*) from (
    select w.id
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    join prebuilds.presets as p on p.id = w.current_preset_id
    join prebuilds.templates as t on t.active_version_id = p.template_version_id
    where w.current_preset_id = %(preset)s
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted and not t.deleted and not t.deprecated
      and b.transition = 'start' and j.status = 'succeeded'
      and not prebuilds.is_expired(w.created_at, p.ttl_seconds, p.last_invalidated_at, now())
      and prebuilds.agents_ready(b.job_id)
      and bench_claims.committed_in(w.xmin, %(s0)s::pg_snapshot)
      and bench_claims.committed_in(b.xmin, %(s0)s::pg_snapshot)
      and bench_claims.committed_in(j.xmin, %(s0)s::pg_snapshot)
      and bench_claims.committed_in(p.xmin, %(s0)s::pg_snapshot)
      and bench_claims.committed_in(t.xmin, %(s0)s::pg_snapshot)
      and not exists (
          select from prebuilds.workspace_agents as a
          where a.job_id = b.job_id
            and not bench_claims.committed_in(a.xmin, %(s0)s::pg_snapshot)
      )
    for update of w skip locked
) as witnesses
"""

# Witnesses of kind 2: claimed after the miss by a transaction that had no xid when it returned.
WITNESS_LATER = """
select count(*)
from prebuilds.workspace_builds as claim
join prebuilds.workspace_builds as b
    on b.workspace_id = claim.workspace_id and b.build_number = claim.build_number - 1
join prebuilds.provisioner_jobs as j on j.id = b.job_id
where claim.preset_id = %(preset)s
  and claim.transition = 'start'
  and claim.initiator_id <> prebuilds.system_user_id()
  and bench_claims.full_xid(claim.xmin) > %(x1)s::xid8
  and b.transition = 'start' and b.initiator_id = prebuilds.system_user_id()
  and j.status = 'succeeded'
  and bench_claims.committed_in(b.xmin, %(s0)s::pg_snapshot)
  and bench_claims.committed_in(j.xmin, %(s0)s::pg_snapshot)
  and exists (select from prebuilds.workspace_agents as a where a.job_id = b.job_id)
  and not exists (
      select from prebuilds.workspace_agents as a
      where a.job_id = b.job_id
        and not bench_claims.committed_in(a.xmin, %(s0)s::pg_snapshot)
  )
"""


@dataclass
class Fleet:
    hot: UUID
    presets: list[UUID]
    users: list[UUID]


def build_template(server_url: str, db: str, args: argparse.Namespace) -> Fleet:
    url = create_database(server_url, db)
    migrations.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIXTURES.read_text())
        conn.execute(HELPERS)

        def preset(name: str, desired: int) -> UUID:
            row = conn.execute("select fixture.active_preset(%s, %s)", (name, desired)).fetchone()
            assert row is not None
            conn.execute(
                # Distinct creation times, as a real pool has (the claim takes the oldest).
                "select fixture.prebuild(%s, now() - interval '1 hour' + i * interval '1 ms') "
                "from generate_series(1, %s) as i",
                (row[0], desired),
            )
            return UUID(str(row[0]))

        hot = preset("hot", args.hot_desired)
        presets = [preset(f"p{i:02}", args.desired) for i in range(args.presets)]
        users = [
            UUID(str(r[0]))
            for r in conn.execute(
                "select fixture.user('claimer-' || i) from generate_series(1, %s) as i",
                (max(args.claimers),),
            ).fetchall()
        ]
        conn.execute("vacuum analyze")
    return Fleet(hot, presets, users)


@dataclass
class Miss:
    preset: UUID
    s0: str
    x1: str
    now: int


@dataclass
class ClaimerResult:
    latencies: list[float] = field(default_factory=list)
    hits: int = 0
    misses: list[Miss] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def claimer(
    url: str,
    index: int,
    owner: UUID,
    presets: list[UUID],
    start: threading.Barrier,
    stop: threading.Event,
    result: ClaimerResult,
) -> None:
    rng = random.Random(index)
    with psycopg.connect(url, autocommit=True, application_name=APP) as conn:
        conn.execute("select 1")
        start.wait()
        n = 0
        while not stop.is_set():
            preset = presets[0] if len(presets) == 1 else rng.choice(presets)
            n += 1
            began = time.perf_counter()
            try:
                row = conn.execute(
                    "select prebuilds.claim_prebuild(%s, %s, %s), pg_current_snapshot()::text",
                    (preset, owner, f"c{index}-{n}"),
                ).fetchone()
            except psycopg.Error as exc:
                result.errors[type(exc).__name__] += 1
                continue
            result.latencies.append(time.perf_counter() - began)
            assert row is not None
            if row[0] is not None:
                result.hits += 1
                continue
            with conn.transaction(force_rollback=True):
                x1 = conn.execute("select pg_current_xact_id()::text").fetchone()
                found = conn.execute(WITNESS_NOW, {"preset": preset, "s0": row[1]}).fetchone()
            assert x1 is not None and found is not None
            result.misses.append(Miss(preset, row[1], x1[0], int(found[0])))


def provisioner(url: str, stop: threading.Event, done: Counter[str]) -> None:
    with psycopg.connect(url, autocommit=True, application_name="bench-provisioner") as conn:
        sim = SimulatedProvisioner(conn, "bench-claims")
        while not stop.is_set():
            ran = sim.drain(limit=50)
            done.update(ran)
            if not ran:
                stop.wait(0.02)


def sampler(url: str, stop: threading.Event, waits: Counter[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            for kind, event, n in conn.execute(
                "select coalesce(wait_event_type, 'CPU'), coalesce(wait_event, ''), count(*) "
                "from pg_stat_activity where application_name = %s and state = 'active' "
                "group by 1, 2",
                (APP,),
            ).fetchall():
                waits[f"{kind}:{event}" if event else kind] += int(n)
            waits["samples"] += 1
            stop.wait(0.01)


@dataclass
class Outcome:
    mode: str
    claimers: int
    seconds: float
    claims: int
    hits: int
    misses: int
    false_misses: int
    p50_ms: float
    p99_ms: float
    errors: int
    waits: Counter[str]
    provisioned: int
    cycles: int


def run_configuration(
    server_url: str, template: str, fleet: Fleet, mode: str, n: int, duration: float
) -> Outcome:
    db = f"bench_claims_{mode}_{n}"
    url = create_database(server_url, db, template)
    reconciler = subprocess.Popen(
        [sys.executable, "-m", "prebuilds.cli", "run", "--interval", "1s"],
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        presets = [fleet.hot] if mode == "one" else fleet.presets
        stop = threading.Event()
        background_stop = threading.Event()
        start = threading.Barrier(n + 1)
        results = [ClaimerResult() for _ in range(n)]
        provisioned: Counter[str] = Counter()
        waits: Counter[str] = Counter()
        threads = [
            threading.Thread(
                target=claimer,
                args=(url, i, fleet.users[i], presets, start, stop, results[i]),
            )
            for i in range(n)
        ]
        background = [
            threading.Thread(target=provisioner, args=(url, background_stop, provisioned)),
            threading.Thread(target=sampler, args=(url, background_stop, waits)),
        ]
        for t in threads + background:
            t.start()
        start.wait()
        began = time.perf_counter()
        stop.wait(duration)
        stop.set()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
        background_stop.set()
        for t in background:
            t.join()
    finally:
        reconciler.send_signal(signal.SIGTERM)
        output, _ = reconciler.communicate(timeout=30)
    if reconciler.returncode not in (0, -signal.SIGTERM) or "cycle failed" in output:
        raise RuntimeError(f"prebuilds run failed during the run:\n{output[-2000:]}")
    misses = [m for r in results for m in r.misses]
    false_misses = 0
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select count(*) from prebuilds.reconciliation_runs").fetchone()
        assert row is not None
        cycles = int(row[0])
        for miss in misses:
            row = conn.execute(
                WITNESS_LATER, {"preset": miss.preset, "s0": miss.s0, "x1": miss.x1}
            ).fetchone()
            assert row is not None
            if miss.now > 0 or row[0] > 0:
                false_misses += 1
                print(f"  false miss: {miss}, claimed later: {row[0]}", file=sys.stderr)
    drop_database(server_url, db)
    latencies = sorted(x for r in results for x in r.latencies)
    hits = sum(r.hits for r in results)
    return Outcome(
        mode=mode,
        claimers=n,
        seconds=seconds,
        claims=len(latencies),
        hits=hits,
        misses=len(misses),
        false_misses=false_misses,
        p50_ms=1000 * statistics.median(latencies) if latencies else 0.0,
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else 0.0,
        errors=sum(sum(r.errors.values()) for r in results),
        waits=waits,
        provisioned=provisioned.total(),
        cycles=cycles,
    )


def wait_summary(waits: Counter[str]) -> str:
    samples = waits["samples"] or 1
    busy = {k: v for k, v in waits.items() if k != "samples"}
    total = sum(busy.values()) or 1
    top = sorted(busy.items(), key=lambda kv: -kv[1])[:3]
    return f"{total / samples:.1f} active; " + ", ".join(
        f"{k} {100 * v / total:.0f}%" for k, v in top
    )


def describe_machine(server_url: str) -> list[str]:
    with psycopg.connect(server_url) as conn:
        row = conn.execute("select version()").fetchone()
    assert row is not None
    cpu = ""
    with suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return [
        f"machine: {cpu or platform.processor()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"server: {row[0]}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per configuration")
    parser.add_argument(
        "--claimers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 8, 32],
        help="comma-separated numbers of concurrent claimers (default 1,8,32)",
    )
    parser.add_argument("--hot-desired", type=int, default=6000, help="pool of the one preset")
    parser.add_argument("--presets", type=int, default=32, help="presets for ACROSS")
    parser.add_argument("--desired", type=int, default=200, help="pool of each ACROSS preset")
    parser.add_argument(
        "--modes", default="one,across", help="comma-separated: one, across (default both)"
    )
    args = parser.parse_args(argv)

    with harness_server() as server_url:
        for line in describe_machine(server_url):
            print(line)
        template = "bench_claims_template"
        started = time.monotonic()
        fleet = build_template(server_url, template, args)
        print(
            f"fleet: one preset of {args.hot_desired}, {args.presets} presets of "
            f"{args.desired}, all eligible; built in {time.monotonic() - started:.1f} s; "
            f"{args.duration:.0f} s per configuration"
        )
        print(
            f"{'mode':<7}{'N':>3}{'claims/s':>10}{'hits':>8}{'misses':>8}{'false':>7}"
            f"{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}{'jobs':>6}{'cycles':>7}  claimer backends"
        )
        try:
            for mode in args.modes.split(","):
                for n in args.claimers:
                    o = run_configuration(server_url, template, fleet, mode, n, args.duration)
                    print(
                        f"{o.mode:<7}{o.claimers:>3}{o.claims / o.seconds:>10.0f}{o.hits:>8}"
                        f"{o.misses:>8}{o.false_misses:>7}{o.p50_ms:>8.2f}{o.p99_ms:>8.2f}"
                        f"{o.errors:>7}{o.provisioned:>6}{o.cycles:>7}  {wait_summary(o.waits)}",
                        flush=True,
                    )
        finally:
            drop_database(server_url, template)
    return 0


if __name__ == "__main__":
    sys.exit(main())
