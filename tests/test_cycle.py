"""One reconciliation cycle (SPEC 4.6) against a real database: convergence, recording, failures,
pause, and the one-read rule."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from prebuilds import cycle
from prebuilds.cycle import run_cycle
from prebuilds.queries import query
from prebuilds.simulator import SimulatedProvisioner
from tests.support import active_pools, overfull, scalar

Conn = psycopg.Connection[Any]


def plan_of(conn: Conn) -> list[tuple[str, str]]:
    """The current plan as (action, workspace name or preset's template name) pairs."""
    rows = conn.execute(
        """
        select a.action, coalesce(w.name, a.template_name)
        from prebuilds.reconciliation_actions as a
        left join prebuilds.workspaces as w on w.id = a.workspace_id
        order by a.seq
        """
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def workspace(conn: Conn, name: str) -> UUID:
    value: UUID = scalar(conn, "select fixture.ws(%s)", (name,))
    return value


def builds_of(conn: Conn, name: str) -> list[tuple[str, str, bool]]:
    """(transition, job status, initiated by the system user) of every build of a workspace."""
    rows = conn.execute(
        """
        select b.transition, j.status, b.initiator_id = prebuilds.system_user_id()
        from prebuilds.workspace_builds as b
        join prebuilds.provisioner_jobs as j on j.id = b.job_id
        where b.workspace_id = fixture.ws(%s)
        order by b.build_number
        """,
        (name,),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def prebuilds_named(conn: Conn, preset: UUID, prefix: str, ages: list[str]) -> None:
    """Running, ready prebuilds of ``preset`` named prefix1, prefix2, … (created ``ages`` ago)."""
    for i, age in enumerate(ages, start=1):
        conn.execute(
            "select fixture.prebuild(%s, now() - %s::interval, 'running', true, "
            "prebuilds.system_user_id(), %s)",
            (preset, age, f"{prefix}{i}"),
        )


def preset(conn: Conn, template: str, desired: int, ttl: int | None = None) -> UUID:
    value: UUID = scalar(conn, "select fixture.active_preset(%s, %s, %s)", (template, desired, ttl))
    return value


# --- convergence -----------------------------------------------------------------------------


def test_eight_cycles_converge_and_never_overfill_a_pool(conn: Conn, db_url: str) -> None:
    """Cycles alternate with a simulated provisioner; after every step no active pool holds more
    running + starting prebuilds than desired, and the fleet ends exactly at its desired sizes."""
    alice = scalar(conn, "select fixture.user('alice')")
    # A deployment-wide cap of 4 queued creates: filling the pools takes several cycles.
    conn.execute("update prebuilds.settings set max_pending_creates = 4")

    fresh = preset(conn, "fresh", 3)  # empty pool: 3 creates
    shrunk = preset(conn, "shrunk", 2)  # 5 running: 3 surplus deleted, oldest first
    prebuilds_named(conn, shrunk, "shrunk-", ["5 hours", "4 hours", "3 hours", "2 hours", "1 hour"])
    # Never touched: a stopped prebuild (evidence) and a workspace alice claimed earlier.
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '6 hours', 'stopped', true, "
        "prebuilds.system_user_id(), 'shrunk-stopped')",
        (shrunk,),
    )
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '7 hours', 'running', true, %s, 'alice-ws')",
        (shrunk, alice),
    )
    ttl = preset(conn, "ttl", 2, 3600)  # two expired (deleted and replaced), one fresh
    prebuilds_named(conn, ttl, "ttl-", ["3 hours", "2 hours", "10 minutes"])
    # An outdated version with running prebuilds and a queued initial build, and its successor.
    old = preset(conn, "moved", 2)
    prebuilds_named(conn, old, "old-", ["2 hours", "1 hour"])
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '1 minute', 'starting', false, "
        "prebuilds.system_user_id(), 'old-queued')",
        (old,),
    )
    new = scalar(conn, "select fixture.preset(fixture.new_version('moved', 'v2'), 'default', 2)")
    flaky = preset(conn, "flaky", 2)  # every build fails: backoff, never overfilled

    # Before the first cycle: surplus, and expired prebuilds still running.
    assert {p.preset_id for p in overfull(conn)} == {shrunk, ttl}
    provisioner = SimulatedProvisioner(conn, failing_presets=[flaky])
    applied_per_cycle = []
    for n in range(1, 9):
        result = run_cycle(db_url)
        assert result.status == "done" and result.exit_code == 0, (n, result.outcomes)
        applied_per_cycle.append(result.tally("applied"))
        assert overfull(conn) == [], f"after cycle {n}"
        provisioner.drain()
        assert overfull(conn) == [], f"after cycle {n} and the provisioner"

    # Converged: the last cycles had nothing left to apply.
    assert applied_per_cycle[0] > 0
    assert applied_per_cycle[-3:] == [0, 0, 0], applied_per_cycle
    # 7 deletes (3 surplus, 2 expired, 2 outdated), 1 cancel, 7 creates (3 fresh, 1 ttl, 2 v2,
    # and flaky's first, which failed and put it in backoff).
    assert sum(applied_per_cycle) == 7 + 1 + 7, applied_per_cycle
    # What is left in the plan: only flaky's backoff note.
    assert plan_of(conn) == [("backoff", "flaky")]

    state = {
        r[0]: r[1:]
        for r in conn.execute(
            "select preset_id, desired, actual, eligible, expired, starting, deleting, "
            "blocked_reason from prebuilds.preset_state"
        ).fetchall()
    }
    for healthy in (fresh, shrunk, ttl, new):
        desired = state[healthy][0]
        assert desired > 0
        assert state[healthy] == (desired, desired, desired, 0, 0, 0, None)
        pool = active_pools(conn)[healthy]
        assert (pool.running, pool.ready, pool.starting) == (desired, desired, 0)
    assert state[flaky][1:3] == (0, 0) and state[flaky][-1] == "backoff"
    assert old not in state  # nothing left to clean up: no longer considered

    # The outdated version's prebuilds are gone: two deleted, the queued one canceled.
    for name in ("old-1", "old-2"):
        assert builds_of(conn, name) == [
            ("start", "succeeded", True),
            ("delete", "succeeded", True),
        ]
    assert builds_of(conn, "old-queued") == [
        ("start", "canceled", True),
        ("delete", "succeeded", True),
    ]
    assert (
        scalar(
            conn,
            "select count(*) from prebuilds.workspaces where name like 'old-%' and not deleted",
        )
        == 0
    )
    # Surplus went oldest first; expired ones were replaced.
    gone = {
        r[0]
        for r in conn.execute(
            "select name from prebuilds.workspaces where deleted and name like any(%s)",
            (["shrunk-%", "ttl-%"],),
        ).fetchall()
    }
    assert gone == {"shrunk-1", "shrunk-2", "shrunk-3", "ttl-1", "ttl-2"}
    # Never touched.
    assert builds_of(conn, "shrunk-stopped") == [
        ("start", "succeeded", True),
        ("stop", "succeeded", True),
    ]
    assert builds_of(conn, "alice-ws") == [("start", "succeeded", False)]
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_runs") == 8
    assert (
        scalar(
            conn, "select count(*) from prebuilds.reconciliation_runs where status <> 'succeeded'"
        )
        == 0
    )


