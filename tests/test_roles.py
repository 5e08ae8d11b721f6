"""SPEC 7's roles: a login role that is a member of one group role only can do that role's job,
and is refused the rest.

Each test creates its own login roles (roles are cluster-wide: unique names, dropped at the end)
and connects as them over the test server's Unix socket, where the test servers trust the user
name. The driver runs as a real process (``prebuilds reconcile``, ``status``, …) with that URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from prebuilds import migrations
from tests.fixtures import clone_database, drop_database, with_database
from tests.support import run_cli, scalar

Conn = psycopg.Connection[Any]

GROUPS = ("prebuilds_reader", "prebuilds_reconciler", "prebuilds_platform", "prebuilds_provisioner")
READ = (
    "preset_state_at(timestamp with time zone)",
    "reconciliation_actions_at(timestamp with time zone)",
    "next_change_at(timestamp with time zone)",
)

#: Every function each group role may call, and nothing else (SPEC 7).
FUNCTIONS = {
    "prebuilds_reader": set(READ),
    "prebuilds_reconciler": {
        *READ,
        "take_reconcile_lock(bigint)",
        "start_run(bigint,integer,integer,text,integer,integer,integer,double precision)",
        "apply_action(bigint,integer,text,uuid,uuid,text,integer)",
        "finish_run(bigint,text,integer,text)",
        "log_actions(bigint,jsonb)",
        "prune_runs()",
        "prune_claim_stats()",
        "wait_for_claims(integer)",
        "cleanup_prebuilds(text[],text,text,text,timestamp with time zone,integer,boolean)",
    },
    "prebuilds_platform": {
        *READ,
        "publish_template_version(text,text,text,jsonb,boolean)",
        "configure_preset(uuid,jsonb)",
        "claim_prebuild(uuid,uuid,text)",
        "invalidate_presets(text,text,text)",
        "deprecate_template(text,text,boolean)",
        "delete_template(text,text)",
        "register_user(text)",
        "set_reconciliation_paused(boolean)",
        "resume_preset(uuid)",
    },
    "prebuilds_provisioner": {
        "acquire_job(text)",
        "complete_job(uuid,text)",
        "heartbeat_job(uuid)",
        "report_agent_lifecycle(uuid,text,text)",
    },
}

#: What the reader, the reconciler and the platform may read (the provisioner reads nothing).
READABLE = {
    "organizations",
    "templates",
    "template_versions",
    "presets",
    "preset_schedules",
    "claim_stats",
    "settings",
    "reconciliation_runs",
    "reconciliation_action_log",
    "preset_counters",
    "preset_state",
    "reconciliation_actions",
    "prebuild_failures",
}

PRESETS = [
    {"name": "small", "parameters": {"cpu": 2}, "desired_instances": 2},
    {"name": "flaky", "parameters": {"cpu": 1}, "desired_instances": 1},
]


def as_user(url: str, user: str) -> str:
    """The same server and database, logging in as ``user`` (no password: trust on the socket)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
def member(server_url: str, db_url: str) -> Iterator[Callable[[str], str]]:
    """``member(group)``: a new login role that is a member of ``group`` only; its URL to the
    test's database. Dropped at the end of the test."""
    created: list[str] = []

    def make(group: str) -> str:
        name = f"r_{group.removeprefix('prebuilds_')}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
            admin.execute(
                sql.SQL("grant {} to {}").format(sql.Identifier(group), sql.Identifier(name))
            )
        created.append(name)
        return as_user(db_url, name)

    yield make
    with psycopg.connect(server_url, autocommit=True) as admin:
        for name in created:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                (name,),
            )
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def denied(conn: Conn, statement: LiteralString | sql.Composed, params: Any = None) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        conn.execute(statement, params)


def publish(conn: Conn, presets: list[dict[str, Any]] = PRESETS, version: str = "v1") -> Any:
    return scalar(
        conn,
        "select prebuilds.publish_template_version('acme', 'web', %s, %s)",
        (version, Jsonb(presets)),
    )


def preset_id(conn: Conn, name: str) -> Any:
    return scalar(
        conn,
        """
        select p.id from prebuilds.presets as p
        join prebuilds.templates as t on t.active_version_id = p.template_version_id
        where t.name = 'web' and not t.deleted and p.name = %s
        """,
        (name,),
    )


def tables(conn: Conn) -> list[str]:
    rows = conn.execute(
        "select relname from pg_class where relnamespace = 'prebuilds'::regnamespace "
        "and relkind = 'r' order by relname"
    ).fetchall()
    return [r[0] for r in rows]


