"""The benchmark baseline (bench/baseline.py) plans exactly what our SQL plan does with
spec_semantics=True, differs with spec_semantics=False exactly where its docstring says Coder
differs, and converges a fleet when its cycles alternate with the simulated provisioner."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from bench.baseline import BaselineAction, plan, read_snapshot, run_baseline_cycle
from prebuilds import demo, locks
from prebuilds.simulator import SimulatedProvisioner
from tests.support import active_pools

Conn = psycopg.Connection[Any]
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # a Monday

#: (action, workspace name or template/version/preset) -> count: creates compare as counts.
Plan = Counter[str]


def _labels(conn: Conn) -> tuple[dict[UUID, str], dict[UUID, str]]:
    workspaces = {r[0]: r[1] for r in conn.execute("select id, name from prebuilds.workspaces")}
    presets = {
        r[0]: f"{r[1]}/{r[2]}/{r[3]}"
        for r in conn.execute(
            """
            select p.id, t.name, v.name, p.name
            from prebuilds.presets as p
            join prebuilds.template_versions as v on v.id = p.template_version_id
            join prebuilds.templates as t on t.id = v.template_id
            """
        )
    }
    return workspaces, presets


def _label(
    labels: tuple[dict[UUID, str], dict[UUID, str]], action: str, preset: UUID, ws: UUID | None
) -> str:
    workspaces, presets = labels
    return f"{action}:{workspaces[ws] if ws is not None else presets[preset]}"


#: Reasons of the SPEC 5 actions (self-healing), which the baseline does not port in either mode
#: (bench/baseline.py, difference 7): hung jobs failed, failed deletes retried, failed and stopped
#: prebuilds cleaned up, surplus queued builds of active presets cancelled, hard-limit probes.
SELF_HEALING_REASON = (
    r"^(hung: |retry \d+ of |cleanup: |probe: |surplus: .*: initial build still queued$)"
)


def ours(conn: Conn, now: datetime = NOW, *, self_healing: bool = False) -> Plan:
    """Our plan, from the SQL function: the actions of SPEC 4 (what the baseline ports), or with
    ``self_healing`` those of SPEC 5 only."""
    labels = _labels(conn)
    rows = conn.execute(
        "select preset_id, action, workspace_id from prebuilds.reconciliation_actions_at(%s) "
        "where (reason ~ %s) = %s",
        (now, SELF_HEALING_REASON, self_healing),
    ).fetchall()
    return Counter(_label(labels, r[1], r[0], r[2]) for r in rows)


def _count(conn: Conn, actions: list[BaselineAction]) -> Plan:
    labels = _labels(conn)
    return Counter(_label(labels, a.action, a.preset_id, a.workspace_id) for a in actions)


def baseline(conn: Conn, *, spec: bool, now: datetime = NOW) -> Plan:
    """The baseline's plan, from a snapshot read in one transaction."""
    with conn.transaction():
        snapshot = read_snapshot(conn, now=now)
    return _count(conn, plan(snapshot, now, spec_semantics=spec))


def check(
    conn: Conn,
    *,
    spec_only: Sequence[str] = (),
    coder_only: Sequence[str] = (),
    self_healing: Sequence[str] = (),
) -> Plan:
    """Spec mode equals ours; Coder mode differs by exactly ``spec_only`` (in ours, not in
    Coder's) and ``coder_only`` (in Coder's, not in ours). Our SPEC 5 actions, in neither mode,
    are exactly ``self_healing``. Returns our plan without them."""
    assert ours(conn, self_healing=True) == Counter(self_healing), "SPEC 5 actions"
    expected = ours(conn)
    assert baseline(conn, spec=True) == expected
    coder = baseline(conn, spec=False)
    assert expected - coder == Counter(spec_only), "planned by SPEC only"
    assert coder - expected == Counter(coder_only), "planned by Coder only"
    return expected


# --- fleets ----------------------------------------------------------------------------------

