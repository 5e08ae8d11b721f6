"""The operator's commands as real processes (issue 3, section 2): status, plan, pause and resume,
resume-preset, invalidate, history, and every command's --help."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
import pytest

from prebuilds.migrations import EXPECTED_REVISION
from tests.fixtures import clone_database, drop_database, with_database
from tests.support import CLI, run_cli, scalar, start_cli

Conn = psycopg.Connection[Any]
Proc = subprocess.CompletedProcess[str]

EXIT_OK, EXIT_ACTIONS_FAILED, EXIT_CANNOT_RUN = 0, 1, 2


# --- helpers ---------------------------------------------------------------------------------


def run_all(calls: Sequence[Sequence[str]], url: str | None) -> list[Proc]:
    """Several ``prebuilds`` commands started at once (for commands that do not interfere),
    their results in the order of ``calls``."""
    started = [(args, start_cli(*args, url=url)) for args in calls]
    results = []
    for args, proc in started:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess([*CLI, *args], proc.returncode, out, err))
    return results


def ok(proc: Proc) -> str:
    assert proc.returncode == EXIT_OK, (proc.args, proc.stdout, proc.stderr)
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def refused(proc: Proc) -> str:
    """The one-line message of a command that could not run (exit 2)."""
    assert proc.returncode == EXIT_CANNOT_RUN, (proc.args, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("prebuilds: cannot run: "), lines[0]
    return lines[0]


def make_preset(
    conn: Conn,
    template: str,
    desired: int,
    *,
    org: str = "acme",
    preset: str = "default",
    ttl: int | None = None,
) -> UUID:
    """A preset on version v1 (made active) of a new template ``org/template``."""
    value: UUID = scalar(
        conn,
        "select fixture.preset(fixture.version(fixture.template(%s, %s), 'v1'), %s, %s, %s)",
        (template, org, preset, desired, ttl),
    )
    return value


def sibling(conn: Conn, of: UUID, preset: str, desired: int) -> UUID:
    """Another preset on the same template version as ``of``."""
    value: UUID = scalar(
        conn,
        "select fixture.preset(template_version_id, %s, %s) from prebuilds.presets where id = %s",
        (preset, desired, of),
    )
    return value


def prebuilds(
    conn: Conn, preset_id: UUID, n: int, *, age: str = "1 hour", state: str = "running"
) -> list[UUID]:
    """``n`` prebuilds created about ``age`` ago, oldest first."""
    return [
        scalar(
            conn,
            "select fixture.prebuild(%s, now() - %s::interval - %s * interval '1 second', %s)",
            (preset_id, age, n - i, state),
        )
        for i in range(n)
    ]


def hard_limited(conn: Conn, template: str, **kwargs: Any) -> UUID:
    """A preset whose last three builds failed (failure_hard_limit is 3)."""
    preset_id = make_preset(conn, template, 1, **kwargs)
    prebuilds(conn, preset_id, 3, age="5 minutes", state="failed")
    return preset_id


def fingerprint(conn: Conn) -> tuple[Any, ...]:
    """Everything a command could write."""
    row = conn.execute(
        """
        select
            (select count(*) from prebuilds.workspaces),
            (select count(*) from prebuilds.workspaces where deleted),
            (select count(*) from prebuilds.workspace_builds),
            (select count(*) from prebuilds.provisioner_jobs where status <> 'pending'),
            (select count(*) from prebuilds.reconciliation_runs),
            (select count(*) from prebuilds.reconciliation_action_log),
            (select array_agg(
                (id, last_invalidated_at, failures_reset_at, desired_instances) order by id
             )::text from prebuilds.presets),
            (select row(s.*)::text from prebuilds.settings as s)
        """
    ).fetchone()
    assert row is not None
    return tuple(row)


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of an aligned table (header, a rule of dashes, rows), checking the alignment: every
    column starts at its rule's dashes, after a gap of spaces, in every line."""
    header, rule, *body = text.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    width = len(rule)

    def cells(line: str) -> list[str]:
        padded = line.ljust(width)
        assert len(padded) == width, f"longer than its rule: {line!r}"
        for start, _ in spans[1:]:
            assert padded[start - 2 : start] == "  ", f"misaligned at {start}: {line!r}"
        return [padded[start:end].strip() for start, end in spans]

    names = cells(header)
    assert all(names), header
    return [dict(zip(names, cells(line), strict=True)) for line in body]


def status_json(url: str, *filters: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok(run_cli("status", "--json", *filters, url=url)))
    return rows


def by_name(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["organization_name"], r["template_name"], r["preset_name"]): r for r in rows}


