"""The benchmark fleet generator (bench/fleet.py) on its tiny scenario: every situation the
benchmarks rely on is there, two builds give the same fleet, and the fast load modes write exactly
the rows that the checked load (every trigger and foreign key on) writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from bench.fleet import COUNT_FIELDS, SCENARIOS, FleetError, FleetSummary, build_fleet
from tests.fixtures import clone_database, drop_database, with_database

TINY = SCENARIOS["tiny"]

TABLES = (
    "organizations",
    "users",
    "templates",
    "template_versions",
    "presets",
    "preset_schedules",
    "preset_counters",
    "workspaces",
    "workspace_builds",
    "provisioner_jobs",
    "workspace_agents",
    "settings",
)


@contextmanager
def other_database(server_url: str, template_db: str) -> Iterator[psycopg.Connection[Any]]:
    """A second fresh database migrated to head, like the ``conn`` fixture's."""
    name = clone_database(server_url, template_db)
    try:
        with psycopg.connect(with_database(server_url, name), autocommit=True) as c:
            yield c
    finally:
        drop_database(server_url, name)


def digests(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Each table's content (not its physical order) as one md5."""
    out = {}
    for table in TABLES:
        row = conn.execute(
            sql.SQL(
                "select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {} as t"
            ).format(sql.Identifier("prebuilds", table))
        ).fetchone()
        assert row is not None
        out[table] = row[0]
    return out


def preset_state(conn: psycopg.Connection[Any], at: datetime, anchor: datetime) -> list[Any]:
    """preset_state_at(at), with backoff_until made relative to the fleet's anchor."""
    rows = conn.execute(
        """
        select
            organization_name, template_name, template_version_name, preset_name, is_active,
            desired, actual, eligible, expired, extraneous, starting, stopping, deleting,
            pending_cancelable, failures, backoff_until - %(anchor)s as backoff_in,
            hard_limited, blocked_reason, creates_planned, schedule_note
        from prebuilds.preset_state_at(%(at)s)
        """,
        {"at": at, "anchor": anchor},
    ).fetchall()
    return rows


def test_tiny_fleet_has_every_situation(conn: psycopg.Connection[Any]) -> None:
    summary = build_fleet(conn, TINY)
    assert summary.scenario == "tiny"
    assert 60 <= summary.live_prebuilds <= 100
    assert summary.presets == TINY.presets
    assert summary.user_workspaces == TINY.user_workspaces
    assert TINY.historical_builds <= summary.historical_builds < TINY.historical_builds + 20
    assert summary.builds == summary.jobs
    assert summary.builds + summary.agents + summary.workspaces < 2_000

    state = conn.execute(
        """
        select
            array_agg(distinct blocked_reason) filter (where blocked_reason is not null),
            max(extraneous), max(expired), max(pending_cancelable), max(starting),
            max(stopping), max(deleting), bool_or(not is_active), bool_or(actual > eligible),
            bool_or(schedule_note is not null)
        from prebuilds.preset_state_at(%s)
        """,
        (summary.anchor,),
    ).fetchone()
    assert state is not None
    reasons, extraneous, expired, cancelable, starting, stopping, deleting = state[:7]
    inactive, not_ready, scheduled = state[7:]
    assert set(reasons) == {"backoff", "hard_limited"}
    assert extraneous > 0
    assert expired > 0
    assert cancelable > 0
    assert starting > 0 and stopping > 0 and deleting > 0
    assert inactive and not_ready and scheduled

    actions = dict(
        conn.execute(
            "select action, count(*) from prebuilds.reconciliation_actions_at(%s) group by 1",
            (summary.anchor,),
        ).fetchall()
    )
    assert set(actions) == {"cancel", "delete", "create", "backoff"}

    # The pointers the trigger maintains: the highest build (and its facts), and the preset of
    # the highest build that names one.
    mismatched = conn.execute(
        """
        select count(*)
        from prebuilds.workspaces as w
        cross join lateral (
            select b.id, b.build_number, b.transition, b.created_at, b.initiator_id, b.job_id
            from prebuilds.workspace_builds as b
            where b.workspace_id = w.id
            order by b.build_number desc
            limit 1
        ) as latest
        left join lateral (
            select b.preset_id
            from prebuilds.workspace_builds as b
            where b.workspace_id = w.id and b.preset_id is not null
            order by b.build_number desc
            limit 1
        ) as named on true
        where w.latest_build_id is distinct from latest.id
           or w.latest_build_number is distinct from latest.build_number
           or w.current_preset_id is distinct from named.preset_id
           or (
               w.latest_build_transition, w.latest_build_created_at,
               w.latest_build_initiator_id, w.latest_build_job_id
           ) is distinct from (
               latest.transition, latest.created_at, latest.initiator_id, latest.job_id
           )
        """
    ).fetchone()
    assert mismatched == (0,)
    assert conn.execute(
        "select count(*) from prebuilds.workspaces where latest_build_id is null"
    ).fetchone() == (0,)


def test_tiny_fleet_is_deterministic(
    conn: psycopg.Connection[Any], server_url: str, template_db: str
) -> None:
    first = build_fleet(conn, TINY)
    with other_database(server_url, template_db) as other:
        second = build_fleet(other, TINY)
        assert second.anchor > first.anchor
        assert [getattr(second, c) for c in COUNT_FIELDS] == [
            getattr(first, c) for c in COUNT_FIELDS
        ]
        assert second.prebuilds_by_state == first.prebuilds_by_state
        # Evaluated at one instant (the schedules follow the wall clock), each fleet's ages
        # measured from its own anchor.
        assert preset_state(other, first.anchor, second.anchor) == preset_state(
            conn, first.anchor, first.anchor
        )
        ids = "select array_agg(id order by id) from prebuilds.presets"
        assert other.execute(ids).fetchone() == conn.execute(ids).fetchone()


def test_load_modes_write_the_same_rows(
    conn: psycopg.Connection[Any], server_url: str, template_db: str
) -> None:
    checked = build_fleet(conn, TINY, load="checked")
    assert checked.load_mode == "checked"
    expected = digests(conn)
    superuser = conn.execute("select current_setting('is_superuser')::bool").fetchone()
    modes = ["trigger_disabled", "replica"] if superuser == (True,) else ["trigger_disabled"]
    for mode in modes:
        with other_database(server_url, template_db) as other:
            summary: FleetSummary = build_fleet(other, TINY, anchor=checked.anchor, load=mode)
            assert summary.load_mode == mode
            assert digests(other) == expected, mode


def test_a_fleet_needs_an_empty_database(conn: psycopg.Connection[Any]) -> None:
    conn.execute("insert into prebuilds.users (username) values ('someone')")
    with pytest.raises(FleetError, match="already holds"):
        build_fleet(conn, TINY)
