"""Operator fixes from the adoption trial (issue 8, item 5): blocked pools are named by `plan`
and by a cycle's summary, `history` names presets, and a long `reconcile` on a terminal shows
its progress (and nothing of it when piped)."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from typing import Any

import psycopg

from prebuilds.dbsource import REPO_ROOT
from tests.support import CLI, cli_env, run_cli
from tests.support import active_preset as preset

Conn = psycopg.Connection[Any]


def hard_limited(conn: Conn, template: str) -> None:
    broken = preset(conn, template, 1)
    for minutes in (3, 2, 1):
        conn.execute(
            "select fixture.prebuild(%s, now() - make_interval(mins => %s), 'failed')",
            (broken, minutes),
        )


def test_plan_and_summary_name_the_pools_held_back(conn: Conn, db_url: str) -> None:
    hard_limited(conn, "broken")
    plan = run_cli("plan", url=db_url)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.startswith("nothing to do"), plan.stdout
    assert "pools held back" in plan.stdout
    assert "acme/broken@v1/default" in plan.stdout and "hard_limited" in plan.stdout

    cycle = run_cli("reconcile", url=db_url)
    assert cycle.returncode == 0, cycle.stderr
    assert (
        "1 pools held back: acme/broken@v1/default hard_limited (see `prebuilds plan`)"
        in cycle.stdout
    ), cycle.stdout


def test_history_names_presets(conn: Conn, db_url: str) -> None:
    preset(conn, "web", 1)
    conn.execute(
        "create function public.refuse() returns trigger language plpgsql as "
        "$$ begin raise exception 'disk full'; end $$;"
        "create trigger refuse before insert on prebuilds.workspaces "
        "for each row execute function public.refuse()"
    )
    assert run_cli("reconcile", url=db_url).returncode == 1
    history = run_cli("history", url=db_url)
    assert history.returncode == 0, history.stderr
    failed = history.stdout.split("failed actions:")[1]
    assert "acme/web@v1/default" in failed and "disk full" in failed, history.stdout


def test_reconcile_shows_progress_on_a_terminal_only(conn: Conn, db_url: str) -> None:
    preset(conn, "big", 300)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "reconcile"],
        cwd=REPO_ROOT,
        env={**cli_env(db_url), "TERM": "xterm"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    terminal = b"".join(chunks).decode()
    assert proc.returncode == 0, out + terminal
    assert "applying: 300 of 300 actions" in terminal, terminal
    assert terminal.endswith("\r\x1b[K"), repr(terminal[-40:])  # erased at the end
    assert "applied 0 cancel, 0 delete, 300 create" in out

    # Piped: no progress at all.
    preset(conn, "more", 5)
    piped = run_cli("reconcile", url=db_url)
    assert piped.returncode == 0 and "applying" not in piped.stderr + piped.stdout
