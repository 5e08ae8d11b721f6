"""Where the time of applying 1,000 creates goes (issue 9: apply throughput): the driver's
full cycle, the physical reference and the pieces in between, each on a fresh copy of one settled
dogfood fleet with 1,000 creates to make, interleaved, with wall time and CPU per create.

    env -u DATABASE_URL .venv/bin/python -m bench.apply_pieces --repeat 5

Variants (1,000 creates each, two connections, one autocommit transaction per create):

- ``physical``: ``harness.apply_physical``, the reference of ``python -m bench --apply``: the rows
  an applied create writes, log row included, one prepared statement per create.
- ``physical-unlogged``: the reference as it was before: no action log row.
- ``physical-unprepared``: ``physical`` re-planned per statement, as the driver's own statements
  are (no server-side prepared statements behind PgBouncer).
- ``create_prebuild``: ``select prebuilds.create_prebuild(preset)``: the re-check under the
  preset's row lock and the rows; no fence, no licence check, no log row.
- ``apply_action``: ``prebuilds.apply_action`` called directly, one statement per create, on two
  plain threads: fence, licence check, create, log row; no driver.
- ``driver``: ``prebuilds.cycle.run_cycle`` (rate over its apply phase, as ``bench --apply``),
  at its default pipeline depth (``cycle.PIPELINE_DEPTH``, 2: two actions in flight per write
  connection).
- ``driver-depth1``: the driver at depth 1: each action sent after the previous one's result, as
  one simple-protocol message (its timeouts, then the call), as before pipelining.
- ``driver-replanning``: the driver with ``create_prebuild`` as before revision 0008 (its schedule
  lookup planned on every call), in that run's copy of the database only.
- ``driver-1stmt``: the driver at depth 1 with ``apply_action`` sent as one server-bound
  statement without its transaction-local timeouts (what the two-statement message costs).
- ``driver-noop``: the driver's apply loop at depth 1 with the database call replaced by nothing
  (the client's own cost: queue, threads, outcomes).

CPU per create: the server's (every process of the postmaster, from /proc; the server must run on
this machine) and this Python process's. On a 2-core machine that the client shares with the
server, CPU per create bounds the rate more steadily than wall time, which other load moves.
With ``--protocol``, the CPU per ``apply_action`` call of each way of sending it (the driver's
two-statement message with its timeouts, one statement simple or extended, and the pipelined
writer's call and Sync with two actions in flight), in place on one connection.
With ``--functions``, the server's per-function time (``track_functions = all``) of one driver
run is printed too.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import harness
from bench.harness import create_database, drop_database, query_bench, two_writers
from prebuilds import cycle, locks
from prebuilds.model import Outcome, PlannedAction


class ServerCpu:
    """CPU seconds of a local server: its postmaster's children, live (from /proc) and exited
    (the postmaster's cutime/cstime once it has reaped them)."""

    def __init__(self, server_url: str) -> None:
        with psycopg.connect(server_url) as conn:
            row = conn.execute("select current_setting('data_directory')").fetchone()
        assert row is not None
        self.pid = int((Path(row[0]) / "postmaster.pid").read_text().split()[0])
        self.tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _fields(pid: int) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2 :].split()

    def seconds(self) -> float:
        f = self._fields(self.pid)
        ticks = sum(int(x) for x in f[11:15])  # utime, stime, cutime, cstime
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                g = self._fields(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            if int(g[1]) == self.pid:
                ticks += int(g[11]) + int(g[12])
        return ticks / self.tick


def gone(server_url: str, dbname: str) -> None:
    """Wait until no client backend of ``dbname`` is left (so their CPU time is counted)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        for _ in range(500):
            row = conn.execute(
                "select count(*) from pg_stat_activity where datname = %s", (dbname,)
            ).fetchone()
            if row is not None and row[0] == 0:
                time.sleep(0.05)
                return
            time.sleep(0.01)
    raise RuntimeError(f"backends of {dbname} did not exit")


def presets_of(url: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(query_bench("bench_presets")).fetchall()]


def round_robin(presets: Sequence[Any], n: int) -> list[Any]:
    return [presets[i % len(presets)] for i in range(n)]


def physical(url: str, n: int, *, log_row: bool = True, prepare: bool = True) -> float:
    """``harness.apply_physical``'s writes (same statements, same connections) on ``url``."""
    return harness.physical_writes(url, n, log_row=log_row, prepare=prepare)


def create_prebuild(url: str, n: int) -> float:
    return two_writers(
        url,
        round_robin(presets_of(url), n),
        lambda c, p: c.execute("select prebuilds.create_prebuild(%s)", (p,)),
        session=query_bench("writer_session"),  # as apply_action runs it
        prepare_threshold=None,
    )


def interleave(actions: list[PlannedAction]) -> list[PlannedAction]:
    """Round robin over the actions' presets."""
    by_preset: dict[Any, list[PlannedAction]] = {}
    for a in actions:
        by_preset.setdefault(a.preset_id, []).append(a)
    return [a for group in itertools.zip_longest(*by_preset.values()) for a in group if a]


def direct_apply_action(url: str, n: int) -> float:
    """The plan transaction holds the lock; a run is started; then apply_action per create."""
    limits = cycle.Limits()
    with cycle.Session(url) as session:
        conn, row = session._take_lock(limits)
        assert row and row[0]
        holder = cycle.LockHolder(locks.RECONCILE, row[1], row[2])
        plan = cycle.read_plan(conn)
        pool = session._write_pool()
        run_id = cycle.start_run(pool, plan, 0.0, holder, limits)
        creates = [a for a in plan.actions if a.action == "create"][:n]
        assert len(creates) == n, len(creates)
        statement = "select prebuilds.apply_action(%s, %s, %s, %s, %s, %s, %s)"

        def one(c: Any, a: PlannedAction) -> None:
            row = c.execute(
                statement,
                (run_id, a.seq, a.action, a.preset_id, a.workspace_id, a.reason, 5000),
            ).fetchone()
            assert row is not None and row[0] is not None, row

        # Round robin over the presets, so two writers never create for one preset at once.
        seconds = two_writers(url, interleave(creates), one, prepare_threshold=None)
        conn.rollback()
    return seconds


def driver(url: str, depth: int | None = None) -> tuple[float, int]:
    with harness.pipeline_depth(depth):
        result = cycle.run_cycle(url)
    return result.apply_seconds, result.tally("applied")


def driver_replanning(url: str) -> tuple[float, int]:
    """The driver with create_prebuild as before revision 0008 (its schedule lookup re-planned
    per call): the function's plan_cache_mode reset in this copy of the database only."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter function prebuilds.create_prebuild(uuid) reset plan_cache_mode")
    return driver(url)


def driver_one_statement(url: str) -> tuple[float, int]:
    """The driver, its apply_action sent as one server-bound statement without the timeouts."""
    real = cycle.write

    def one(conn: Any, name: str, limits: cycle.Limits, params: dict[str, Any]) -> Any:
        if name != "apply_action":
            return real(conn, name, limits, params)
        return conn.execute(CALL, {**params, **limits.params()}).fetchone()

    cycle.write = one
    try:
        return driver(url, depth=1)
    finally:
        cycle.write = real


def driver_noop(url: str) -> tuple[float, int]:
    real = cycle.apply_action

    def fake(conn: Any, run_id: int, action: PlannedAction, limits: cycle.Limits) -> Outcome | None:
        return Outcome(action, "applied", None)

    cycle.apply_action = fake
    try:
        return driver(url, depth=1)
    finally:
        cycle.apply_action = real


def backend_cpu(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: How the driver's write could send an action: backend and client CPU per call of each, in place
#: (the real apply_action creating prebuilds, one connection, one call after the other).
CALL = (
    "select prebuilds.apply_action(%(run_id)s, %(seq)s, %(action)s, %(preset_id)s, "
    "%(workspace_id)s, %(reason)s, %(lock_timeout_ms)s)"
)
SENDS: dict[str, Callable[[Any, dict[str, Any], cycle.Limits], Any]] = {
    "extended, one statement": lambda c, p, lim: c.execute(CALL, {**p, **lim.params()}).fetchone(),
    "simple, one statement": lambda c, p, lim: (
        psycopg.ClientCursor(c).execute(CALL, {**p, **lim.params()}).fetchone()
    ),
    "driver: timeouts; call": lambda c, p, lim: cycle.write(c, "apply_action", lim, p),
}
#: The pipelined writer's way (the call and a Sync per action; two actions in flight).
PIPELINED = "pipelined: call, Sync"


def pipelined(conn: Any, run_id: int, actions: list[PlannedAction], limits: cycle.Limits) -> None:
    with cycle.PipelinedWrites(conn, run_id, limits) as writer:
        for a in actions:
            writer.send(a)
            if writer.in_flight == 2:
                _, outcome = writer.receive()
                assert outcome is not None and outcome.outcome == "applied", outcome
        while writer.in_flight:
            _, outcome = writer.receive()
            assert outcome is not None and outcome.outcome == "applied", outcome


def protocol_costs(server_url: str, template: str, repeat: int) -> dict[str, list[float]]:
    """Backend and client CPU (µs) per apply_action call for each way in SENDS, interleaved."""
    out: dict[str, list[float]] = {}
    ways: dict[str, Callable[[Any, dict[str, Any], cycle.Limits], Any] | None] = {
        **SENDS,
        PIPELINED: None,
    }
    for _ in range(repeat):
        for name, send in ways.items():
            url = create_database(server_url, "bench_pieces_run", template)
            limits = cycle.Limits()
            try:
                with cycle.Session(url) as session:
                    conn, row = session._take_lock(limits)
                    assert row and row[0]
                    holder = cycle.LockHolder(locks.RECONCILE, row[1], row[2])
                    plan = cycle.read_plan(conn)
                    run_id = cycle.start_run(session._write_pool(), plan, 0.0, holder, limits)
                    creates = [a for a in plan.actions if a.action == "create"]
                    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as c:
                        row = c.execute("select pg_backend_pid()").fetchone()
                        assert row is not None
                        # Warm first (catalogue caches, PL/pgSQL plans). Pipelined: round robin
                        # over presets, never two creates of one preset in flight.
                        warm, rest = creates[:20], interleave(creates[20:])
                        if send is None:
                            pipelined(c, run_id, warm, limits)
                            s0, c0 = backend_cpu(row[0]), time.process_time()
                            pipelined(c, run_id, rest, limits)
                        else:
                            for a in warm:
                                send(c, cycle.action_params(run_id, a), limits)
                            s0, c0 = backend_cpu(row[0]), time.process_time()
                            for a in rest:
                                result = send(c, cycle.action_params(run_id, a), limits)
                                assert result[0] is not None, result
                        server_us = (backend_cpu(row[0]) - s0) * 1e6 / len(rest)
                        client_us = (time.process_time() - c0) * 1e6 / len(rest)
                    conn.rollback()
            finally:
                drop_database(server_url, "bench_pieces_run")
            out.setdefault(f"{name}: server", []).append(server_us)
            out.setdefault(f"{name}: client", []).append(client_us)
    return out


def function_times(server_url: str, template: str) -> list[tuple[str, int, float, float]]:
    db = "bench_pieces_fn"
    url = create_database(server_url, db, template)
    try:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("alter database {} set track_functions = 'all'").format(sql.Identifier(db))
            )
        driver(url)
        time.sleep(1.5)
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "select schemaname || '.' || funcname, calls, total_time, self_time "
                "from pg_stat_user_functions order by self_time desc"
            ).fetchall()
    finally:
        drop_database(server_url, db)
    return [(str(r[0]), int(r[1]), float(r[2]), float(r[3])) for r in rows]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apply_pieces", description=__doc__)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--functions", action="store_true")
    parser.add_argument(
        "--protocol", action="store_true", help="also: CPU per call of each way to send an action"
    )
    args = parser.parse_args(argv)
    n = args.creates
    variants: dict[str, Callable[[str], tuple[float, int]]] = {
        "physical": lambda u: (physical(u, n), n),
        "physical-unlogged": lambda u: (physical(u, n, log_row=False), n),
        "physical-unprepared": lambda u: (physical(u, n, prepare=False), n),
        "create_prebuild": lambda u: (create_prebuild(u, n), n),
        "apply_action": lambda u: (direct_apply_action(u, n), n),
        "driver": driver,
        "driver-depth1": lambda u: driver(u, depth=1),
        "driver-replanning": driver_replanning,
        "driver-1stmt": driver_one_statement,
        "driver-noop": driver_noop,
    }
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
    with harness.server() as server_url:
        with psycopg.connect(server_url) as conn:
            print(conn.execute("select version()").fetchone()[0])  # type: ignore[index]
        harness.build_scenario(server_url, "dogfood", print)
        settled = create_database(server_url, "bench_settled", "bench_dogfood")
        drop_database(server_url, "bench_dogfood")
        print(f"  settled in {harness.settle(settled)} cycles")
        template = "bench_pieces"
        harness.add_creates(create_database(server_url, template, "bench_settled"), n)
        drop_database(server_url, "bench_settled")
        cpu = ServerCpu(server_url)
        rates: dict[str, list[float]] = {k: [] for k in variants}
        server_ms: dict[str, list[float]] = {k: [] for k in variants}
        client_ms: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.repeat):
            for name, run in variants.items():
                url = create_database(server_url, "bench_pieces_run", template)
                try:
                    s0, c0 = cpu.seconds(), time.process_time()
                    seconds, applied = run(url)
                    c1 = time.process_time()
                    gone(server_url, "bench_pieces_run")
                    s1 = cpu.seconds()
                finally:
                    drop_database(server_url, "bench_pieces_run")
                rates[name].append(applied / seconds)
                server_ms[name].append((s1 - s0) * 1000 / applied)
                client_ms[name].append((c1 - c0) * 1000 / applied)
            print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()))
        ref = statistics.median(rates["physical"]) if "physical" in rates else None
        print(
            f"\n{'variant':<16} {'p50 /s':>8} {'min':>8} {'max':>8} {'vs physical':>12} "
            f"{'server cpu ms':>14} {'client cpu ms':>14}  (per create, p50; includes setup)"
        )
        for name, rs in rates.items():
            p50 = statistics.median(rs)
            ratio = f"{p50 / ref:.0%}" if ref else ""
            print(
                f"{name:<16} {p50:>8.0f} {min(rs):>8.0f} {max(rs):>8.0f} {ratio:>12} "
                f"{statistics.median(server_ms[name]):>14.3f} "
                f"{statistics.median(client_ms[name]):>14.3f}"
            )
        if args.functions:
            print("\nserver self time per function, one driver run (track_functions = all)")
            for fn, calls, total, self_ in function_times(server_url, template):
                print(f"  {fn:<45} {calls:>6} calls  total {total:>8.1f} ms  self {self_:>8.1f} ms")
        if args.protocol:
            print("\nCPU per apply_action call, one connection, in place (µs, p50 / min)")
            for key, values in protocol_costs(server_url, template, args.repeat).items():
                print(f"  {key:<38} {statistics.median(values):7.0f} / {min(values):7.0f}")
        drop_database(server_url, template)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