OUTDATED_FLEET = """
do $$
declare
    v_old uuid := fixture.active_preset('py', 2, 3600);
    v_dep uuid := fixture.active_preset('dep', 1);
    v_gone uuid := fixture.active_preset('gone', 1);
    v_none uuid;
begin
    -- py v1, about to become outdated: every state a prebuild can be in.
    perform fixture.prebuild(v_old, '2025-06-02 11:30Z', p_name => 'py1-fresh');
    perform fixture.prebuild(v_old, '2025-06-02 10:00Z', p_name => 'py1-expired');
    perform fixture.prebuild(
        v_old, '2025-06-02 11:40Z', p_ready => false, p_name => 'py1-not-ready'
    );
    perform fixture.prebuild(v_old, '2025-06-02 11:50Z', 'starting', p_name => 'py1-queued');
    perform fixture.prebuild(v_old, '2025-06-02 11:50Z', 'provisioning', p_name => 'py1-picked');
    perform fixture.prebuild(v_old, '2025-06-02 11:00Z', 'failed', p_name => 'py1-failed');
    perform fixture.prebuild(v_old, '2025-06-02 11:00Z', 'stopped', p_name => 'py1-stopped');
    perform fixture.prebuild(v_old, '2025-06-02 11:00Z', 'deleting', p_name => 'py1-deleting');
    perform fixture.prebuild(
        v_old, '2025-06-02 09:00Z', p_owner => fixture.user('alice'), p_name => 'alice-ws'
    );
    -- A long history: v2..v6 each with a pool; v6 is active and holds one of its two.
    for i in 2..6 loop
        perform fixture.preset(fixture.new_version('py', 'v' || i), 'default', 2, 3600);
    end loop;
    perform fixture.prebuild(fixture.preset_of('py', 'v6'), '2025-06-02 11:30Z', p_name => 'py6');
    -- A deprecated template: a running prebuild, a build queued on its (active) version.
    perform fixture.prebuild(v_dep, '2025-06-02 11:00Z', p_name => 'dep-running');
    perform fixture.prebuild(v_dep, '2025-06-02 11:55Z', 'starting', p_name => 'dep-queued');
    update prebuilds.templates set deprecated = true where name = 'dep';
    -- A deleted template with a running prebuild.
    perform fixture.prebuild(v_gone, '2025-06-02 11:00Z', p_name => 'gone-running');
    update prebuilds.templates set deleted = true where name = 'gone';
    -- A template without an active version.
    v_none := fixture.preset(fixture.version(fixture.template('none'), 'v1', false), 'default', 1);
    perform fixture.prebuild(v_none, '2025-06-02 11:00Z', p_name => 'none-running');
    perform fixture.prebuild(v_none, '2025-06-02 11:55Z', 'starting', p_name => 'none-queued');
end;
$$;
"""


def test_outdated_versions_inactive_templates_and_cancels(conn: Conn) -> None:
    conn.execute(OUTDATED_FLEET)
    expected = check(
        conn,
        # 3: Coder forgets expired prebuilds of inactive presets. 6: it cancels only builds on a
        # version other than the active one (so neither on a deprecated template's active
        # version nor when the template has no active version).
        spec_only=["delete:py1-expired", "cancel:dep-queued", "cancel:none-queued"],
        # 7: the provisioning and deleting prebuilds have been silent since 11:50 and 11:00.
        self_healing=["fail_job:py1-picked", "fail_job:py1-deleting"],
    )
    assert expected == Counter(
        [
            "cancel:py1-queued",
            "cancel:dep-queued",
            "cancel:none-queued",
            "delete:py1-fresh",
            "delete:py1-expired",
            "delete:py1-not-ready",
            "delete:dep-running",
            "delete:gone-running",
            "delete:none-running",
            "create:py/v6/default",
        ]
    )


