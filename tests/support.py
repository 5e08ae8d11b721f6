"""Helpers for the driver tests: run the CLI as a real process, and read pool sizes straight from
the tables (independently of the plan functions under test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from prebuilds.dbsource import REPO_ROOT

CLI = [sys.executable, "-m", "prebuilds.cli"]


def cli_env(url: str | None) -> dict[str, str]:
    """The test's environment with DATABASE_URL set to ``url`` (or removed), and no PG* defaults
    that could make a broken URL work anyway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.pop("DATABASE_URL", None)
    if url is not None:
        env["DATABASE_URL"] = url
    return env


def start_cli(*args: str, url: str | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=cli_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(*args: str, url: str | None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=cli_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Pool:
    """One active preset's pool, computed from the raw tables (not from preset_state)."""

    preset_id: UUID
    desired: int
    running: int
    starting: int
    ready: int


# The latest build of every workspace, the preset it counts in (its latest build that names one)
# and, for active presets with a pool, how many system-owned workspaces are running / starting.
POOLS_SQL = """
with latest as (
    select distinct on (b.workspace_id)
        b.workspace_id, b.transition, b.initiator_id, b.job_id, j.status
    from prebuilds.workspace_builds as b
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    order by b.workspace_id, b.build_number desc
),
counted_in as (
    select distinct on (b.workspace_id) b.workspace_id, b.preset_id
    from prebuilds.workspace_builds as b
    where b.preset_id is not null
    order by b.workspace_id, b.build_number desc
),
members as (
    select c.preset_id, l.*
    from counted_in as c
    join prebuilds.workspaces as w on w.id = c.workspace_id
    join latest as l on l.workspace_id = w.id
    where w.owner_id = prebuilds.system_user_id() and not w.deleted
)
select
    p.id,
    p.desired_instances,
    count(m.workspace_id) filter (where m.transition = 'start' and m.status = 'succeeded'),
    count(m.workspace_id) filter (
        where m.transition = 'start' and m.status in ('pending', 'running')
        and m.initiator_id = prebuilds.system_user_id()
    ),
    count(m.workspace_id) filter (
        where m.transition = 'start' and m.status = 'succeeded' and exists (
            select from prebuilds.workspace_agents as a
            where a.job_id = m.job_id and a.lifecycle_state = 'ready' and not a.deleted
        )
    )
from prebuilds.presets as p
join prebuilds.templates as t on t.active_version_id = p.template_version_id
left join members as m on m.preset_id = p.id
where not t.deleted and not t.deprecated and p.desired_instances is not null
group by p.id, p.desired_instances
order by p.id
"""


def active_pools(conn: psycopg.Connection[Any]) -> dict[UUID, Pool]:
    rows = conn.execute(POOLS_SQL).fetchall()
    return {r[0]: Pool(r[0], r[1], r[2], r[3], r[4]) for r in rows}


def overfull(conn: psycopg.Connection[Any]) -> list[Pool]:
    """Active pools holding more running + starting prebuilds than desired."""
    return [p for p in active_pools(conn).values() if p.running + p.starting > p.desired]


def scalar(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def system_user_id(conn: psycopg.Connection[Any]) -> UUID:
    value: UUID = scalar(conn, "select prebuilds.system_user_id()")
    return value


def active_preset(conn: psycopg.Connection[Any], template: str, desired: int) -> UUID:
    """A preset of a new template's active version, with a pool of ``desired`` (the SQL test
    vocabulary's ``fixture.active_preset``)."""
    value: UUID = scalar(conn, "select fixture.active_preset(%s, %s)", (template, desired))
    return value


def wait_until(predicate: Any, what: str, timeout: float = 20, poll: float = 0.01) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


# Inserting a workspace of a template named in public.slow_templates sleeps that long first.
SLOW_PRESETS = """
create table public.slow_templates (name text primary key, seconds float8 not null);
create function public.slow_preset() returns trigger language plpgsql as $$
begin
    perform pg_sleep(coalesce(
        (select s.seconds from public.slow_templates as s
         join prebuilds.templates as t on t.name = s.name
         where t.id = new.template_id),
        0));
    return new;
end $$;
create trigger slow_preset before insert on prebuilds.workspaces
for each row execute function public.slow_preset();
"""


def slow(conn: psycopg.Connection[Any], template: str, seconds: float) -> None:
    """Make inserting a workspace of ``template`` sleep ``seconds`` (after SLOW_PRESETS)."""
    conn.execute("insert into public.slow_templates values (%s, %s)", (template, seconds))


# Inserting a workspace of a template named in public.refused_templates fails, naming it.
REFUSED_PRESETS = """
create table public.refused_templates (name text primary key);
create function public.refuse() returns trigger language plpgsql as $$
declare
    v_name text;
begin
    select r.name into v_name
    from public.refused_templates as r
    join prebuilds.templates as t on t.name = r.name
    where t.id = new.template_id;
    if found then
        raise exception 'test trigger: refusing template %', v_name;
    end if;
    return new;
end $$;
create trigger refuse before insert on prebuilds.workspaces
for each row execute function public.refuse();
"""


def refuse(conn: psycopg.Connection[Any], template: str) -> None:
    """Make inserting a workspace of ``template`` fail (after REFUSED_PRESETS)."""
    conn.execute("insert into public.refused_templates values (%s)", (template,))
