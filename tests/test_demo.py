"""`prebuilds demo` on a database of the test server (issue 3, section 3): it converges, prints
plain lines when piped, and only ever seeds an empty database."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import threading
from collections.abc import Iterator

import psycopg
import pytest

from prebuilds import migrations
from prebuilds.dbsource import REPO_ROOT
from prebuilds.report import STATUS_COLUMNS
from tests.fixtures import clone_database, drop_database, with_database
from tests.support import CLI, cli_env, run_cli, start_cli

Proc = subprocess.CompletedProcess[str]

STATE_HEADER = [header for _, header in STATUS_COLUMNS]


@pytest.fixture
def empty_db_urls(server_url: str) -> Iterator[list[str]]:
    """Three empty databases: blank copies of template0, the second migrated to head."""
    names = [clone_database(server_url, "template0") for _ in range(3)]
    urls = [with_database(server_url, name) for name in names]
    migrations.upgrade(urls[1])
    yield urls
    for name in names:
        drop_database(server_url, name)


def final_table(stdout: str) -> list[dict[str, str]]:
    """The rows of the state table printed last, cut at the columns of its dashed rule."""
    _, table = stdout.split("\nfinal prebuilds.preset_state:\n")
    header, rule, *rows = table.rstrip().splitlines()
    assert header.split() == STATE_HEADER
    assert set(rule.replace(" ", "")) == {"-"}
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]
    return [
        {
            name: row[start:end].strip()
            for name, (start, end) in zip(STATE_HEADER, spans, strict=True)
        }
        for row in rows
    ]


def check_converged(proc: Proc, url: str) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "\x1b" not in out  # piped: plain lines, no cursor movement or colours
    lines = out.splitlines()
    assert lines[0].startswith("using DATABASE_URL=postgresql://")
    assert any(line.startswith("seeded 3 organizations") for line in lines)
    assert any(line.startswith("cycle 1: run 1, ") for line in lines)
    assert any(line.startswith("  provisioner: ") for line in lines)
    converged = [line for line in lines if line.startswith("converged after ")]
    assert len(converged) == 1, out
    rows = final_table(out)
    assert len(rows) == 7
    # Every healthy pool is full and ready; the flaky one stopped at its hard limit.
    for row in rows:
        if (row["ORG"], row["TEMPLATE"]) == ("globex", "flaky"):
            assert row["BLOCKED"] == "hard_limited", row
        else:
            assert row["RUNNING"] == row["ELIGIBLE"] == row["DESIRED"], row
            assert row["BLOCKED"] == "", row  # nothing held back
    with psycopg.connect(url) as conn:
        statuses = conn.execute(
            "select status, count(*) from prebuilds.reconciliation_runs group by 1"
        ).fetchall()
    assert statuses == [("succeeded", len([ln for ln in lines if ln.startswith("cycle ")]))]


class OnATerminal:
    """``prebuilds demo`` with its stdout on a pseudo-terminal; the output is read as it comes."""

    def __init__(self, url: str) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [*CLI, "demo"],
            cwd=REPO_ROOT,
            env={**cli_env(url), "TERM": "xterm"},
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(slave)
        self.master = master
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            self.chunks.append(data)

    def result(self) -> Proc:
        _, err = self.proc.communicate(timeout=120)
        self.reader.join(timeout=10)
        os.close(self.master)
        out = b"".join(self.chunks).decode().replace("\r\n", "\n")
        return Proc(self.proc.args, self.proc.returncode, out, err)


def test_demo_converges_on_an_empty_database_and_refuses_to_seed_twice(
    empty_db_urls: list[str],
) -> None:
    blank, migrated, for_terminal = empty_db_urls
    # All at once: the demo spends most of its time waiting for backoffs to end.
    terminal = OnATerminal(for_terminal)
    piped = [start_cli("demo", url=url) for url in (blank, migrated)]
    for demo, url in zip(piped, (blank, migrated), strict=True):
        out, err = demo.communicate(timeout=120)
        check_converged(Proc(demo.args, demo.returncode, out, err), url)

    # On a terminal: the screen is cleared and the table redrawn after every cycle, then the
    # final table is printed as plain text below the last redraw.
    live = terminal.result()
    assert live.returncode == 0, live.stdout + live.stderr
    redraws = live.stdout.split("\x1b[2J\x1b[H")
    assert len(redraws) >= 3, live.stdout
    assert "cycle 1: run 1" in redraws[1]
    for redraw in redraws[1:-1]:
        assert any(line.split() == STATE_HEADER for line in redraw.splitlines()), redraw
    last = redraws[-1]
    assert "converged after " in last
    assert "\x1b" not in last
    final_table(last)
    assert not any(line.startswith("    #") for line in live.stdout.splitlines())

    again = run_cli("demo", url=empty_db_urls[0], timeout=60)

    assert again.returncode == 2, again.stdout + again.stderr
    (message,) = again.stderr.splitlines()
    assert message.startswith("prebuilds: cannot run: the database already holds organizations")
    assert "the demo only seeds an empty database" in message


def test_demo_checks_the_database_before_touching_it(empty_db_urls: list[str]) -> None:
    """A database with organizations (at an older revision) or with tables of its own is refused
    before anything is migrated or seeded (issue 8)."""
    older, _, foreign = empty_db_urls
    migrations.upgrade(older, "0003")
    with psycopg.connect(older, autocommit=True) as conn:
        conn.execute("insert into prebuilds.organizations (name) values ('real-customer')")
    with psycopg.connect(foreign, autocommit=True) as conn:
        conn.execute("create table public.invoices (id int primary key)")

    for url, expected in (
        (older, "the database already holds organizations"),
        (foreign, "the database holds 1 tables of its own"),
    ):
        proc = run_cli("demo", url=url, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        (message,) = proc.stderr.splitlines()
        assert message.startswith(f"prebuilds: cannot run: {expected}"), message
        assert message.endswith("Nothing changed"), message
    with psycopg.connect(older) as conn:
        assert conn.execute("select version_num from alembic_version").fetchone() == ("0003",)
    with psycopg.connect(foreign) as conn:
        assert conn.execute("select to_regnamespace('prebuilds')").fetchone() == (None,)