# --- recording -------------------------------------------------------------------------------


def test_cycle_records_the_run_and_one_log_row_per_action(conn: Conn, db_url: str) -> None:
    alice = scalar(conn, "select fixture.user('alice')")
    surplus = preset(conn, "surplus", 1)
    prebuilds_named(conn, surplus, "surplus-", ["3 hours", "2 hours", "1 hour"])
    preset(conn, "short", 2)
    moved = preset(conn, "moved", 1)
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '1 minute', 'starting', false, "
        "prebuilds.system_user_id(), 'queued')",
        (moved,),
    )
    conn.execute("select fixture.new_version('moved', 'v2')")
    flaky = preset(conn, "flaky", 1)
    conn.execute("select fixture.prebuild(%s, now() - interval '10 seconds', 'failed')", (flaky,))

    plan = conn.execute(
        "select seq, action, workspace_id, reason from prebuilds.reconciliation_actions"
    ).fetchall()
    assert [p[1] for p in plan] == ["cancel", "delete", "delete", "create", "create", "backoff"]
    # Between the plan read and the writes, alice claims the oldest surplus prebuild (a trigger
    # on the run row, which the driver inserts after reading the plan): its delete is skipped.
    conn.execute(
        """
        create function public.claim_during_cycle() returns trigger language plpgsql as $$
        begin
            perform prebuilds.claim_prebuild(
                fixture.preset_of('surplus'),
                (select id from prebuilds.users where username = 'alice'),
                'alice-dev');
            return new;
        end $$;
        create trigger claim_during_cycle after insert on prebuilds.reconciliation_runs
        for each row execute function public.claim_during_cycle();
        """
    )

    result = run_cycle(db_url)

    assert result.status == "done" and result.exit_code == 0
    assert scalar(conn, "select owner_id from prebuilds.workspaces where name = 'alice-dev'") == (
        alice
    )
    run = conn.execute(
        "select id, status, actions_planned, actions_applied, actions_skipped, actions_failed, "
        "finished_at is not null, plan_ms is not null, pid is not null, error "
        "from prebuilds.reconciliation_runs"
    ).fetchall()
    assert run == [(result.run_id, "succeeded", 6, 4, 1, 0, True, True, True, None)]
    log = conn.execute(
        "select seq, action, workspace_id, reason, outcome, error "
        "from prebuilds.reconciliation_action_log where run_id = %s order by seq",
        (result.run_id,),
    ).fetchall()
    assert [r[0] for r in log] == [p[0] for p in plan]
    assert [(r[1], r[3]) for r in log] == [(p[1], p[3]) for p in plan]
    assert [r[4] for r in log] == ["applied", "skipped", "applied", "applied", "applied", "noted"]
    assert all(r[5] is None for r in log)
    # Cancel and deletes name their workspace; applied creates name the workspace they created.
    assert [r[2] for r in log[:3]] == [p[2] for p in plan[:3]]
    created = [r[2] for r in log[3:5]]
    assert all(created) and len(set(created)) == 2
    assert (
        scalar(
            conn,
            "select count(*) from prebuilds.workspaces where id = any(%s) and not deleted "
            "and current_preset_id = fixture.preset_of('short')",
            (created,),
        )
        == 2
    )
    assert log[5][2] is None
    assert "surplus: 3 running, 1 desired" in log[1][3]
    assert "outdated version v1 (active: v2)" in log[0][3]
    # The driver's own view of it agrees with the tables.
    assert Counter(o.outcome for o in result.outcomes) == {
        "applied": 4,
        "skipped": 1,
        "noted": 1,
    }
    assert builds_of(conn, "alice-dev")[-1] == ("start", "pending", False)
    assert builds_of(conn, "surplus-2")[-1] == ("delete", "pending", True)
    assert builds_of(conn, "queued") == [("start", "canceled", True), ("delete", "succeeded", True)]