ACTIVE_FLEET = """
do $$
declare
    v_surplus uuid := fixture.active_preset('surplus', 2, 3600);
    v_inval uuid := fixture.active_preset('invalidated', 2);
    v_grow uuid := fixture.active_preset('growing', 4);
    v_removed uuid := fixture.active_preset('removed', 2);
    v_sched uuid := fixture.timezone(fixture.active_preset('scheduled', 1), 'Europe/Berlin');
    v_bad_tz uuid := fixture.active_preset('no-zone', 1);
    v_steady uuid := fixture.active_preset('steady', 2);
begin
    -- surplus: one expired, three unexpired for two wanted (the oldest goes), and prebuilds that
    -- are never touched (stopped, stopping, deleting, canceled, a user's).
    perform fixture.prebuild(v_surplus, '2025-06-02 10:30Z', p_name => 's-expired');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:10Z', p_name => 's-oldest');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:20Z', p_name => 's-mid');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:30Z', p_ready => false, p_name => 's-new');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:00Z', 'stopped', p_name => 's-stopped');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:00Z', 'stopping', p_name => 's-stopping');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:00Z', 'deleting', p_name => 's-deleting');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:00Z', 'canceled', p_name => 's-canceled');
    perform fixture.prebuild(
        v_surplus, '2025-06-02 11:00Z', p_owner => fixture.user('bob'), p_name => 'bob-ws'
    );
    -- invalidated at 11:00: two prebuilds from before expire, one from after stays.
    perform fixture.prebuild(v_inval, '2025-06-02 10:00Z', p_name => 'i-before-1');
    perform fixture.prebuild(v_inval, '2025-06-02 10:30Z', p_name => 'i-before-2');
    perform fixture.prebuild(v_inval, '2025-06-02 11:30Z', p_name => 'i-after');
    update prebuilds.presets set last_invalidated_at = '2025-06-02 11:00Z' where id = v_inval;
    -- growing: 4 wanted, 1 running, 1 queued, 1 provisioning: 1 create.
    perform fixture.prebuild(v_grow, '2025-06-02 11:00Z', p_name => 'g-running');
    perform fixture.prebuild(v_grow, '2025-06-02 11:50Z', 'starting', p_name => 'g-queued');
    perform fixture.prebuild(v_grow, '2025-06-02 11:50Z', 'provisioning', p_name => 'g-picked');
    -- removed: the pool is removed (desired_instances null): both prebuilds are surplus.
    perform fixture.prebuild(v_removed, '2025-06-02 10:00Z', p_name => 'r-1');
    perform fixture.prebuild(v_removed, '2025-06-02 11:00Z', p_name => 'r-2');
    perform fixture.prebuild(v_removed, '2025-06-02 11:50Z', 'starting', p_name => 'r-queued');
    update prebuilds.presets set desired_instances = null where id = v_removed;
    -- scheduled: 3 on weekdays 09:00-17:59 Berlin (12:00Z on Monday is 14:00 there), 0 later.
    perform fixture.schedule(v_sched, '* 9-17 * * 1-5', 3);
    perform fixture.schedule(v_sched, '* 18-20 * * 1-5', 0);
    perform fixture.prebuild(v_sched, '2025-06-02 11:00Z', p_name => 'sched-1');
    -- no-zone: a schedule on a preset without a time zone is ignored: desired_instances holds.
    perform fixture.schedule(v_bad_tz, '* * * * *', 5);
    -- steady: full.
    perform fixture.prebuild(v_steady, '2025-06-02 11:00Z', p_name => 'steady-1');
    perform fixture.prebuild(v_steady, '2025-06-02 11:10Z', p_name => 'steady-2');
end;
$$;
"""


def test_active_presets_surplus_expiry_invalidation_schedules(conn: Conn) -> None:
    conn.execute(ACTIVE_FLEET)
    # 5: Coder does not see a preset whose pool was removed.
    expected = check(
        conn,
        spec_only=["delete:r-1", "delete:r-2"],
        # 7: jobs silent since 11:00 and 11:50 are hung; the pool removed, its queued build is
        # surplus.
        self_healing=[
            "fail_job:g-picked",
            "fail_job:s-deleting",
            "fail_job:s-stopping",
            "cancel:r-queued",
        ],
    )
    assert expected == Counter(
        {
            "delete:s-expired": 1,
            "delete:s-oldest": 1,
            "delete:i-before-1": 1,
            "delete:i-before-2": 1,
            "create:invalidated/v1/default": 1,
            "create:growing/v1/default": 1,
            "delete:r-1": 1,
            "delete:r-2": 1,
            "create:scheduled/v1/default": 2,
            "create:no-zone/v1/default": 1,
        }
    )
    # Three hours later the second schedule is in force (0 wanted): the one prebuild is surplus.
    later = datetime(2025, 6, 2, 17, 0, tzinfo=UTC)
    assert "delete:sched-1" in ours(conn, later)
    assert baseline(conn, spec=True, now=later) == ours(conn, later)