def plan_json(url: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ok(run_cli("plan", "--json", url=url)))
    return document


def workspaces_of(conn: Conn, preset_id: UUID) -> set[UUID]:
    """Workspaces of a preset whose latest build is a start (not being deleted)."""
    rows = conn.execute(
        "select w.id from prebuilds.workspaces as w "
        "join prebuilds.workspace_builds as b on b.id = w.latest_build_id "
        "where w.current_preset_id = %s and not w.deleted and b.transition = 'start'",
        (preset_id,),
    ).fetchall()
    return {r[0] for r in rows}


# --- status ----------------------------------------------------------------------------------


def test_status_is_an_aligned_table_with_the_blocked_reason_next_to_the_names(
    conn: Conn, db_url: str
) -> None:
    web = make_preset(conn, "web", 2, preset="small")
    sibling(conn, web, "large", 1)
    prebuilds(conn, web, 1)
    hard_limited(conn, "broken")
    make_preset(conn, "api", 1, org="globex")

    out = ok(run_cli("status", url=db_url))

    assert out.splitlines()[0].split()[:6] == [
        "ORG",
        "TEMPLATE",
        "VERSION",
        "PRESET",
        "BLOCKED",
        "ACTIVE",
    ]
    assert "\x1b" not in out  # no colours when piped
    rows = {(r["ORG"], r["TEMPLATE"], r["PRESET"]): r for r in parse_table(out)}
    assert set(rows) == {
        ("acme", "web", "small"),
        ("acme", "web", "large"),
        ("acme", "broken", "default"),
        ("globex", "api", "default"),
    }
    assert rows["acme", "broken", "default"]["BLOCKED"] == "hard_limited"
    assert rows["acme", "broken", "default"]["FAILURES"] == "3"
    assert [r["BLOCKED"] for k, r in rows.items() if k[1] != "broken"] == ["", "", ""]
    small = rows["acme", "web", "small"]
    assert (small["DESIRED"], small["RUNNING"], small["ELIGIBLE"], small["ACTIVE"]) == (
        "2",
        "1",
        "1",
        "yes",
    )


