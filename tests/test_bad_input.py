"""Bad input on the command line (issue 7, item 8): every argument an operator can get wrong is
refused with one line naming the problem, exit code 2, before anything connects or writes.

Each case is a real `prebuilds` process. They all run against one database seeded with a pool
that a cycle would fill, so "nothing changed" means something: no run was recorded, no prebuild
created, no setting or preset touched.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from prebuilds.cli import build_parser
from prebuilds.dbsource import REPO_ROOT
from tests.fixtures import clone_database, drop_database, with_database
from tests.support import CLI, run_cli
from tests.test_loop import free_port

Conn = psycopg.Connection[Any]
Proc = subprocess.CompletedProcess[str]

EXIT_CANNOT_RUN = 2
PREFIX = "prebuilds: cannot run: "


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    #: The whole message after "prebuilds: cannot run: ", or its beginning when it ends in "…".
    message: str
    #: The database URL in $DATABASE_URL; None: the test database's.
    url: str | None = None


def case(id: str, args: str | tuple[str, ...], message: str, url: str | None = None) -> Case:
    return Case(id, tuple(args.split()) if isinstance(args, str) else args, message, url)


PORT_RULE = "--metrics-port must be a port number from 1 to 65535, not "
DURATION_RULE = "must be a duration such as 500ms, 60s, 5m or 1h, not "
LONG_NAME = "x" * 201
TOO_LONG = "is too long: 201 characters (at most 200)"

CASES = [
    # ports and the metrics address
    case("port-0", "run --metrics-port 0", PORT_RULE + "'0'"),
    case("port-negative", "run --metrics-port -1", PORT_RULE + "'-1'"),
    case("port-too-big", "run --metrics-port 70000", PORT_RULE + "'70000'"),
    case("port-not-a-number", "run --metrics-port abc", PORT_RULE + "'abc'"),
    case(
        "address-not-local",
        "run --metrics-port {port} --metrics-address 192.0.2.1",
        "cannot serve metrics on port {port}: …",
    ),
    case(
        "address-malformed",
        "run --metrics-port {port} --metrics-address 999.1.1.1",
        "cannot serve metrics on port {port}: …",
    ),
    # durations
    case("interval-unit", "run --interval 5x", f"--interval {DURATION_RULE}'5x'"),
    case("interval-nan", "run --interval nan", f"--interval {DURATION_RULE}'nan'"),
    case("interval-inf", "run --interval inf", f"--interval {DURATION_RULE}'inf'"),
    case("interval-exponent", "run --interval 1e3", f"--interval {DURATION_RULE}'1e3'"),
    case("interval-zero", "run --interval 0", "--interval must be positive"),
    case("interval-negative", "run --interval=-1s", "--interval must be positive"),
    case(
        "interval-negative-as-option",
        "run --interval -1s",
        "--interval needs a value (one that starts with '-' is written --interval=VALUE)",
    ),
    case("interval-too-long", "run --interval 2d", "--interval must be between 10ms and 1d"),
    case("interval-too-short", "run --interval 1ms", "--interval must be between 10ms and 1d"),
    case("max-cycles-zero", "run --max-cycles 0", "--max-cycles must be at least 1"),
    case(
        "lock-timeout-zero",
        "reconcile --lock-timeout 0",
        "--lock-timeout must be positive",
    ),
    case(
        "lock-timeout-too-short",
        "reconcile --lock-timeout 50ms",
        "--lock-timeout must be between 100ms and 10m",
    ),
    case(
        "lock-timeout-too-long",
        "run --lock-timeout 11m",
        "--lock-timeout must be between 100ms and 10m",
    ),
    case(
        "lock-timeout-malformed",
        "status --lock-timeout 5sec",
        f"--lock-timeout {DURATION_RULE}'5sec'",
    ),
    case(
        "statement-timeout-too-short",
        "plan --statement-timeout 0.5s",
        "--statement-timeout must be between 1s and 1h",
    ),
    case(
        "statement-timeout-too-long",
        "history --statement-timeout 2h",
        "--statement-timeout must be between 1s and 1h",
    ),
    case(
        "statement-timeout-malformed",
        "reconcile --statement-timeout abc",
        f"--statement-timeout {DURATION_RULE}'abc'",
    ),
    # history --limit
    case("limit-zero", "history --limit 0", "--limit must be at least 1"),
    case("limit-negative", "history --limit -1", "--limit must be at least 1"),
    case("limit-too-big", "history --limit 10001", "--limit must be at most 10000"),
    case("limit-not-a-number", "history --limit abc", "--limit must be a whole number, not 'abc'"),
    case("limit-fraction", "history --limit 1.5", "--limit must be a whole number, not '1.5'"),
    # the metrics file, checked before the cycle
    case(
        "metrics-dir-missing",
        "reconcile --metrics-file {tmp}/missing/prebuilds.prom",
        "cannot write metrics to {tmp}/missing/prebuilds.prom: "
        "directory {tmp}/missing does not exist",
    ),
    case(
        "metrics-dir-not-writable",
        "reconcile --metrics-file /sys/prebuilds.prom",
        "cannot write metrics to /sys/prebuilds.prom: directory /sys is not writable "
        "(Permission denied)",
    ),
    case(
        "metrics-path-is-a-directory",
        "reconcile --metrics-file {tmp}",
        "cannot write metrics to {tmp}: it is a directory",
    ),
    case(
        "metrics-dir-is-a-file",
        "reconcile --metrics-file {tmp}/a-file/prebuilds.prom",
        "cannot write metrics to {tmp}/a-file/prebuilds.prom: {tmp}/a-file is not a directory",
    ),
    case(
        "metrics-path-is-a-device",
        "reconcile --metrics-file /dev/null",
        "cannot write metrics to /dev/null: it exists and is not a regular file",
    ),
    case(
        "metrics-with-dry-run",
        "reconcile --dry-run --metrics-file {tmp}/prebuilds.prom",
        "--dry-run writes nothing, --metrics-file included: drop one of them",
    ),
    # names: malformed ones, for every command that takes names
    case("status-long-template", ("status", "--template", LONG_NAME), f"--template {TOO_LONG}"),
    case(
        "status-long-organization",
        ("status", "--organization", LONG_NAME),
        f"--organization {TOO_LONG}",
    ),
    case(
        "resume-preset-long-preset",
        ("resume-preset", "--template", "web", "--preset", LONG_NAME),
        f"--preset {TOO_LONG}",
    ),
    case(
        "invalidate-long-template",
        ("invalidate", "--template", LONG_NAME),
        f"--template {TOO_LONG}",
    ),
    case(
        "status-newline",
        ("status", "--template", "web\nrm -rf"),
        "--template must not contain control characters ('\\n' at position 4)",
    ),
    case(
        "resume-preset-escape",
        ("resume-preset", "--template", "\x1b[31mweb"),
        "--template must not contain control characters ('\\x1b' at position 1)",
    ),
    case(
        "invalidate-empty-preset",
        ("invalidate", "--template", "web", "--preset", ""),
        "--preset must not be empty",
    ),
    # names: unknown ones, each command says which
    case("status-unknown-template", "status --template nope", "no such template 'nope'"),
    case(
        "status-unknown-organization", "status --organization nope", "no such organization 'nope'"
    ),
    case(
        "status-unknown-preset",
        "status --template web --organization acme --preset nope",
        "no such preset 'nope' of template 'web' in organization 'acme'",
    ),
    case(
        "resume-preset-unknown-template",
        "resume-preset --template nope",
        "no such template 'nope': no preset on the active version of template 'nope'",
    ),
    case(
        "resume-preset-unknown-organization",
        "resume-preset --template web --organization nope",
        "no such organization 'nope': no preset on the active version of template 'web' "
        "in organization 'nope'",
    ),
    case(
        "invalidate-unknown-preset",
        "invalidate --template web --preset nope",
        "no such preset 'nope' of template 'web': no preset on the active version of "
        "template 'web', preset 'nope'",
    ),
    # database URLs, in $DATABASE_URL and in --database-url, for every kind of command
    case(
        "url-not-a-url",
        "reconcile",
        "bad database URL: not a postgresql:// URL (from $DATABASE_URL)",
        url="notaurl",
    ),
    case(
        "url-http",
        "plan",
        "bad database URL: scheme 'http' is not postgresql:// or postgres:// (from $DATABASE_URL)",
        url="http://x",
    ),
    case(
        "url-unclosed-bracket",
        "status",
        'bad database URL: end of string reached when looking for matching "]" in IPv6 host '
        'address in URI: "postgresql://[bad" (from $DATABASE_URL)',
        url="postgresql://[bad",
    ),
    case(
        "url-unknown-parameter",
        "pause",
        'bad database URL: invalid URI query parameter: "foo" (from $DATABASE_URL)',
        url="postgresql://postgres@/postgres?foo=bar",
    ),
    case(
        "url-bad-port",
        "history",
        "bad database URL: port must be a number from 1 to 65535, not '99999' (from $DATABASE_URL)",
        url="postgresql://localhost:99999/postgres",
    ),
    case(
        "url-option-not-a-url",
        "run --database-url notaurl",
        "bad database URL: not a postgresql:// URL (from --database-url)",
    ),
    case(
        "url-option-unknown-parameter",
        "migrate --database-url postgresql://postgres@/postgres?foo=bar",
        'bad database URL: invalid URI query parameter: "foo" (from --database-url)',
    ),
    case(
        "url-password-is-not-shown",
        "resume --database-url postgresql://admin:hunter2@[bad",
        'bad database URL: end of string reached when looking for matching "]" in IPv6 host '
        'address in URI: "postgresql://admin:***@[bad" (from --database-url)',
    ),
    case(
        "url-demo",
        "demo",
        "bad database URL: scheme 'mysql' is not postgresql:// or postgres:// (from $DATABASE_URL)",
        url="mysql://root@localhost/db",
    ),
    # the development command (needs no database, whatever $DATABASE_URL says)
    case(
        "freeze-path-as-revision",
        "freeze ../../tmp/x",
        "revision must be a revision id such as 0004 (letters, digits, _), not '../../tmp/x'",
        url="notaurl",
    ),
    case(
        "freeze-old-revision",
        "freeze 0001",
        "revision 0001 is older than head …",
        url="notaurl",
    ),
    # what argparse itself refuses, on one line too
    case(
        "unknown-option",
        "reconcile --intervall 5s",
        "unrecognized arguments: --intervall 5s (see `prebuilds --help`)",
    ),
    case(
        "bad-choice",
        "plan --log-format xml",
        "argument --log-format: invalid choice: 'xml' (choose from 'text', 'json') "
        "(see `prebuilds plan --help`)",
    ),
    case(
        "missing-template",
        "invalidate",
        "the following arguments are required: --template (see `prebuilds invalidate --help`)",
    ),
    case(
        "unknown-command",
        "reconcil",
        "argument COMMAND: invalid choice: 'reconcil' (choose from …",
    ),
]

#: Cases run again with --log-format json: the refusal is one JSON record.
JSON_CASES = ["port-0", "limit-zero", "metrics-dir-missing", "status-unknown-template", "url-http"]


def fingerprint(conn: Conn) -> tuple[Any, ...]:
    """Everything a cycle or an operator command could change."""
    row = conn.execute(
        """
        select
            (select count(*) from prebuilds.reconciliation_runs),
            (select count(*) from prebuilds.reconciliation_action_log),
            (select count(*) from prebuilds.workspaces),
            (select count(*) from prebuilds.workspace_builds),
            (select count(*) from prebuilds.organizations),
            (select json_agg(s)::text from prebuilds.settings as s),
            (select json_agg(p order by p.id)::text from prebuilds.presets as p)
        """
    ).fetchone()
    assert row is not None
    return tuple(row)


@dataclass
class Shared:
    url: str
    conn: Conn
    before: tuple[Any, ...]
    results: dict[tuple[str, bool], Proc]
    values: dict[str, str]


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.fixture(scope="module")
def shared(
    server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shared]:
    """One database with a pool a cycle would fill, and every case's process, run 4 at a time."""
    name = clone_database(server_url, template_db)
    url = with_database(server_url, name)
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "a-file").write_text("not a directory\n")
    values = {"tmp": str(tmp), "port": str(free_port())}
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("select fixture.active_preset('web', 2)")
            before = fingerprint(conn)

            def run(item: tuple[Case, bool]) -> Proc:
                c, as_json = item
                args = [fill(a, values) for a in c.args]
                if as_json:
                    args += ["--log-format", "json"]
                return run_cli(*args, url=c.url or url, timeout=60)

            todo = [(c, False) for c in CASES] + [(c, True) for c in CASES if c.id in JSON_CASES]
            with ThreadPoolExecutor(max_workers=4) as pool:
                procs = list(pool.map(run, todo))
            results = {(c.id, as_json): p for (c, as_json), p in zip(todo, procs, strict=True)}
            yield Shared(url, conn, before, results, values)
    finally:
        drop_database(server_url, name)


