"""The files in contrib/ (issue 8): systemd units and the cron file are real files whose
prebuilds command lines parse with the real argument parser, and systemd-analyze accepts the
units where it is installed."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prebuilds.cli import build_parser
from prebuilds.dbsource import REPO_ROOT

CONTRIB = REPO_ROOT / "contrib"
UNITS = sorted((CONTRIB / "systemd").glob("*.service"))
CRON_FILES = sorted((CONTRIB / "cron").iterdir())


def prebuilds_args(command: str) -> list[str]:
    """The arguments of the `prebuilds` command in a shell command line."""
    words = shlex.split(command)
    starts = [i for i, w in enumerate(words) if Path(w).name == "prebuilds" and "/" in w]
    assert starts, f"no …/prebuilds command in {command!r}"
    rest = words[starts[0] + 1 :]
    for stop in (">>", ">", "2>&1", "&&", "|"):
        if stop in rest:
            rest = rest[: rest.index(stop)]
    return rest


def parse(args: list[str]) -> None:
    """Parse with the real parser: an unknown or malformed option fails the test."""
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:  # argparse exits 2 on errors
        pytest.fail(f"prebuilds {' '.join(args)}: does not parse ({exc})")


def test_there_are_units_and_a_cron_file() -> None:
    assert len(UNITS) >= 1 and len(CRON_FILES) >= 1


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_parses_and_its_command_line_is_valid(unit: Path) -> None:
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(unit.read_text())
    assert {"Unit", "Service", "Install"} <= set(ini.sections())
    exec_start = ini["Service"]["ExecStart"]
    parse(prebuilds_args(exec_start))
    assert ini["Service"].get("KillSignal", "SIGTERM") == "SIGTERM"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        # Not a skip: the parse test above still checks the file; this one adds systemd's view.
        print("systemd-analyze is not installed: only the parse test checked", unit.name)
        return
    # Point ExecStart at this environment's real prebuilds so the binary check can pass, and
    # drop the deployment-only lines (user and env file do not exist here).
    executable = str(Path(sys.executable).with_name("prebuilds"))
    lines = []
    for line in unit.read_text().splitlines():
        if line.startswith(("User=", "EnvironmentFile=")):
            continue
        lines.append(line.replace("/opt/prebuilds/venv/bin/prebuilds", executable))
    copy = tmp_path / unit.name
    copy.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        # A container has no running systemd: messages about the manager itself are not about
        # the unit.
        if unit.name in line or "Unknown" in line or "Invalid" in line
    ]
    assert problems == [], proc.stdout + proc.stderr


@pytest.mark.parametrize("cron", CRON_FILES, ids=lambda p: p.name)
def test_cron_file_lines_are_valid(cron: Path) -> None:
    jobs = 0
    for raw in cron.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" in line.split()[0]:
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, f"cron.d lines have 5 time fields, a user and a command: {raw}"
        for field in fields[:5]:
            assert all(part == "*" or part.isdigit() for part in field.split(",")), raw
        parse(prebuilds_args(fields[6]))
        jobs += 1
    assert jobs >= 1