def test_each_group_role_may_call_exactly_its_functions(conn: Conn) -> None:
    for group, expected in FUNCTIONS.items():
        rows = conn.execute(
            """
            select replace(substring(p.oid::regprocedure::text from '^prebuilds\\.(.*)$'), ', ',
                           ',')
            from pg_proc as p
            where p.pronamespace = 'prebuilds'::regnamespace
              and has_function_privilege(%s, p.oid, 'execute')
            """,
            (group,),
        ).fetchall()
        assert {r[0] for r in rows} == {e.replace(", ", ",") for e in expected}, group


def test_no_function_is_left_to_public(conn: Conn) -> None:
    rows = conn.execute(
        """
        select p.oid::regprocedure::text
        from pg_proc as p cross join lateral aclexplode(coalesce(p.proacl, acldefault('f',
            p.proowner))) as a
        where p.pronamespace = 'prebuilds'::regnamespace and a.grantee = 0
        """
    ).fetchall()
    assert rows == [], "revoke execute … from public (db/grants/public.sql runs last)"


def test_functions_the_roles_call_are_security_definer_with_an_empty_search_path(
    conn: Conn,
) -> None:
    granted = set().union(*FUNCTIONS.values())
    rows = conn.execute(
        """
        select replace(substring(p.oid::regprocedure::text from '^prebuilds\\.(.*)$'), ', ', ','),
               p.prosecdef, coalesce(p.proconfig, '{}')
        from pg_proc as p where p.pronamespace = 'prebuilds'::regnamespace
        """
    ).fetchall()
    for signature, definer, config in rows:
        if signature in granted:
            assert definer, signature
            assert 'search_path=""' in config, (signature, config)


def test_group_roles_read_only_what_they_need_and_write_no_table(conn: Conn) -> None:
    relations = [
        r[0]
        for r in conn.execute(
            "select relname from pg_class where relnamespace = 'prebuilds'::regnamespace "
            "and relkind in ('r', 'v')"
        ).fetchall()
    ]
    for group in GROUPS:
        for relation in relations:
            privileges = scalar(
                conn,
                """
                select array_agg(p order by p) filter (
                    where has_table_privilege(%s, ('prebuilds.' || %s)::regclass, p)
                )
                from unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                  'REFERENCES', 'TRIGGER']) as p
                """,
                (group, relation),
            )
            readable = group != "prebuilds_provisioner" and relation in READABLE
            assert privileges == (["SELECT"] if readable else None), (group, relation)
        assert scalar(conn, "select has_table_privilege(%s, 'alembic_version', 'select')", (group,))


def test_nobody_but_the_owner_writes_a_table(conn: Conn, member: Callable[[str], str]) -> None:
    for group in GROUPS:
        with psycopg.connect(member(group), autocommit=True) as c:
            for table in tables(conn):
                name = sql.Identifier("prebuilds", table)
                denied(c, sql.SQL("insert into {} default values").format(name))
                denied(c, sql.SQL("delete from {}").format(name))
                denied(c, sql.SQL("truncate {}").format(name))
                column = sql.Identifier(
                    scalar(
                        conn,
                        "select attname from pg_attribute where attrelid = %s::regclass "
                        "and attnum > 0 and attidentity = '' and attgenerated = '' "
                        "order by attnum limit 1",
                        (f"prebuilds.{table}",),
                    )
                )
                denied(c, sql.SQL("update {} set {} = {}").format(name, column, column))