BACKOFF_FLEET = """
do $$
declare
    v_t uuid := fixture.active_preset('t', 2, 3600);
    v_full uuid := fixture.active_preset('full', 1);
    v_surplus uuid := fixture.active_preset('surplus', 1);
    v_sched uuid := fixture.timezone(fixture.active_preset('sched', 1), 'UTC');
    v_dep uuid := fixture.active_preset('dep', 1);
    v_resumed uuid := fixture.active_preset('resumed', 1);
begin
    -- t (as sql-tests/reconciliation_actions/test_backoff.sql): two recent failures hold creates
    -- back until 12:01; the expired prebuild is deleted anyway.
    perform fixture.prebuild(v_t, '2025-06-02 10:00Z', p_name => 't-expired');
    perform fixture.prebuild(v_t, '2025-06-02 11:58Z', 'failed', p_name => 't-f1');
    perform fixture.prebuild(v_t, '2025-06-02 11:59Z', 'failed', p_name => 't-f2');
    -- full: in the window, but nothing to create.
    perform fixture.prebuild(v_full, '2025-06-02 11:00Z', p_name => 'full-ok');
    perform fixture.prebuild(v_full, '2025-06-02 11:59Z', 'failed', p_name => 'full-f');
    -- surplus: in the window with a surplus prebuild to delete.
    perform fixture.prebuild(v_surplus, '2025-06-02 10:00Z', p_name => 'surplus-old');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:00Z', p_name => 'surplus-new');
    perform fixture.prebuild(v_surplus, '2025-06-02 11:59Z', 'failed', p_name => 'surplus-f');
    -- sched: a schedule wants 3; the failure is the 2nd most recent build.
    perform fixture.schedule(v_sched, '* * * * *', 3);
    perform fixture.prebuild(v_sched, '2025-06-02 11:59:30Z', 'failed', p_name => 'sched-f');
    perform fixture.prebuild(v_sched, '2025-06-02 11:59:45Z', p_name => 'sched-ok');
    -- dep: in the window, then its template is deprecated.
    perform fixture.prebuild(v_dep, '2025-06-02 11:00Z', p_name => 'dep-running');
    perform fixture.prebuild(v_dep, '2025-06-02 11:59Z', 'failed', p_name => 'dep-f');
    update prebuilds.templates set deprecated = true where name = 'dep';
    -- resumed: its failures predate failures_reset_at (resume_preset).
    perform fixture.prebuild(v_resumed, '2025-06-02 11:58Z', 'failed', p_name => 'resumed-f1');
    perform fixture.prebuild(v_resumed, '2025-06-02 11:59Z', 'failed', p_name => 'resumed-f2');
    update prebuilds.presets set failures_reset_at = '2025-06-02 11:59:30Z' where id = v_resumed;
end;
$$;
"""


def test_backoff_blocks_creates_only(conn: Conn) -> None:
    conn.execute(BACKOFF_FLEET)
    expected = check(
        conn,
        spec_only=[
            # 1: in Coder the backoff action is all a preset in backoff does.
            "delete:t-expired",
            "delete:surplus-old",
            "delete:dep-running",
            # 4: Coder's window is desired_instances (1) builds, the schedule wants 3.
            "backoff:sched/v1/default",
        ],
        coder_only=[
            # 2: Coder's backoff action shows whenever the preset is in its window.
            "backoff:full/v1/default",
            "backoff:surplus/v1/default",
            "backoff:dep/v1/default",
            # 4: not in backoff for Coder, so it creates what the schedule wants.
            "create:sched/v1/default",
            "create:sched/v1/default",
        ],
    )
    assert expected == Counter(
        [
            "delete:t-expired",
            "backoff:t/v1/default",
            "delete:surplus-old",
            "backoff:sched/v1/default",
            "delete:dep-running",
            "create:resumed/v1/default",
        ]
    )
    # At the end of t's window (12:01) it creates again, in both designs.
    at = datetime(2025, 6, 2, 12, 1, 30, tzinfo=UTC)
    assert ours(conn, at)["create:t/v1/default"] == 2
    assert baseline(conn, spec=True, now=at) == ours(conn, at)


