"""``prebuilds provision --exec CMD`` (issue 8 item 4) with real commands, as a real process,
against a real server: success, failure, timeout, signals, concurrency, heartbeats, what the
command is told, and examples/local-workspace.sh end to end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from prebuilds.cycle import run_cycle
from prebuilds.dbsource import REPO_ROOT
from prebuilds.provision import TAIL_LINES, live_group_members
from tests.support import CLI, cli_env, scalar
from tests.test_loop import LiveCli

Conn = psycopg.Connection[Any]

EXAMPLES = REPO_ROOT / "examples"
#: Quick settings for tests: poll often, heartbeat often, kill fast.
FAST = ("--poll", "0.05s", "--heartbeat", "0.2s", "--kill-grace", "0.5s")


def queue_prebuilds(
    conn: Conn, db_url: str, count: int, template: str = "web", parameters: Any = None
) -> UUID:
    """An active preset wanting ``count`` prebuilds, and a cycle that queued their start jobs."""
    preset: UUID = scalar(conn, "select fixture.active_preset(%s, %s)", (template, count))
    if parameters is not None:
        conn.execute(
            "update prebuilds.presets set parameters = %s where id = %s",
            (Jsonb(parameters), preset),
        )
    result = run_cycle(db_url)
    assert result.tally("applied", "create") == count
    return preset


def jobs(conn: Conn, transition: str = "start") -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute(
        """
        select w.id as workspace_id, w.name, j.id as job_id, j.status, j.error, j.worker_id,
               j.started_at, j.updated_at, j.completed_at,
               (select array_agg(a.lifecycle_state) from prebuilds.workspace_agents as a
                where a.job_id = j.id) as agents
        from prebuilds.workspace_builds as b
        join prebuilds.provisioner_jobs as j on j.id = b.job_id
        join prebuilds.workspaces as w on w.id = b.workspace_id
        where b.transition = %s
        order by j.created_at, w.name
        """,
        (transition,),
    ).fetchall()


def provision(
    url: str, command: str, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``prebuilds provision --once --exec COMMAND ARGS`` to completion."""
    return subprocess.run(
        [*CLI, "provision", "--once", "--exec", command, *FAST, *args],
        cwd=REPO_ROOT,
        env={**cli_env(url), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def running_job(conn: Conn) -> UUID | None:
    row = conn.execute(
        "select id from prebuilds.provisioner_jobs where status = 'running'"
    ).fetchone()
    return row[0] if row else None


# --- outcomes ----------------------------------------------------------------------------------


def test_a_successful_start_completes_the_job_and_reports_the_agent_ready(
    conn: Conn, db_url: str
) -> None:
    queue_prebuilds(conn, db_url, 2)
    done = provision(
        db_url,
        'echo "building $PREBUILDS_WORKSPACE_NAME"; echo "pulling image: slow mirror" >&2',
        "--worker-id",
        "test-provisioner",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    started = jobs(conn)
    assert [(j["status"], j["worker_id"], j["agents"]) for j in started] == [
        ("succeeded", "test-provisioner", ["ready"])
    ] * 2
    # The plan sees them: eligible, nothing left to do.
    state = conn.execute("select desired, actual, eligible from prebuilds.preset_state").fetchall()
    assert state == [(2, 2, 2)]
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 0
    # The command's output is in the log, under the job and its workspace; stderr too.
    for job in started:
        label = f"job {str(job['job_id'])[:8]} {job['name']}"
        assert f"prebuilds: {label}: building {job['name']}" in done.stdout
        assert f"prebuilds: {label}: pulling image: slow mirror" in done.stdout
        assert f"prebuilds: {label}: start succeeded in" in done.stdout


def test_a_failing_command_fails_the_job_with_the_end_of_its_stderr(
    conn: Conn, db_url: str
) -> None:
    queue_prebuilds(conn, db_url, 1)
    command = 'echo "on stdout"; for i in $(seq 1 30); do echo "problem $i" >&2; done; exit 3'
    done = provision(db_url, command, "--log-format", "json")
    assert done.returncode == 1, "--once exits 1 when a job failed"
    [job] = jobs(conn)
    expected_tail = "\n".join(f"problem {i}" for i in range(31 - TAIL_LINES, 31))
    assert job["status"] == "failed"
    assert job["error"] == f"exit status 3: {expected_tail}"
    assert job["agents"] is None, "no agent is reported for a failed start"
    # JSON logs stay JSON: every line is one object; the failure carries the error.
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert not done.stderr
    [failed] = [r for r in records if r["event"] == "job_failed"]
    assert failed["job_id"] == str(job["job_id"]) and failed["error"] == job["error"]
    assert {r["stream"] for r in records if r["event"] == "job_output"} == {"stdout", "stderr"}


def test_a_command_past_the_job_timeout_is_killed_with_its_process_group(
    conn: Conn, db_url: str, tmp_path: Path
) -> None:
    queue_prebuilds(conn, db_url, 1)
    pgid_file = tmp_path / "pgid"
    # It ignores SIGTERM (and so do its children), so only SIGKILL after the grace ends it; a
    # background child shares its process group.
    command = (
        f"echo $$ > {pgid_file}; trap '' TERM; echo 'building…' >&2; sleep 60 & sleep 60; wait"
    )
    started = time.monotonic()
    done = provision(db_url, command, "--job-timeout", "1s")
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    [job] = jobs(conn)
    assert job["status"] == "failed"
    assert job["error"] == (
        "timed out after 1 s (--job-timeout): command killed; last stderr: building…"
    )
    assert elapsed < 10
    pgid = int(pgid_file.read_text())
    assert live_group_members(pgid) == [], "every process of the command's group is gone"
    assert "killing its command: it ran past --job-timeout (1 s)" in done.stderr


def test_the_command_can_report_its_agent_itself(conn: Conn, db_url: str) -> None:
    queue_prebuilds(conn, db_url, 1)
    done = provision(db_url, "echo PREBUILDS_AGENT=starting; echo more output")
    assert done.returncode == 0, done.stdout + done.stderr
    [job] = jobs(conn)
    assert (job["status"], job["agents"]) == ("succeeded", ["starting"])
    assert scalar(conn, "select eligible from prebuilds.preset_state") == 0
    # The workspace reports ready later (here: as a platform would, with the job id it was given).
    conn.execute("select prebuilds.report_agent_lifecycle(%s, 'main', 'ready')", (job["job_id"],))
    assert scalar(conn, "select eligible from prebuilds.preset_state") == 1


def test_the_command_gets_the_job_in_its_environment_and_on_stdin(
    conn: Conn, db_url: str, tmp_path: Path
) -> None:
    parameters = {"cpu": 4, "region": "eu-west", "image": {"tag": "1.2"}}
    preset = queue_prebuilds(conn, db_url, 1, template="python", parameters=parameters)
    out = tmp_path / "out"
    out.mkdir()
    command = (
        f"env | grep '^PREBUILDS_' | sort > {out}/env; cat > {out}/stdin.json; "
        f"env | grep -c -e '^DATABASE_URL=' -e '^PG' > {out}/secrets || true"
    )
    done = provision(db_url, command, "--worker-id", "w-env")
    assert done.returncode == 0, done.stdout + done.stderr
    [job] = jobs(conn)
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines())
    assert json.loads(env.pop("PREBUILDS_PARAMETERS")) == parameters
    assert env == {
        "PREBUILDS_JOB_ID": str(job["job_id"]),
        "PREBUILDS_TRANSITION": "start",
        "PREBUILDS_WORKSPACE_ID": str(job["workspace_id"]),
        "PREBUILDS_WORKSPACE_NAME": job["name"],
        "PREBUILDS_OWNER": "prebuilds",
        "PREBUILDS_ORGANIZATION": "acme",
        "PREBUILDS_TEMPLATE": "python",
        "PREBUILDS_VERSION": "v1",
        "PREBUILDS_PRESET": "default",
        "PREBUILDS_PRESET_ID": str(preset),
        "PREBUILDS_BUILD_NUMBER": "1",
        "PREBUILDS_WORKER_ID": "w-env",
    }
    assert json.loads((out / "stdin.json").read_text()) == {
        "job_id": str(job["job_id"]),
        "transition": "start",
        "workspace_id": str(job["workspace_id"]),
        "workspace_name": job["name"],
        "owner": "prebuilds",
        "organization": "acme",
        "template": "python",
        "version": "v1",
        "preset": "default",
        "preset_id": str(preset),
        "build_number": 1,
        "worker_id": "w-env",
        "parameters": parameters,
    }
    assert (out / "secrets").read_text().strip() == "0", "no database credentials"


# --- heartbeats --------------------------------------------------------------------------------


def test_heartbeats_advance_while_a_slow_job_runs(conn: Conn, db_url: str) -> None:
    queue_prebuilds(conn, db_url, 1)
    beats: list[Any] = []
    with LiveCli("provision", "--once", "--exec", "sleep 2", *FAST, url=db_url) as cli:
        cli.wait_for(lambda: running_job(conn) is not None, "a running job")
        while (job := jobs(conn)[0])["status"] == "running":
            if not beats or beats[-1] != job["updated_at"]:
                beats.append(job["updated_at"])
            time.sleep(0.05)
        assert cli.proc.wait(timeout=10) == 0, cli.output()
    assert job["status"] == "succeeded"
    # acquire_job's first heartbeat (started_at), then one about every 0.2 s of the 2 s.
    assert len(beats) >= 5, beats
    assert beats == sorted(beats) and beats[0] >= job["started_at"]


def test_a_job_canceled_while_it_runs_is_stopped_at_the_next_heartbeat(
    conn: Conn, db_url: str
) -> None:
    queue_prebuilds(conn, db_url, 1)
    started = time.monotonic()
    with LiveCli("provision", "--once", "--exec", "sleep 30", *FAST, url=db_url) as cli:
        cli.wait_for(lambda: running_job(conn) is not None, "a running job")
        conn.execute("update prebuilds.provisioner_jobs set canceled_at = now()")
        cli.wait_for(lambda: cli.proc.poll() is not None, "the provisioner's exit")
    [job] = jobs(conn)
    assert job["status"] == "canceled"
    assert job["error"] == "the job was canceled or completed elsewhere: command killed"
    assert time.monotonic() - started < 10


# --- signals -----------------------------------------------------------------------------------


def test_sigterm_lets_the_running_job_finish_and_a_second_one_kills_it(
    conn: Conn, db_url: str, tmp_path: Path
) -> None:
    queue_prebuilds(conn, db_url, 2)
    # First SIGTERM: the job in flight finishes and succeeds; the other one is not taken.
    with LiveCli("provision", "--exec", "sleep 2; echo finished", *FAST, url=db_url) as cli:
        cli.wait_for_line(cli.stdout, "provisioning as")
        cli.wait_for(lambda: running_job(conn) is not None, "a running job")
        assert cli.stop(signal.SIGTERM) == 0, cli.output()
    assert sorted(j["status"] for j in jobs(conn)) == ["pending", "succeeded"]
    assert any(line.endswith(": finished") for line in cli.stdout), cli.output()

    # Second SIGTERM: the command's process group is killed and its job failed.
    pgid_file = tmp_path / "pgid"
    with LiveCli(
        "provision", "--exec", f"echo $$ > {pgid_file}; sleep 30", *FAST, url=db_url
    ) as cli:
        cli.wait_for_line(cli.stdout, "provisioning as")
        cli.wait_for(lambda: pgid_file.exists() and running_job(conn) is not None, "a job")
        cli.proc.send_signal(signal.SIGTERM)
        cli.wait_for_line(cli.stdout, "SIGTERM received")
        assert cli.stop(signal.SIGTERM) == 1, cli.output()
    assert sorted((j["status"], j["error"]) for j in jobs(conn)) == [
        ("failed", "provisioner stopped: job killed"),
        ("succeeded", None),
    ]
    assert live_group_members(int(pgid_file.read_text())) == []


# --- concurrency -------------------------------------------------------------------------------


def test_at_most_n_commands_run_at_once_on_n_plus_one_connections(
    conn: Conn, db_url: str, tmp_path: Path
) -> None:
    queue_prebuilds(conn, db_url, 6)
    log = tmp_path / "events"
    command = (
        f'echo "$(date +%s.%N) 1 $PREBUILDS_JOB_ID" >> {log}; sleep 1; '
        f'echo "$(date +%s.%N) -1 $PREBUILDS_JOB_ID" >> {log}'
    )
    connections: list[int] = []
    started = time.monotonic()
    with LiveCli(
        "provision", "--once", "--concurrency", "3", "--exec", command, *FAST, url=db_url
    ) as cli:
        while cli.proc.poll() is None:
            connections.append(
                scalar(
                    conn,
                    "select count(*) from pg_stat_activity "
                    "where application_name = 'prebuilds-provisioner'",
                )
            )
            time.sleep(0.05)
        assert cli.proc.wait() == 0, cli.output()
    elapsed = time.monotonic() - started
    events = sorted(
        (float(at), int(delta)) for at, delta, _ in (line.split() for line in log.open())
    )
    alive, most = 0, 0
    for _, delta in events:
        alive += delta
        most = max(most, alive)
    assert len(events) == 12
    assert most == 3, f"at most 3 commands at once, and 3 were used ({events})"
    assert [j["status"] for j in jobs(conn)] == ["succeeded"] * 6
    assert max(connections) <= 4, connections
    print(f"\n6 jobs of 1 s, --concurrency 3: {elapsed:.2f} s; connections {max(connections)}")


# --- the example -------------------------------------------------------------------------------


def workspace_process(directory: Path) -> int | None:
    """The pid of a workspace's process, if it is running."""
    pidfile = directory / "workspace.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    return pid if live_group_members(pid) else None


@pytest.fixture
def workspaces(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "workspaces"
    yield root
    for pidfile in root.glob("*/workspace.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pidfile.read_text()), signal.SIGKILL)


def test_local_workspace_example_builds_and_removes_real_workspaces(
    conn: Conn, db_url: str, workspaces: Path
) -> None:
    example = str(EXAMPLES / "local-workspace.sh")
    env = {"PREBUILDS_WORKSPACES": str(workspaces)}
    preset = queue_prebuilds(conn, db_url, 2, parameters={"size": "small"})
    done = provision(db_url, example, "--concurrency", "2", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    first = {j["workspace_id"]: j for j in jobs(conn)}
    assert [j["agents"] for j in first.values()] == [["ready"]] * 2, "the script said ready"
    old_processes = {}
    for workspace_id in first:
        directory = workspaces / str(workspace_id)
        old_processes[workspace_id] = workspace_process(directory)
        assert old_processes[workspace_id], f"a live process for {directory}"
        job = json.loads((directory / "job.json").read_text())
        assert job["parameters"] == {"size": "small"}
    assert scalar(conn, "select eligible from prebuilds.preset_state") == 2

    # Invalidation: the next cycle deletes both and creates two more; one provision run does it.
    conn.execute(
        "update prebuilds.presets set last_invalidated_at = now() where id = %s", (preset,)
    )
    result = run_cycle(db_url)
    assert (result.tally("applied", "delete"), result.tally("applied", "create")) == (2, 2)
    done = provision(db_url, example, "--concurrency", "2", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [j["status"] for j in jobs(conn, "delete")] == ["succeeded"] * 2
    for workspace_id, pid in old_processes.items():
        assert not (workspaces / str(workspace_id)).exists()
        assert pid is not None and live_group_members(pid) == []
    replacements = {j["workspace_id"] for j in jobs(conn)} - set(first)
    assert len(replacements) == 2
    assert {p.name for p in workspaces.iterdir()} == {str(w) for w in replacements}
    assert all(workspace_process(workspaces / str(w)) for w in replacements)
    assert scalar(conn, "select eligible from prebuilds.preset_state") == 2
    assert scalar(conn, "select count(*) from prebuilds.reconciliation_actions") == 0


def test_the_examples_are_executable_shell_scripts() -> None:
    for script in sorted(EXAMPLES.glob("*.sh")):
        assert os.access(script, os.X_OK), f"{script} is executable"
        check = subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    assert {p.name for p in EXAMPLES.glob("*.sh")} == {
        "local-workspace.sh",
        "docker-or-terraform.sh",
    }


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: --exec"),
        (("--exec", " "), "--exec must not be empty"),
        (("--exec", "true", "--concurrency", "0"), "--concurrency must be at least 1"),
        (("--exec", "true", "--job-timeout", "soon"), "--job-timeout must be a duration"),
        (("--exec", "true"), "no database: set DATABASE_URL or pass --database-url"),
        (
            ("--exec", "true", "--database-url", "postgresql://nobody@/nope?host=/tmp/none"),
            "cannot run: cannot connect to the database",
        ),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    done = subprocess.run(
        [*CLI, "provision", *args],
        cwd=REPO_ROOT,
        env=cli_env(None),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
