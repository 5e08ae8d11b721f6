"""The SQL source in ``db/``: its install order and its text as one script.

Used by ``prebuilds freeze`` when writing a new migration, and by the tests that check the
migrations build exactly what ``db/`` describes. Nothing at run time reads ``db/``: migrations
carry frozen copies.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DB_DIR = REPO_ROOT / "db"
MANIFEST = DB_DIR / "manifest.txt"


def manifest_paths(db_dir: Path = DB_DIR) -> list[Path]:
    """The files of ``db/`` in install order, as listed in ``manifest.txt``."""
    paths = []
    for raw in (db_dir / "manifest.txt").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            path = db_dir / line
            if not path.is_file():
                raise FileNotFoundError(f"db/manifest.txt lists {line}, which does not exist")
            paths.append(path)
    return paths


def unlisted_files(db_dir: Path = DB_DIR) -> list[Path]:
    """SQL files in ``db/`` that the manifest forgets (a new object nobody installs)."""
    listed = set(manifest_paths(db_dir))
    return sorted(p for p in db_dir.rglob("*.sql") if p not in listed)


SECTION = re.compile(r"^-- >>> db/(\S+)\n", re.MULTILINE)


def section(rel: str, text: str) -> str:
    """One object's text headed by its path, as frozen files hold it."""
    return f"-- >>> db/{rel}\n{text.rstrip()}\n"


def schema_script(db_dir: Path = DB_DIR, only: Collection[str] | None = None) -> str:
    """The objects of ``db/`` (all, or those in ``only``) as one script, in manifest order."""
    parts = []
    for path in manifest_paths(db_dir):
        rel = path.relative_to(db_dir).as_posix()
        if only is None or rel in only:
            parts.append(section(rel, path.read_text()))
    return "\n".join(parts)


def sections(script: str) -> dict[str, str]:
    """Split a frozen script back into ``{path relative to db/: section text}``."""
    marks = list(SECTION.finditer(script))
    return {
        m[1]: script[
            m.start() : marks[i + 1].start() if i + 1 < len(marks) else len(script)
        ].rstrip()
        + "\n"
        for i, m in enumerate(marks)
    }