HARD_LIMIT_FLEET = """
do $$
declare
    v_a uuid := fixture.active_preset('a', 1, 3600, 'limited');
    v_b uuid := fixture.active_preset('b', 2, p_preset => 'recovered');
    v_c uuid := fixture.active_preset('c', 1, p_preset => 'limited-and-backoff');
begin
    -- As sql-tests/reconciliation_actions/test_hard_limit.sql.
    perform fixture.prebuild(v_a, '2025-06-02 10:00Z', p_name => 'a-expired');
    perform fixture.prebuild(v_a, '2025-06-02 11:05Z', 'failed');
    perform fixture.prebuild(v_a, '2025-06-02 11:10Z', 'failed');
    perform fixture.prebuild(v_a, '2025-06-02 11:20Z', 'failed');
    perform fixture.prebuild(v_b, '2025-06-02 11:05Z', 'failed');
    perform fixture.prebuild(v_b, '2025-06-02 11:10Z', 'failed');
    perform fixture.prebuild(v_b, '2025-06-02 11:20Z', p_name => 'b-ok');
    perform fixture.prebuild(v_c, '2025-06-02 11:57Z', 'failed');
    perform fixture.prebuild(v_c, '2025-06-02 11:58Z', 'failed');
    perform fixture.prebuild(v_c, '2025-06-02 11:59Z', 'failed');
end;
$$;
"""


def test_hard_limit_blocks_creates_only(conn: Conn) -> None:
    conn.execute(HARD_LIMIT_FLEET)
    # 2: Coder shows the backoff of a hard-limited preset; SPEC's hard limit comes first.
    expected = check(conn, coder_only=["backoff:c/v1/limited-and-backoff"])
    assert expected == Counter(["delete:a-expired", "create:b/v1/recovered"])
    # With the limit disabled: a creates, c backs off.
    conn.execute("update prebuilds.settings set failure_hard_limit = 0")
    expected = check(conn)
    assert expected == Counter(
        [
            "delete:a-expired",
            "create:a/v1/limited",
            "create:b/v1/recovered",
            "backoff:c/v1/limited-and-backoff",
        ]
    )


def test_paused_plans_nothing(conn: Conn) -> None:
    conn.execute(ACTIVE_FLEET)
    conn.execute(OUTDATED_FLEET)
    conn.execute("update prebuilds.settings set reconciliation_paused = true")
    assert check(conn) == Counter()
    with conn.transaction():
        snapshot = read_snapshot(conn)
    assert snapshot.settings.paused and not snapshot.presets, "Coder stops after the settings"


CAP_FLEET = """
do $$
begin
    perform fixture.active_preset('a', 3, p_preset => 'A');
    perform fixture.active_preset('b', 3, p_preset => 'B');
    perform fixture.active_preset('c', 3, p_preset => 'C');
end;
$$;
"""


def test_max_pending_creates_interleaves_creates_across_presets(conn: Conn) -> None:
    conn.execute(CAP_FLEET)
    assert check(conn) == Counter({"create:a/v1/A": 3, "create:b/v1/B": 3, "create:c/v1/C": 3})
    conn.execute("update prebuilds.settings set max_pending_creates = 4")
    assert check(conn) == Counter({"create:a/v1/A": 2, "create:b/v1/B": 1, "create:c/v1/C": 1})
    conn.execute("update prebuilds.presets set desired_instances = 1 where name = 'A'")
    assert check(conn) == Counter({"create:a/v1/A": 1, "create:b/v1/B": 2, "create:c/v1/C": 1})
    # Starts in flight count against the cap (of any preset, active or not). They are alive:
    # queued for less than job_pending_timeout, or beating (SPEC 5.2 fails neither).
    conn.execute(
        """
        select fixture.prebuild(fixture.preset_of('c', 'v1', 'C'), '2025-06-02 11:50Z', 'starting');
        select fixture.prebuild(fixture.preset_of('c', 'v1', 'C'), '2025-06-02 11:58Z',
                                'provisioning');
        """
    )
    assert check(conn) == Counter({"create:a/v1/A": 1, "create:b/v1/B": 1})
    # Over the cap: no creates, deletes go ahead.
    conn.execute(
        """
        select fixture.prebuild(fixture.preset_of('b', 'v1', 'B'), '2025-06-02 11:50Z', 'starting');
        select fixture.prebuild(fixture.preset_of('b', 'v1', 'B'), '2025-06-02 11:50Z', 'starting');
        select fixture.prebuild(fixture.preset_of('a', 'v1', 'A'), '2025-06-02 10:00Z',
                                p_name => 'a1');
        select fixture.prebuild(fixture.preset_of('a', 'v1', 'A'), '2025-06-02 11:00Z',
                                p_name => 'a2');
        """
    )
    assert check(conn) == Counter(["delete:a1"])


