"""The SQL source in ``db/``: its install order and its text as one script.

Used by ``prebuilds freeze`` when writing a new migration, and by the tests that check the
migrations build exactly what ``db/`` describes. Nothing at run time reads ``db/``: migrations
carry frozen copies.
"""

from __future__ import annotations

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


def schema_script(db_dir: Path = DB_DIR) -> str:
    """Every object of ``db/`` as one script, each file headed by its path."""
    parts = []
    for path in manifest_paths(db_dir):
        rel = path.relative_to(db_dir).as_posix()
        parts.append(f"-- >>> db/{rel}\n{path.read_text().rstrip()}\n")
    return "\n".join(parts)
