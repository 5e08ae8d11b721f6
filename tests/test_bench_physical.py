"""The apply benchmark's physical reference (bench/harness.sql: physical_create) writes what an
applied create writes: the same rows in the same tables with the same values, apart from ids,
names and times. A reference that wrote less would flatter itself against the driver."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from bench.harness import query_bench
from prebuilds import cycle
from tests.support import active_preset, scalar

Conn = psycopg.Connection[Any]

#: Every row a create of ``%(preset)s`` leaves, per table, as JSON without the columns that
#: differ between any two creates (ids, names, times, the run and the backend's counter shard);
#: the references between the rows are checked as booleans instead.
FOOTPRINT = """
select 'workspace', to_jsonb(w) - '{id,name,created_at,latest_build_id,current_preset_id,
    template_id,organization_id,latest_build_created_at,latest_build_job_id}'::text[]
    || jsonb_build_object(
        'named_prebuild', w.name ~ '^prebuild-[0-9a-f]{12}$',
        'points_at_its_build', w.latest_build_id = b.id,
        'copies_its_build', (w.latest_build_created_at, w.latest_build_job_id)
            = (b.created_at, b.job_id),
        'in_the_preset', w.current_preset_id = p.id,
        'of_the_template', w.template_id = v.template_id,
        'of_the_organization', w.organization_id = t.organization_id)
from prebuilds.workspaces as w
join prebuilds.workspace_builds as b on b.workspace_id = w.id
join prebuilds.presets as p on p.id = b.preset_id
join prebuilds.template_versions as v on v.id = p.template_version_id
join prebuilds.templates as t on t.id = v.template_id
where p.id = %(preset)s
union all
select 'build', to_jsonb(b) - '{id,workspace_id,job_id,created_at,preset_id,
    template_version_id}'::text[]
    || jsonb_build_object(
        'version_of_the_preset', b.template_version_id = p.template_version_id)
from prebuilds.workspace_builds as b
join prebuilds.presets as p on p.id = b.preset_id
where p.id = %(preset)s
union all
select 'job', to_jsonb(j) - '{id,created_at}'::text[]
from prebuilds.provisioner_jobs as j
join prebuilds.workspace_builds as b on b.job_id = j.id
where b.preset_id = %(preset)s
union all
select 'counter', jsonb_build_object(
    'rows', count(*), 'created', sum(c.created), 'failed', sum(c.failed),
    'claimed', sum(c.claimed))
from prebuilds.preset_counters as c
where c.preset_id = %(preset)s
union all
select 'log', to_jsonb(l) - '{run_id,seq,preset_id,workspace_id,reason,started_at,
    finished_at}'::text[]
    || jsonb_build_object(
        'of_the_workspace', l.workspace_id = (
            select w.id from prebuilds.workspaces as w where w.current_preset_id = l.preset_id),
        'started', l.started_at is not null)
from prebuilds.reconciliation_action_log as l
where l.preset_id = %(preset)s and l.action = 'create'
order by 1, 2
"""


def footprint(conn: Conn, preset: UUID) -> list[tuple[str, Any]]:
    return [(r[0], r[1]) for r in conn.execute(FOOTPRINT, {"preset": preset})]


def test_the_physical_create_writes_what_an_applied_create_writes(conn: Conn, db_url: str) -> None:
    ours = active_preset(conn, "ours", 1)
    result = cycle.run_cycle(db_url)
    assert result.tally("applied") == 1

    physical = active_preset(conn, "physical", 1)
    run_id = scalar(conn, query_bench("physical_run"), {"creates": 1})
    conn.execute(
        query_bench("physical_create"), {"preset_id": physical, "run_id": run_id, "seq": 1}
    )

    expected = footprint(conn, ours)
    assert [table for table, _ in expected] == ["build", "counter", "job", "log", "workspace"]
    assert footprint(conn, physical) == expected
    # No other row: the two creates added the same number of rows to every table they touch.
    counts = scalar(
        conn,
        """
        select jsonb_build_object(
            'workspaces', (select count(*) from prebuilds.workspaces),
            'builds', (select count(*) from prebuilds.workspace_builds),
            'jobs', (select count(*) from prebuilds.provisioner_jobs),
            'logged', (select count(*) from prebuilds.reconciliation_action_log))
        """,
    )
    assert counts == {"workspaces": 2, "builds": 2, "jobs": 2, "logged": 2}