def test_status_filters_narrow_the_rows_and_json_has_the_preset_state_columns(
    conn: Conn, db_url: str
) -> None:
    web = make_preset(conn, "web", 2, preset="small")
    sibling(conn, web, "large", 1)
    make_preset(conn, "api", 1)
    make_preset(conn, "web", 1, org="globex")
    columns = [
        d.name
        for d in conn.execute("select * from prebuilds.preset_state limit 0").description or []
    ]

    filters: list[list[str]] = [
        [],
        ["--organization", "globex"],
        ["--template", "web"],
        ["--organization", "acme", "--template", "web", "--preset", "small"],
    ]
    *results, text, unknown = run_all(
        [["status", "--json", *f] for f in filters]
        + [["status", "--preset", "large"], ["status", "--json", "--template", "nope"]],
        db_url,
    )
    names = [
        sorted((r["organization_name"], r["template_name"], r["preset_name"]) for r in rows)
        for rows in (json.loads(ok(p)) for p in results)
    ]

    assert names == [
        [
            ("acme", "api", "default"),
            ("acme", "web", "large"),
            ("acme", "web", "small"),
            ("globex", "web", "default"),
        ],
        [("globex", "web", "default")],
        [("acme", "web", "large"), ("acme", "web", "small"), ("globex", "web", "default")],
        [("acme", "web", "small")],
    ]
    everything = json.loads(results[0].stdout)
    # preset_state's columns, and the last hour's hit rate computed from two of them.
    assert all(list(row) == [*columns, "hit_rate_last_hour"] for row in everything)
    small = by_name(everything)["acme", "web", "small"]
    assert small["preset_id"] == str(web)
    assert (small["desired"], small["actual"], small["is_active"]) == (2, 0, True)
    assert (small["blocked_reason"], small["hard_limited"], small["creates_planned"]) == (
        None,
        False,
        2,
    )

    assert [(r["ORG"], r["TEMPLATE"], r["PRESET"]) for r in parse_table(ok(text))] == [
        ("acme", "web", "large")
    ]
    # A name that matches nothing at all is a mistake, not an empty pool (issue 7, item 8).
    assert refused(unknown).endswith("no such template 'nope'")


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A database without the prebuilds schema."""
    name = clone_database(server_url, "template0")
    yield with_database(server_url, name)
    drop_database(server_url, name)


def test_status_and_other_commands_refuse_a_database_without_the_schema(
    empty_db_url: str,
) -> None:
    for proc in run_all([["status"], ["history"], ["pause"]], empty_db_url):
        message = refused(proc)
        assert "the prebuilds schema is not installed" in message
        assert "alembic upgrade head" in message


def test_status_and_other_commands_refuse_a_schema_at_another_revision(
    conn: Conn, db_url: str
) -> None:
    make_preset(conn, "web", 1)
    conn.execute("update alembic_version set version_num = '0001'")
    before = fingerprint(conn)

    calls = [["status", "--json"], ["pause"], ["invalidate", "--template", "web"], ["plan"]]
    for proc in run_all(calls, db_url):
        message = refused(proc)
        assert f"schema is at revision 0001, this driver needs {EXPECTED_REVISION}" in message

    assert fingerprint(conn) == before  # pause and invalidate wrote nothing


# --- plan ------------------------------------------------------------------------------------


def test_plan_and_dry_run_print_the_same_plan_with_reasons_and_write_nothing(
    conn: Conn, db_url: str
) -> None:
    surplus = make_preset(conn, "surplus", 1)
    oldest, second, _ = prebuilds(conn, surplus, 3)
    short = make_preset(conn, "short", 1, ttl=600)
    (expired,) = prebuilds(conn, short, 1, age="20 minutes")
    make_preset(conn, "fresh", 2)
    before = fingerprint(conn)

    plan, dry, as_json = run_all([["plan"], ["reconcile", "--dry-run"], ["plan", "--json"]], db_url)

    assert ok(plan) == ok(dry)
    rows = parse_table(plan.stdout)
    assert [(r["seq"], r["action"]) for r in rows] == [
        (str(i), action) for i, action in enumerate(["delete"] * 3 + ["create"] * 3, start=1)
    ]
    assert sorted((r["action"], r["preset"], r["workspace"], r["reason"]) for r in rows) == sorted(
        [
            ("delete", "acme/short@v1/default", str(expired), "expired: older than ttl 600s"),
            ("delete", "acme/surplus@v1/default", str(oldest), "surplus: 3 running, 1 desired"),
            ("delete", "acme/surplus@v1/default", str(second), "surplus: 3 running, 1 desired"),
            ("create", "acme/short@v1/default", "", "missing: 0 running, 0 starting, 1 desired"),
            ("create", "acme/fresh@v1/default", "", "missing: 0 running, 0 starting, 2 desired"),
            ("create", "acme/fresh@v1/default", "", "missing: 0 running, 0 starting, 2 desired"),
        ]
    )

    document = json.loads(ok(as_json))
    assert document["paused"] is False
    assert [
        (str(a["seq"]), a["action"], a["workspace_id"] or "", a["reason"])
        for a in document["actions"]
    ] == [(r["seq"], r["action"], r["workspace"], r["reason"]) for r in rows]
    assert {
        (a["template_name"], a["preset_name"], a["preset_id"])
        for a in document["actions"]
        if a["template_name"] != "fresh"
    } == {("surplus", "default", str(surplus)), ("short", "default", str(short))}
    assert fingerprint(conn) == before


# --- pause and resume ------------------------------------------------------------------------


def test_pause_stops_every_change_until_resume(conn: Conn, db_url: str) -> None:
    web = make_preset(conn, "web", 2)
    hard_limited(conn, "broken")

    assert "reconciliation paused" in ok(run_cli("pause", url=db_url))
    assert scalar(conn, "select reconciliation_paused from prebuilds.settings") is True
    assert {r["blocked_reason"] for r in status_json(db_url)} == {"paused"}
    before = fingerprint(conn)

    paused = ok(run_cli("reconcile", url=db_url))
    assert "reconciliation is paused" in paused and "nothing done" in paused
    assert fingerprint(conn)[:4] == before[:4]
    assert workspaces_of(conn, web) == set()

    assert "reconciliation resumed" in ok(run_cli("resume", url=db_url))
    assert scalar(conn, "select reconciliation_paused from prebuilds.settings") is False
    applied = ok(run_cli("reconcile", url=db_url))
    assert "applied 0 cancel, 0 delete, 2 create" in applied
    assert len(workspaces_of(conn, web)) == 2
    assert conn.execute(
        "select status from prebuilds.reconciliation_runs order by id"
    ).fetchall() == [("paused",), ("succeeded",)]


# --- resume-preset ---------------------------------------------------------------------------


def test_resume_preset_clears_a_hard_limit(conn: Conn, db_url: str) -> None:
    broken = hard_limited(conn, "broken")
    make_preset(conn, "web", 1)
    state = by_name(status_json(db_url))["acme", "broken", "default"]
    assert (state["hard_limited"], state["blocked_reason"], state["creates_planned"]) == (
        True,
        "hard_limited",
        0,
    )

    out = ok(run_cli("resume-preset", "--template", "broken", url=db_url))

    assert (
        out.strip() == "prebuilds: resumed acme/broken@v1/default: earlier failures no longer count"
    )
    state = by_name(status_json(db_url))["acme", "broken", "default"]
    assert (state["hard_limited"], state["blocked_reason"], state["failures"]) == (False, None, 0)
    assert state["creates_planned"] == 1
    creates = [a for a in plan_json(db_url)["actions"] if a["preset_id"] == str(broken)]
    assert [a["action"] for a in creates] == ["create"]
    assert scalar(
        conn, "select failures_reset_at is not null from prebuilds.presets where id = %s", (broken,)
    )


def test_resume_preset_and_invalidate_refuse_unknown_and_ambiguous_names(
    conn: Conn, db_url: str
) -> None:
    acme_web = hard_limited(conn, "web")
    globex_web = hard_limited(conn, "web", org="globex")
    before = fingerprint(conn)

    results = run_all(
        [
            ["resume-preset", "--template", "nope"],
            ["resume-preset", "--template", "web"],
            ["invalidate", "--template", "web"],
            ["invalidate", "--template", "web", "--organization", "acme", "--preset", "nope"],
        ],
        db_url,
    )

    messages = [refused(p) for p in results]
    assert messages[0].endswith("no preset on the active version of template 'nope'")
    for ambiguous in messages[1:3]:
        assert "template 'web' exists in several organizations (acme, globex)" in ambiguous
        assert ambiguous.endswith("pass --organization")
    assert messages[3].endswith(
        "no preset on the active version of template 'web', preset 'nope' in organization 'acme'"
    )
    assert fingerprint(conn) == before

    # Named with its organization, only that preset is resumed.
    ok(run_cli("resume-preset", "--template", "web", "--organization", "globex", url=db_url))
    reset = conn.execute(
        "select id, failures_reset_at is not null from prebuilds.presets order by id"
    ).fetchall()
    assert dict(reset) == {acme_web: False, globex_web: True}


# --- invalidate ------------------------------------------------------------------------------


def test_invalidate_replaces_the_current_prebuilds_of_the_named_presets_only(
    conn: Conn, db_url: str
) -> None:
    small = make_preset(conn, "web", 2, preset="small")
    large = sibling(conn, small, "large", 1)
    api = make_preset(conn, "api", 1)
    for preset_id, n in ((small, 2), (large, 1), (api, 1)):
        prebuilds(conn, preset_id, n)
    old = {p: workspaces_of(conn, p) for p in (small, large, api)}
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 0

    out = ok(run_cli("invalidate", "--template", "web", "--preset", "small", url=db_url))

    assert out.strip() == (
        "prebuilds: invalidated acme/web@v1/small: its current prebuilds are replaced by the "
        "next cycle"
    )
    actions = plan_json(db_url)["actions"]
    assert {(a["action"], a["workspace_id"]) for a in actions} == {
        ("delete", str(w)) for w in old[small]
    } | {("create", None)}
    assert {a["preset_id"] for a in actions} == {str(small)}
    assert [a["action"] for a in actions].count("create") == 2
    for a in actions:
        if a["action"] == "delete":
            assert a["reason"].startswith("expired: created before invalidation at ")

    # The whole template: large too, api never.
    out = ok(run_cli("invalidate", "--template", "web", url=db_url))
    assert "invalidated acme/web@v1/large" in out and "invalidated acme/web@v1/small" in out
    applied = ok(run_cli("reconcile", url=db_url))
    assert "applied 0 cancel, 3 delete, 3 create; 0 skipped, 0 failed" in applied
    for preset_id in (small, large):
        now = workspaces_of(conn, preset_id)
        assert not now & old[preset_id]
        assert len(now) == len(old[preset_id])
    assert workspaces_of(conn, api) == old[api]
    assert (
        scalar(
            conn,
            "select count(*) from prebuilds.workspace_builds as b "
            "join prebuilds.workspaces as w on w.id = b.workspace_id "
            "where w.current_preset_id = %s",
            (api,),
        )
        == 1
    )
    assert (
        scalar(conn, "select last_invalidated_at from prebuilds.presets where id = %s", (api,))
        is None
    )


# --- history ---------------------------------------------------------------------------------


def test_history_shows_recent_runs_and_failed_actions_with_their_errors(
    conn: Conn, db_url: str
) -> None:
    surplus = make_preset(conn, "surplus", 1)
    _, victim, _ = prebuilds(conn, surplus, 3)
    make_preset(conn, "fresh", 1)
    # A test-only trigger: the delete of one workspace fails.
    conn.execute(
        f"""
        create function public.refuse_delete() returns trigger language plpgsql as $$
        begin
            if new.transition = 'delete' and new.workspace_id = '{victim}'::uuid then
                raise exception 'test trigger: refusing to delete this workspace';
            end if;
            return new;
        end $$;
        create trigger refuse_delete before insert on prebuilds.workspace_builds
        for each row execute function public.refuse_delete();
        """
    )
    first = run_cli("reconcile", url=db_url)
    assert first.returncode == EXIT_ACTIONS_FAILED, (first.stdout, first.stderr)
    conn.execute("drop trigger refuse_delete on prebuilds.workspace_builds")
    ok(run_cli("reconcile", url=db_url))
    run_ids = [
        r[0] for r in conn.execute("select id from prebuilds.reconciliation_runs order by id")
    ]

    text, latest, as_json, bad_limit = run_all(
        [
            ["history"],
            ["history", "--limit", "1"],
            ["history", "--json"],
            ["history", "--limit", "0"],
        ],
        db_url,
    )

    runs_table, failures_title, failures_table = ok(text).strip().split("\n\n")
    runs = parse_table(runs_table)
    assert [(r["RUN"], r["STATUS"], r["PLANNED"], r["APPLIED"], r["FAILED"]) for r in runs] == [
        (str(run_ids[1]), "succeeded", "1", "1", "0"),
        (str(run_ids[0]), "failed", "3", "2", "1"),
    ]
    assert failures_title == "failed actions:"
    (failure,) = parse_table(failures_table)
    assert (failure["RUN"], failure["ACTION"], failure["WORKSPACE"]) == (
        str(run_ids[0]),
        "delete",
        str(victim),
    )
    assert failure["ERROR"] == "test trigger: refusing to delete this workspace"
    assert failure["REASON"] == "surplus: 3 running, 1 desired"

    only_latest = ok(latest).strip().split("\n\n")
    assert [r["RUN"] for r in parse_table(only_latest[0])] == [str(run_ids[1])]
    assert only_latest[1] == "no failed actions in these cycles"

    document = json.loads(ok(as_json))
    assert [(r["id"], r["status"], r["actions_failed"]) for r in document["runs"]] == [
        (run_ids[1], "succeeded", 0),
        (run_ids[0], "failed", 1),
    ]
    (failed,) = document["failed_actions"]
    assert (failed["run_id"], failed["workspace_id"], failed["error"]) == (
        run_ids[0],
        str(victim),
        "test trigger: refusing to delete this workspace",
    )
    assert refused(bad_limit).endswith("--limit must be at least 1")


def test_history_without_runs(conn: Conn, db_url: str) -> None:
    assert ok(run_cli("history", url=db_url)).strip() == "no recorded cycles"


# --- help ------------------------------------------------------------------------------------

HELP = {
    "": ["Keep pools of prebuilt workspaces at their desired size", "Exit codes"],
    "reconcile": ["Take the reconciler lock", "--dry-run", "--metrics-file", "-v, --verbose"],
    "run": ["every --interval", "SIGTERM or SIGINT stops it cleanly", "--metrics-port"],
    "plan": ["the next cycle would apply", "writes nothing", "--json"],
    "status": ["prebuilds.preset_state", "BLOCKED", "--organization", "--preset", "--json"],
    "pause": ["reconciliation_paused", "apply nothing until `prebuilds resume`"],
    "resume": ["Clear prebuilds.settings.reconciliation_paused"],
    "resume-preset": ["failures_reset_at to now", "--template NAME"],
    "invalidate": ["last_invalidated_at to now", "deletes and replaces them", "--preset"],
    "history": ["prebuilds.reconciliation_runs", "with their errors", "--limit"],
    "demo": ["simulated provisioner", "empty database"],
    "migrate": ["revision this driver needs"],
    "freeze": ["Freeze db/ objects", "Adding a migration"],
}


def test_every_command_has_a_help_that_explains_it() -> None:
    calls = [[command, "--help"] if command else ["--help"] for command in HELP]
    for (command, phrases), proc in zip(HELP.items(), run_all(calls, None), strict=True):
        out = ok(proc)
        assert out.startswith(f"usage: prebuilds {command}".rstrip()), out
        flat = " ".join(out.split())  # argparse wraps at the terminal width
        for phrase in phrases:
            assert phrase in flat, (command, phrase, out)
        if command == "":
            for listed in HELP:
                assert listed in flat
        if command == "run":
            assert "--max-cycles" not in out  # a testing aid, hidden