# --- failures --------------------------------------------------------------------------------

REFUSE_DELETE = """
create function public.refuse_delete() returns trigger language plpgsql as $$
begin
    if new.transition = 'delete' and new.workspace_id = fixture.ws('doomed') then
        raise exception 'test trigger: refusing to delete workspace doomed';
    end if;
    return new;
end $$;
create trigger refuse_delete before insert on prebuilds.workspace_builds
for each row execute function public.refuse_delete();
"""


def fleet_with_one_doomed_delete(conn: Conn) -> None:
    """3 surplus deletes (the first one fails, by a test-only trigger) and 3 creates."""
    surplus = preset(conn, "surplus", 1)
    for name, age in (("doomed", "4 hours"), ("s2", "3 hours"), ("s3", "2 hours")):
        conn.execute(
            "select fixture.prebuild(%s, now() - %s::interval, 'running', true, "
            "prebuilds.system_user_id(), %s)",
            (surplus, age, name),
        )
    conn.execute(
        "select fixture.prebuild(%s, now() - interval '1 hour', 'running', true, "
        "prebuilds.system_user_id(), 'keeper')",
        (surplus,),
    )
    preset(conn, "short", 3)
    conn.execute(REFUSE_DELETE)


def test_a_failing_action_does_not_stop_the_others(conn: Conn, db_url: str) -> None:
    fleet_with_one_doomed_delete(conn)
    assert plan_of(conn) == [
        ("delete", "doomed"),
        ("delete", "s2"),
        ("delete", "s3"),
        ("create", "short"),
        ("create", "short"),
        ("create", "short"),
    ]

    result = run_cycle(db_url)

    assert result.exit_code == 1 and result.failed == 1
    assert result.tally("applied") == 5
    (failed,) = [o for o in result.outcomes if o.outcome == "failed"]
    assert failed.action.seq == 1 and failed.error is not None
    assert "refusing to delete workspace doomed" in failed.error
    assert builds_of(conn, "doomed") == [("start", "succeeded", True)]
    for name in ("s2", "s3"):
        assert builds_of(conn, name)[-1] == ("delete", "pending", True)
    assert builds_of(conn, "keeper") == [("start", "succeeded", True)]
    assert active_pools(conn)[scalar(conn, "select fixture.preset_of('short')")].starting == 3
    log = conn.execute(
        "select seq, action, outcome, error from prebuilds.reconciliation_action_log order by seq"
    ).fetchall()
    assert [r[:3] for r in log] == [
        (1, "delete", "failed"),
        (2, "delete", "applied"),
        (3, "delete", "applied"),
        (4, "create", "applied"),
        (5, "create", "applied"),
        (6, "create", "applied"),
    ]
    assert "refusing to delete workspace doomed" in log[0][3]
    assert all(r[3] is None for r in log[1:])
    run = conn.execute(
        "select status, actions_planned, actions_applied, actions_skipped, actions_failed "
        "from prebuilds.reconciliation_runs"
    ).fetchall()
    assert run == [("failed", 6, 5, 0, 1)]