def test_demo_fleet_through_the_view_in_one_transaction(conn: Conn) -> None:
    """The demo seed, compared at the database's now(): the view and the snapshot read in the
    same repeatable-read transaction."""
    demo.seed(conn, lambda _: None)
    labels = _labels(conn)
    conn.autocommit = False
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    with conn.transaction():
        snapshot = read_snapshot(conn)
        rows = conn.execute(
            "select preset_id, action, workspace_id, reason ~ %s "
            "from prebuilds.reconciliation_actions",
            (SELF_HEALING_REASON,),
        ).fetchall()
    conn.autocommit = True
    expected = Counter(_label(labels, r[1], r[0], r[2]) for r in rows if not r[3])
    # 7: the demo's gpu prebuild whose provisioner died is failed as hung (SPEC 5.2).
    assert [r[1] for r in rows if r[3]] == ["fail_job"]
    assert _count(conn, plan(snapshot, snapshot.now)) == expected
    # Cancels, deletes of outdated, deprecated, expired and surplus prebuilds, creates.
    assert {label.split(":")[0] for label in expected} == {"cancel", "delete", "create"}
    # None of the documented differences arises in the demo fleet.
    assert _count(conn, plan(snapshot, snapshot.now, spec_semantics=False)) == expected


# --- random fleets ---------------------------------------------------------------------------

STATES = ["running"] * 6 + ["starting", "provisioning", "failed", "failed", "canceled"]
STATES += ["stopped", "stopping", "deleting"]
SCHEDULES = ["* 9-17 * * 1-5", "* 18-23 * * *", "* 0-8 * * *", "* * * * 0,6", "* 10-14 * * 1"]


