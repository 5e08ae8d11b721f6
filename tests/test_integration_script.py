"""The README's "Integrating your platform" lifecycle, run verbatim: ``docs/integrate.sql`` with
psql on an empty database, after ``prebuilds migrate``, while ``prebuilds run`` reconciles as a
member of prebuilds_reconciler only. Ends with alice owning a workspace built as a prebuild.
"""

from __future__ import annotations

import glob
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from prebuilds.dbsource import REPO_ROOT
from tests.fixtures import clone_database, drop_database, with_database
from tests.support import cli_env, run_cli, start_cli
from tests.test_roles import as_user

SCRIPT = REPO_ROOT / "docs" / "integrate.sql"


def psql() -> str:
    found = shutil.which("psql") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), reverse=True)), None
    )
    if found is None:
        pytest.fail(
            "psql is needed to run docs/integrate.sql as the README shows it: "
            "apt-get install postgresql-client (or postgresql-15)",
            pytrace=False,
        )
    return found


def test_the_integration_script_runs_verbatim(server_url: str) -> None:
    name = clone_database(server_url, "template0")  # empty: no schema at all
    url = with_database(server_url, name)
    reconciler = f"r_integrate_{uuid.uuid4().hex[:10]}"
    loop: subprocess.Popen[str] | None = None
    try:
        proc = run_cli("migrate", url=url)
        assert proc.returncode == 0, proc.stderr
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("create role {} login").format(sql.Identifier(reconciler)))
            admin.execute(
                sql.SQL("grant prebuilds_reconciler to {}").format(sql.Identifier(reconciler))
            )
        loop = start_cli("run", "--interval", "200ms", url=as_user(url, reconciler))

        result = subprocess.run(
            [psql(), "-X", "-v", "ON_ERROR_STOP=1", "-f", str(SCRIPT), url],
            env=cli_env(None),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "built" in result.stderr  # the provisioner's notices

        with psycopg.connect(url) as conn:
            owned = conn.execute(
                """
                select u.username, w.name, b.transition, b.build_number
                from prebuilds.workspaces as w
                join prebuilds.users as u on u.id = w.owner_id
                join prebuilds.workspace_builds as b on b.id = w.latest_build_id
                where not u.is_system
                """
            ).fetchall()
            runs = conn.execute(
                "select count(*) from prebuilds.reconciliation_runs where actions_applied > 0"
            ).fetchone()
        assert owned == [("alice", "alice-python", "start", 2)], owned
        assert runs is not None and runs[0] >= 1, "the reconciler (a role member) applied nothing"
    finally:
        if loop is not None:
            loop.send_signal(signal.SIGTERM)
            out, err = loop.communicate(timeout=30)
            assert loop.returncode == 0, (out, err)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                (reconciler,),
            )
            admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(reconciler)))
        drop_database(server_url, name)


def test_the_script_is_sql_only() -> None:
    """No psql meta-commands: a platform can run it with any client, statement by statement."""
    text = Path(SCRIPT).read_text()
    assert not [line for line in text.splitlines() if line.lstrip().startswith("\\")]


def test_the_readme_shows_the_script_that_runs() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("<!-- docs/integrate.sql -->\n```sql\n", 1)[1].split("```\n", 1)[0]
    assert block == SCRIPT.read_text().rstrip() + "\n"