# --- pause -----------------------------------------------------------------------------------


def test_paused_cycle_applies_nothing(conn: Conn, db_url: str) -> None:
    surplus = preset(conn, "surplus", 1)
    prebuilds_named(conn, surplus, "surplus-", ["2 hours", "1 hour"])
    preset(conn, "short", 2)
    conn.execute("update prebuilds.settings set reconciliation_paused = true")
    builds_before = scalar(conn, "select count(*) from prebuilds.workspace_builds")

    result = run_cycle(db_url)

    assert result.status == "paused" and result.exit_code == 0
    assert result.outcomes == ()
    assert result.plan is not None and result.plan.paused and result.plan.actions == ()
    assert scalar(conn, "select count(*) from prebuilds.workspace_builds") == builds_before
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_action_log") == 0
    assert conn.execute(
        "select status, actions_planned, actions_applied from prebuilds.reconciliation_runs"
    ).fetchall() == [("paused", 0, 0)]
    assert {r[0] for r in conn.execute("select blocked_reason from prebuilds.preset_state")} == {
        "paused"
    }

    # Unpaused, the same fleet is reconciled.
    conn.execute("update prebuilds.settings set reconciliation_paused = false")
    result = run_cycle(db_url)
    assert (result.tally("applied", "delete"), result.tally("applied", "create")) == (1, 2)