def assert_names_the_problem(line: str, expected: str) -> None:
    if expected.endswith("…"):
        assert line.startswith(expected[:-1]), line
    else:
        assert line == expected


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(shared: Shared, c: Case) -> None:
    proc = shared.results[c.id, False]
    assert proc.returncode == EXIT_CANNOT_RUN, (proc.args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    assert_names_the_problem(lines[0].removeprefix(PREFIX), fill(c.message, shared.values))
    assert "hunter2" not in proc.stderr
    assert fingerprint(shared.conn) == shared.before


@pytest.mark.parametrize("id", JSON_CASES)
def test_bad_input_with_json_logs_is_one_json_record(shared: Shared, id: str) -> None:
    (c,) = [c for c in CASES if c.id == id]
    proc = shared.results[id, True]
    assert proc.returncode == EXIT_CANNOT_RUN, (proc.args, proc.stdout, proc.stderr)
    assert proc.stderr == ""
    (line,) = proc.stdout.splitlines()
    record = json.loads(line)
    assert record["level"] == "error"
    assert record["event"] in ("bad_argument", "cannot_run")
    assert_names_the_problem(
        record["message"].removeprefix("cannot run: "), fill(c.message, shared.values)
    )
    assert fingerprint(shared.conn) == shared.before


def test_the_shared_database_has_work_that_a_cycle_would_do(shared: Shared) -> None:
    """Without this, "nothing changed" above would prove nothing."""
    proc = run_cli("plan", url=shared.url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("create") == 2, proc.stdout


def test_the_metrics_file_check_leaves_no_file_behind(shared: Shared) -> None:
    tmp = Path(shared.values["tmp"])
    assert sorted(p.name for p in tmp.iterdir()) == ["a-file"]


# --- the new options, as parsed ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["reconcile", "run", "plan", "status", "history"])
def test_timeouts_default_to_5s_and_60s(command: str) -> None:
    args = build_parser().parse_args([command])
    assert (args.lock_timeout, args.statement_timeout) == (5.0, 60.0)


@pytest.mark.parametrize(
    ("lock", "statement", "expected"),
    [
        ("250ms", "90s", (0.25, 90.0)),
        ("100ms", "1s", (0.1, 1.0)),
        ("10m", "1h", (600.0, 3600.0)),
        ("2", "0.5m", (2.0, 30.0)),
    ],
)
def test_timeouts_are_parsed_to_seconds(lock: str, statement: str, expected: Any) -> None:
    args = build_parser().parse_args(
        ["reconcile", "--lock-timeout", lock, "--statement-timeout", statement]
    )
    assert (args.lock_timeout, args.statement_timeout) == expected


@pytest.mark.parametrize(
    ("text", "seconds"), [("0.2s", 0.2), ("90", 90.0), ("5m", 300.0), ("1d", 86400.0)]
)
def test_good_intervals_are_accepted(text: str, seconds: float) -> None:
    assert build_parser().parse_args(["run", "--interval", text]).interval == seconds


# --- a missing settings row -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_pause_and_resume_without_the_settings_row_exit_2(
    conn: Conn, db_url: str, command: str
) -> None:
    # Whatever protects the row (a trigger), this test removes it the way a superuser could.
    conn.execute("alter table prebuilds.settings disable trigger user")
    conn.execute("delete from prebuilds.settings")
    conn.execute("alter table prebuilds.settings enable trigger user")
    before = fingerprint(conn)

    text = run_cli(command, url=db_url)
    as_json = run_cli(command, "--log-format", "json", url=db_url)

    assert text.returncode == EXIT_CANNOT_RUN, (text.stdout, text.stderr)
    assert text.stdout == ""
    (line,) = text.stderr.splitlines()
    assert line.startswith(PREFIX) and "prebuilds.settings" in line, line
    assert "insert into prebuilds.settings default values" in line, line
    assert as_json.returncode == EXIT_CANNOT_RUN and as_json.stderr == ""
    (record,) = [json.loads(x) for x in as_json.stdout.splitlines()]
    assert record["message"] == line.removeprefix("prebuilds: ")
    assert fingerprint(conn) == before
    assert conn.execute("select count(*) from prebuilds.settings").fetchone() == (0,)


def test_the_environment_is_not_consulted_when_the_option_is_given(db_url: str, conn: Conn) -> None:
    """--database-url wins over a broken $DATABASE_URL (and is what the message names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = "notaurl"
    proc = subprocess.run(
        [*CLI, "history", "--database-url", db_url],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