def test_the_reconciler_runs_whole_cycles_alone(
    conn: Conn, db_url: str, member: Callable[[str], str], tmp_path: Path
) -> None:
    url = member("prebuilds_reconciler")
    publish(conn)
    flaky = preset_id(conn, "flaky")
    # flaky failed just now: its create is held back, noted in the log (log_actions).
    conn.execute("select fixture.prebuild(%s, now() - interval '5 seconds', 'failed')", (flaky,))
    # A run past settings.run_retention, for prune_runs.
    conn.execute(
        "insert into prebuilds.reconciliation_runs (started_at, status) "
        "values (now() - interval '400 days', 'succeeded')"
    )
    metrics = tmp_path / "prebuilds.prom"

    # small's row is locked by someone else: its creates time out and fail (log_actions again).
    with psycopg.connect(db_url) as locker:
        locker.execute(
            "select from prebuilds.presets where id = %s for update", (preset_id(conn, "small"),)
        )
        proc = run_cli(
            "reconcile", "--lock-timeout", "100ms", "--metrics-file", str(metrics), url=url
        )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "permission denied" not in proc.stdout + proc.stderr
    logged = conn.execute(
        "select outcome, action, count(*)::int from prebuilds.reconciliation_action_log "
        "group by 1, 2 order by 1, 2"
    ).fetchall()
    assert ("failed", "create", 2) in logged and ("noted", "backoff", 1) in logged, logged
    assert (
        scalar(
            conn,
            "select count(*)::int from prebuilds.reconciliation_runs where started_at < "
            "now() - interval '1 day'",
        )
        == 0
    ), "prune_runs did not prune"
    assert "prebuilds_" in metrics.read_text()

    proc = run_cli("reconcile", "--metrics-file", str(metrics), url=url)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    runs = conn.execute(
        "select status, actions_applied, actions_failed from prebuilds.reconciliation_runs "
        "order by id"
    ).fetchall()
    assert runs == [("failed", 0, 2), ("succeeded", 2, 0)], runs
    for command in (["status"], ["plan"], ["history"], ["reconcile", "--dry-run"]):
        proc = run_cli(*command, url=url)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    assert "failed" in run_cli("history", url=url).stdout

    with psycopg.connect(url, autocommit=True) as c:
        denied(c, "select prebuilds.claim_prebuild(%s, %s, 'x')", (flaky, uuid.uuid4()))
        denied(c, "select prebuilds.publish_template_version('a', 'b', 'c', '[]')")
        denied(c, "select * from prebuilds.acquire_job('w')")
        denied(c, "select prebuilds.set_reconciliation_paused(true)")
        denied(c, "select prebuilds.create_prebuild(%s)", (flaky,))
        denied(c, "select * from prebuilds.workspaces")
    proc = run_cli("pause", url=url)
    assert proc.returncode != 0 and "permission denied" in proc.stderr, proc.stderr


def test_the_platform_publishes_configures_claims_and_steers(
    conn: Conn, member: Callable[[str], str]
) -> None:
    url = member("prebuilds_platform")
    with psycopg.connect(url, autocommit=True) as c:
        alice = scalar(c, "select prebuilds.register_user('alice')")
        assert scalar(c, "select prebuilds.register_user('alice')") == alice
        version = publish(c)
        assert publish(c) == version
        small = preset_id(c, "small")
        c.execute(
            "select prebuilds.configure_preset(%s, %s)",
            (small, Jsonb({"desired_instances": 1, "ttl_seconds": 3600})),
        )
        conn.execute("select fixture.prebuild(%s, now() - interval '5 minutes')", (small,))
        claimed = scalar(c, "select prebuilds.claim_prebuild(%s, %s, 'alice-ws')", (small, alice))
        assert claimed is not None
        assert scalar(c, "select count(*)::int from prebuilds.preset_state") >= 1
        assert scalar(c, "select prebuilds.invalidate_presets('acme', 'web')") == 2
        assert scalar(c, "select prebuilds.resume_preset(%s)", (small,)) is True
        assert scalar(c, "select prebuilds.set_reconciliation_paused(true)") is True
        assert scalar(c, "select prebuilds.set_reconciliation_paused(false)") is False

    for command in (
        ["pause"],
        ["resume"],
        ["invalidate", "--template", "web"],
        ["resume-preset", "--template", "web", "--preset", "small"],
        ["status"],
    ):
        proc = run_cli(*command, url=url)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("select prebuilds.deprecate_template('acme', 'web')")
        assert scalar(c, "select prebuilds.delete_template('acme', 'web')") is True
        denied(c, "select * from prebuilds.take_reconcile_lock(1)")
        denied(c, "select prebuilds.apply_action(1, 1, 'create', %s, null, 'x', null)", (small,))
        denied(c, "select prebuilds.log_actions(1, '[]')")
        denied(c, "select prebuilds.prune_runs()")
        denied(c, "select * from prebuilds.acquire_job('w')")
        denied(c, "select prebuilds.complete_job(%s)", (uuid.uuid4(),))
        denied(c, "select prebuilds.create_prebuild(%s)", (small,))
        denied(c, "update prebuilds.presets set desired_instances = 5")
        denied(c, "update prebuilds.settings set reconciliation_paused = true")
        denied(c, "select * from prebuilds.workspaces")
    assert scalar(conn, "select owner_id from prebuilds.workspaces where id = %s", (claimed,)) == (
        alice
    )