# --- the one read ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2])
def test_a_cycle_reads_once_and_otherwise_only_writes(
    conn: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch, depth: int
) -> None:
    """Client side: a spy on psycopg's Cursor.execute/executemany and on ClientCursor.mogrify
    (which binds the pipelined writers' statements; the statements still run on the real
    server) sees the lock, the one plan read, and writes. Server side: per-function statistics
    count the plan functions evaluated by the driver's sessions. At depth 1 each action is one
    message (its timeouts and the call); pipelined, the same two statements go separately."""
    monkeypatch.setattr(cycle, "PIPELINE_DEPTH", depth)
    surplus = preset(conn, "surplus", 1)
    prebuilds_named(conn, surplus, "surplus-", ["3 hours", "2 hours", "1 hour"])
    preset(conn, "short", 4)
    flaky = preset(conn, "flaky", 1)
    conn.execute("select fixture.prebuild(%s, now() - interval '10 seconds', 'failed')", (flaky,))
    dbname = scalar(conn, "select current_database()")
    # Only sessions opened from now on (the driver's) track function calls.
    conn.execute(
        sql.SQL("alter database {} set track_functions = 'all'").format(sql.Identifier(dbname))
    )

    sent: list[tuple[str, str]] = []
    real_execute = psycopg.Cursor.execute
    real_executemany = psycopg.Cursor.executemany

    def text_of(cur: psycopg.Cursor[Any], q: Any) -> str:
        return q.as_string(cur.connection) if isinstance(q, sql.Composable) else str(q)

    def app(cur: psycopg.Cursor[Any]) -> str:
        return cur.connection.info.parameter_status("application_name") or ""

    def spy_execute(self: psycopg.Cursor[Any], q: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append((app(self), text_of(self, q)))
        return real_execute(self, q, *args, **kwargs)

    def spy_executemany(self: psycopg.Cursor[Any], q: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append((app(self), text_of(self, q)))
        return real_executemany(self, q, *args, **kwargs)

    real_mogrify = psycopg.ClientCursor.mogrify

    def spy_mogrify(self: psycopg.ClientCursor[Any], q: Any, *args: Any, **kwargs: Any) -> str:
        sent.append((app(self), text_of(self, q)))
        return real_mogrify(self, q, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", spy_execute)
    monkeypatch.setattr(psycopg.Cursor, "executemany", spy_executemany)
    monkeypatch.setattr(psycopg.ClientCursor, "mogrify", spy_mogrify)
    result = run_cycle(db_url)
    monkeypatch.undo()

    assert result.status == "done" and result.tally("applied") == 6 and result.tally("noted") == 1
    statements = [(a, t) for a, t in sent if t.strip()]  # the pool's "" liveness checks aside
    # Besides the keepalive pings (sent only while a cycle applies for more than a second), the
    # lock connection sends exactly two statements: the lock and the read.
    on_lock = [
        t for a, t in statements if a == cycle.APPLICATION_NAME and t != text_of_query("keepalive")
    ]
    assert on_lock == [text_of_query("take_lock"), text_of_query("read_plan")]
    others = [(a, t) for a, t in statements if a != cycle.APPLICATION_NAME]
    assert {a for a, _ in others} == {cycle.WRITE_APPLICATION_NAME}
    write_queries = {
        text_of_query(n): n
        for n in (
            "start_run",
            "apply_action",
            "local_limits",
            "apply_action_call",
            "log_actions",
            "finish_run",
            "prune_runs",
        )
    }
    counted = Counter(write_queries[t] for _, t in others)
    # 2 deletes and 4 creates. Pipelined, each action is one statement: the call, which sets its
    # own lock timeout (the statement timeout is the writer's deadline); no local_limits.
    actions = {"apply_action": 6} if depth == 1 else {"apply_action_call": 6}
    assert counted == {
        "start_run": 1,
        **actions,
        "log_actions": 1,  # the backoff note: one call of prebuilds.log_actions
        "finish_run": 1,
        "prune_runs": 1,  # retention: prebuilds.prune_runs()
    }

    # Server side: the driver's sessions evaluated the plan exactly once.
    calls = function_calls_after_driver_exit(conn)
    assert calls.get("reconciliation_actions_at") == 1
    # The rules are inlined into the wrapper's cached plan, never called on their own.
    inlined = ("planned_actions_at", "preset_plan_at", "pool_size_at", "preset_schedule_at")
    assert not [name for name in inlined if name in calls], calls
    assert "preset_state_at" not in calls
    assert calls.get("delete_prebuild") == 2 and calls.get("create_prebuild") == 4


def text_of_query(name: str) -> str:
    return query(name).as_string(None)


def function_calls_after_driver_exit(conn: Conn) -> dict[str, int]:
    """Calls per prebuilds function, once the driver's backends have exited (and so flushed their
    statistics)."""
    deadline = time.monotonic() + 10
    while scalar(
        conn,
        "select count(*) from pg_stat_activity "
        "where datname = current_database() and application_name like 'prebuilds-reconciler%'",
    ):
        assert time.monotonic() < deadline, "the driver's sessions did not end"
        time.sleep(0.02)
    rows = conn.execute(
        "select funcname, calls from pg_stat_user_functions where schemaname = 'prebuilds'"
    ).fetchall()
    return {r[0]: r[1] for r in rows}