def random_fleet(conn: Conn, rnd: random.Random) -> None:
    """A small fleet drawn from every situation: versions, template states, pools, TTLs,
    invalidations, resets, schedules, prebuild states, restarts, failed deletes, preset switches,
    claims, removed pools and settings."""

    def one(q: str, *params: Any) -> Any:
        row = conn.execute(q, params).fetchone()
        assert row is not None
        return row[0]

    conn.execute(
        "update prebuilds.settings set failure_hard_limit = %s, backoff_interval = %s, "
        "backoff_lookback = %s, max_pending_creates = %s",
        (
            rnd.choice([0, 1, 2, 3, 3]),
            timedelta(minutes=rnd.choice([1, 1, 5, 30])),
            timedelta(minutes=rnd.choice([30, 60, 180])),
            rnd.choice([None, None, 1, 2, 4, 8]),
        ),
    )
    users = [one("select fixture.user(%s)", f"user{i}") for i in range(2)]
    system = one("select prebuilds.system_user_id()")
    presets: list[UUID] = []
    for t in range(rnd.randint(1, 4)):
        template = one("select fixture.template(%s, %s)", f"t{t}", rnd.choice(["acme", "globex"]))
        for v in range(rnd.randint(1, 4)):
            version = one(
                "select fixture.version(%s, %s, %s)", template, f"v{v}", rnd.random() < 0.8
            )
            for n in range(rnd.randint(1, 2)):
                preset = one(
                    "select fixture.preset(%s, %s, %s, %s)",
                    version,
                    f"p{n}",
                    rnd.choice([None, 0, 1, 1, 2, 3]),
                    rnd.choice([None, None, 0, 3600, 7200]),
                )
                presets.append(preset)
                if rnd.random() < 0.2:
                    conn.execute(
                        "update prebuilds.presets set last_invalidated_at = %s where id = %s",
                        (NOW - timedelta(minutes=rnd.randint(0, 180)), preset),
                    )
                if rnd.random() < 0.15:
                    conn.execute(
                        "update prebuilds.presets set failures_reset_at = %s where id = %s",
                        (NOW - timedelta(minutes=rnd.randint(0, 120)), preset),
                    )
                if rnd.random() < 0.25:
                    zone = rnd.choice(["UTC", "Europe/Berlin", "America/New_York", ""])
                    conn.execute(
                        "update prebuilds.presets set scheduling_timezone = %s where id = %s",
                        (zone, preset),
                    )
                    for expression in rnd.sample(SCHEDULES, rnd.randint(1, 2)):
                        try:
                            with conn.transaction():
                                conn.execute(
                                    "select fixture.schedule(%s, %s, %s)",
                                    (preset, expression, rnd.randint(0, 4)),
                                )
                        except psycopg.errors.CheckViolation:
                            pass  # overlaps the other one
                for _ in range(rnd.choice([0, 0, 1, 2, 3, 5])):
                    state = rnd.choice(STATES)
                    at = NOW - timedelta(
                        minutes=rnd.choice([rnd.randint(0, 200), rnd.randint(0, 10)]),
                        seconds=rnd.randint(0, 59),
                    )
                    owner = system if rnd.random() < 0.9 else rnd.choice(users)
                    ws = one(
                        "select fixture.prebuild(%s, %s, %s, %s, %s)",
                        preset,
                        at,
                        state,
                        rnd.random() < 0.85,
                        owner,
                    )
                    later = at + timedelta(seconds=rnd.randint(1, 600))
                    r = rnd.random()
                    if state != "running" or r > 0.2:
                        continue
                    if r < 0.08:  # restarted: stop, then a start in any state
                        conn.execute(
                            "select fixture.build(%s, 'stop', 'succeeded', %s)", (ws, later)
                        )
                        status = rnd.choice(["succeeded", "pending", "running", "failed"])
                        job = one(
                            "select fixture.build(%s, 'start', %s, %s, %s)",
                            ws,
                            status,
                            later + timedelta(seconds=1),
                            owner,
                        )
                        if status == "succeeded" and rnd.random() < 0.7:
                            conn.execute(
                                "select fixture.agent(%s, %s)",
                                (job, rnd.choice(["ready", "ready", "starting"])),
                            )
                    elif r < 0.12:  # a delete that failed or was canceled
                        conn.execute(
                            "select fixture.build(%s, 'delete', %s, %s)",
                            (ws, rnd.choice(["failed", "canceled"]), later),
                        )
                    elif r < 0.16:  # rebuilt with another preset
                        job = one(
                            "select fixture.build(%s, 'start', 'succeeded', %s, %s, %s)",
                            ws,
                            later,
                            owner,
                            rnd.choice(presets),
                        )
                        conn.execute("select fixture.agent(%s)", (job,))
                    else:
                        conn.execute(
                            "select prebuilds.claim_prebuild(%s, %s, %s)",
                            (preset, rnd.choice(users), f"claimed-{rnd.random()}"),
                        )
        change = rnd.random()
        if change < 0.1:
            conn.execute(
                "update prebuilds.templates set deprecated = true where id = %s", (template,)
            )
        elif change < 0.2:
            conn.execute("update prebuilds.templates set deleted = true where id = %s", (template,))
        elif change < 0.3:
            conn.execute(
                "update prebuilds.templates set active_version_id = null where id = %s", (template,)
            )
    if rnd.random() < 0.3:
        conn.execute(
            "update prebuilds.presets set desired_instances = null where id = %s",
            (rnd.choice(presets),),
        )
    if rnd.random() < 0.05:
        conn.execute("update prebuilds.settings set reconciliation_paused = true")