def test_the_provisioner_acquires_and_completes_jobs_only(
    conn: Conn, member: Callable[[str], str]
) -> None:
    url = member("prebuilds_provisioner")
    publish(conn)
    small = preset_id(conn, "small")
    workspace = scalar(conn, "select prebuilds.create_prebuild(%s)", (small,))
    with psycopg.connect(url, autocommit=True) as c:
        job = c.execute("select job_id, workspace_id from prebuilds.acquire_job('w1')").fetchone()
        assert job is not None and job[1] == workspace
        assert scalar(c, "select prebuilds.report_agent_lifecycle(%s, 'main', 'ready')", (job[0],))
        assert scalar(c, "select prebuilds.complete_job(%s)", (job[0],)) is True
        user = scalar(conn, "select prebuilds.register_user('bob')")
        denied(c, "select prebuilds.claim_prebuild(%s, %s, 'bob-ws')", (small, user))
        denied(c, "select prebuilds.publish_template_version('a', 'b', 'c', '[]')")
        denied(c, "select prebuilds.register_user('eve')")
        denied(c, "select * from prebuilds.take_reconcile_lock(1)")
        denied(c, "select * from prebuilds.presets")
        denied(c, "select * from prebuilds.preset_state")
        denied(c, "update prebuilds.provisioner_jobs set error = 'x'")
    assert scalar(
        conn, "select status from prebuilds.provisioner_jobs where id = %s", (job[0],)
    ) == ("succeeded")

    # `prebuilds provision` itself, as a member of prebuilds_provisioner alone: it acquires,
    # heartbeats while the command runs, reports the agent and completes.
    second = scalar(conn, "select prebuilds.create_prebuild(%s)", (small,))
    proc = run_cli(
        "provision", "--once", "--heartbeat", "100ms", "--exec", "sleep 0.5", url=url, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = conn.execute(
        "select j.status, j.updated_at > j.started_at from prebuilds.workspaces as w "
        "join prebuilds.workspace_builds as b on b.id = w.latest_build_id "
        "join prebuilds.provisioner_jobs as j on j.id = b.job_id where w.id = %s",
        (second,),
    ).fetchone()
    assert row == ("succeeded", True)


def test_the_reader_reads_and_writes_nothing(
    conn: Conn, db_url: str, member: Callable[[str], str]
) -> None:
    url = member("prebuilds_reader")
    publish(conn)
    small = preset_id(conn, "small")
    assert run_cli("reconcile", url=db_url).returncode == 0
    with psycopg.connect(url, autocommit=True) as c:
        assert scalar(c, "select count(*)::int from prebuilds.preset_state") == 2
        assert scalar(c, "select count(*)::int from prebuilds.reconciliation_actions") == 0
        assert scalar(c, "select count(*)::int from prebuilds.prebuild_failures") == 0
        denied(c, "select * from prebuilds.cleanup_prebuilds(array['failed'])")
        assert scalar(c, "select count(*)::int from prebuilds.reconciliation_runs") == 1
        assert scalar(c, "select count(*)::int from prebuilds.reconciliation_action_log") == 3
        assert scalar(c, "select version_num from alembic_version") == migrations.EXPECTED_REVISION
        denied(c, "select prebuilds.set_reconciliation_paused(true)")
        denied(c, "select prebuilds.publish_template_version('a', 'b', 'c', '[]')")
        denied(c, "select prebuilds.configure_preset(%s, '{}')", (small,))
        denied(c, "select prebuilds.invalidate_presets('acme', 'web')")
        denied(c, "select prebuilds.resume_preset(%s)", (small,))
        denied(c, "select * from prebuilds.take_reconcile_lock(1)")
        denied(c, "select prebuilds.prune_runs()")
        denied(c, "select * from prebuilds.acquire_job('w')")
        denied(c, "select * from prebuilds.workspaces")
    for command in (["status"], ["plan"], ["history"]):
        proc = run_cli(*command, url=url)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    for command in (["pause"], ["invalidate", "--template", "web"], ["reconcile"]):
        proc = run_cli(*command, url=url)
        assert proc.returncode != 0 and "permission denied" in proc.stderr, (command, proc.stderr)


def test_a_downgrade_leaves_the_roles_holding_nothing(server_url: str) -> None:
    name = clone_database(server_url, "template0")
    try:
        url = with_database(server_url, name)
        migrations.upgrade(url)
        migrations.downgrade(url, "0004")
        with psycopg.connect(url) as c:
            held = c.execute(
                """
                select r.rolname, count(*)::int
                from pg_shdepend as d join pg_roles as r on r.oid = d.refobjid
                where d.dbid = (select oid from pg_database where datname = current_database())
                  and r.rolname = any(%s)
                group by r.rolname
                """,
                (list(GROUPS),),
            ).fetchall()
            exist = scalar(
                c, "select count(*)::int from pg_roles where rolname = any(%s)", (list(GROUPS),)
            )
        assert held == [], "the downgrade must revoke everything granted to the roles"
        assert exist == 4, "the roles are cluster-wide: the downgrade keeps them"
    finally:
        drop_database(server_url, name)