def test_random_fleets_plan_alike(conn: Conn) -> None:
    """Seeded random fleets (each built and rolled back in one transaction): the spec-mode plan
    is ours every time."""
    kinds: Counter[str] = Counter()
    for seed in range(40):
        with conn.transaction(force_rollback=True):
            random_fleet(conn, random.Random(seed))
            expected = ours(conn)
            snapshot = read_snapshot(conn, now=NOW)
            assert _count(conn, plan(snapshot, NOW)) == expected, f"seed {seed}"
            kinds.update(label.split(":")[0] for label in expected.elements())
    assert set(kinds) == {"cancel", "delete", "create", "backoff"}


# --- cycles ----------------------------------------------------------------------------------

CONVERGENCE_FLEET = """
do $$
declare
    v_old uuid := fixture.active_preset('py', 2, 3600);
    v_web uuid := fixture.active_preset('web', 1);
begin
    perform fixture.prebuild(v_old, now() - interval '10 minutes', p_name => 'py1-a');
    perform fixture.prebuild(v_old, now() - interval '2 hours', p_name => 'py1-expired');
    perform fixture.prebuild(
        v_old, now() - interval '1 minute', 'starting', p_name => 'py1-queued'
    );
    perform fixture.preset(fixture.new_version('py', 'v2'), 'default', 2, 3600);
    perform fixture.preset(fixture.version(fixture.template('go'), 'v1'), 'default', 3);
    perform fixture.prebuild(v_web, now() - interval '30 minutes', p_name => 'web-1');
    perform fixture.prebuild(v_web, now() - interval '20 minutes', p_name => 'web-2');
    perform fixture.prebuild(v_web, now() - interval '10 minutes', p_name => 'web-3');
end;
$$;
"""


def test_cycles_apply_the_plan_and_converge(conn: Conn, db_url: str) -> None:
    conn.execute(CONVERGENCE_FLEET)
    provisioner = SimulatedProvisioner(conn)
    first = run_baseline_cycle(db_url)
    assert first.status == "done"
    assert _count(conn, list(first.actions)) == Counter(
        {
            "cancel:py1-queued": 1,
            "delete:py1-a": 1,
            "delete:py1-expired": 1,
            "delete:web-1": 1,
            "delete:web-2": 1,
            "create:py/v2/default": 2,
            "create:go/v1/default": 3,
        }
    )
    assert (first.applied, first.skipped, first.failed) == (10, 0, 0)
    # One task per preset of the unfiltered list (py v1, py v2, web, go).
    assert first.presets == 4
    # The lock, the settings and 7 snapshot queries; BEGIN and COMMIT around them.
    assert first.read_statements == 9 and first.read_round_trips == 11
    # Each action: BEGIN, one statement, COMMIT.
    assert (first.write_statements, first.write_round_trips) == (10, 30)
    for _ in range(5):
        provisioner.drain()
        result = run_baseline_cycle(db_url)
        assert result.failed == 0
        if not result.actions:
            break
    else:
        pytest.fail("the baseline did not converge in 5 cycles")
    pools = active_pools(conn)
    assert pools and all(p.running == p.desired and p.starting == 0 for p in pools.values())
    assert ours(conn, datetime.now(UTC)) == Counter()


def test_plan_only_cycle_and_busy_lock(conn: Conn, db_url: str) -> None:
    conn.execute(CONVERGENCE_FLEET)
    dry = run_baseline_cycle(db_url, apply=False)
    assert dry.status == "done" and len(dry.actions) == 10 and dry.outcomes == ()
    assert dry.write_round_trips == 0
    # Coder's semantics: the expired prebuild of the outdated version is forgotten.
    coder = run_baseline_cycle(db_url, apply=False, spec_semantics=False)
    assert _count(conn, list(dry.actions)) - _count(conn, list(coder.actions)) == Counter(
        ["delete:py1-expired"]
    )
    with psycopg.connect(db_url) as holder, holder.transaction():
        holder.execute("select pg_advisory_xact_lock(%s)", (locks.RECONCILE,))
        assert run_baseline_cycle(db_url).status == "lock_busy"
    conn.execute("update prebuilds.settings set reconciliation_paused = true")
    paused = run_baseline_cycle(db_url)
    assert paused.status == "paused" and paused.actions == ()
    assert paused.read_statements == 2  # the lock and the settings: Coder stops there
