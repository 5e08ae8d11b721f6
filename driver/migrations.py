"""Alembic glue: the frozen SQL of each revision, URL conversion and programmatic upgrades.

Each revision in ``alembic/versions`` runs ``alembic/sql/<rev>_upgrade.sql`` (or
``_downgrade.sql``): a copy of ``db/`` frozen when the revision was written, so an old revision
never changes meaning when ``db/`` moves on.

At run time the Alembic environment is read from the installed package (``prebuilds._alembic``,
the repository's ``alembic/`` folder), never from a checkout; only ``freeze``, a development
command, writes into the checkout's ``alembic/sql``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .dbsource import DB_DIR, REPO_ROOT, manifest_paths, schema_script, sections


def _installed_alembic_dir() -> Path:
    """The directory of ``prebuilds._alembic`` (a namespace package: no __init__.py)."""
    spec = importlib.util.find_spec(f"{__package__}._alembic")
    locations = spec.submodule_search_locations if spec else None
    if not locations:
        raise RuntimeError(f"{__package__}._alembic is not installed: reinstall prebuilds")
    return Path(next(iter(locations)))


#: The Alembic environment as installed.
ALEMBIC_DIR = _installed_alembic_dir()
#: The ini for ``alembic -c``; ``script_location`` is its own directory.
ALEMBIC_INI = ALEMBIC_DIR / "alembic.ini"
FROZEN_DIR = ALEMBIC_DIR / "sql"
#: Where ``freeze`` writes: the checkout's alembic/sql (FROZEN_DIR links there in a checkout's
#: editable install).
CHECKOUT_FROZEN_DIR = REPO_ROOT / "alembic" / "sql"

#: The schema revision this driver speaks; the driver refuses to run against any other.
#: tests/test_migrations.py checks it is alembic's head.
EXPECTED_REVISION = "0015"


def frozen_path(revision: str, direction: str, base: Path = FROZEN_DIR) -> Path:
    return base / f"{revision}_{direction}.sql"


def run_frozen_sql(bind: Any, revision: str, direction: str) -> None:
    """Execute a revision's frozen SQL verbatim (no bind-parameter parsing of ``:x`` or ``%``)."""
    sql = frozen_path(revision, direction).read_text()
    bind.exec_driver_sql(sql, execution_options={"no_parameters": True})


#: Frozen files are hand-written above this line (drops, alters, backfills) and generated below.
FROZEN_MARKER = "-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line\n"


def freeze(revision: str, objects: Sequence[str] = ()) -> list[Path]:
    """Freeze ``db/`` objects into the SQL files of ``revision``; returns the files written.

    Without ``objects``, a revision frozen before is re-frozen with the same objects, and a new
    one becomes the whole schema (an initial revision). With them
    (paths relative to ``db/``), the upgrade gets their current text and the downgrade their text
    as the latest earlier revision froze it, each below ``FROZEN_MARKER``; what a developer wrote
    above the marker (drops, alters) is kept.
    """
    if revision < head_revision():
        raise ValueError(
            f"revision {revision} is older than head {head_revision()}: its SQL is frozen for "
            "good; change db/ and freeze it into a new revision"
        )
    if not DB_DIR.is_dir():
        raise ValueError(
            "freeze needs a checkout of the repository (db/ and alembic/ are not installed)"
        )
    up = frozen_path(revision, "upgrade", CHECKOUT_FROZEN_DIR)
    if not objects and up.exists() and FROZEN_MARKER in up.read_text():
        # Re-freeze the objects this revision already carries.
        objects = list(sections(up.read_text().split(FROZEN_MARKER)[1]))
    if not objects:
        header = (
            f"-- Frozen by `prebuilds freeze {revision}` from db/manifest.txt.\n"
            "-- Never edit: write a new revision instead.\n\n"
        )
        up.write_text(header + schema_script())
        return [up]
    wanted = [o.removeprefix("db/") for o in objects]
    known = {p.relative_to(DB_DIR).as_posix() for p in manifest_paths()}
    if unknown := sorted(set(wanted) - known):
        raise ValueError(f"not in db/manifest.txt: {', '.join(unknown)}")
    earlier = previous_sections(revision)
    restored = "\n".join(earlier[o] for o in manifest_order(wanted) if o in earlier)
    down = frozen_path(revision, "downgrade", CHECKOUT_FROZEN_DIR)
    for path, body in ((up, schema_script(only=set(wanted))), (down, restored)):
        prefix = path.read_text().split(FROZEN_MARKER)[0] if path.exists() else ""
        path.write_text(prefix.rstrip() + "\n\n" + FROZEN_MARKER + "\n" + body)
    return [up, down]


def manifest_order(objects: Sequence[str]) -> list[str]:
    order = [p.relative_to(DB_DIR).as_posix() for p in manifest_paths()]
    return sorted(objects, key=order.index)


def previous_sections(revision: str) -> dict[str, str]:
    """Each object's text as the latest revision before ``revision`` froze it."""
    found: dict[str, str] = {}
    for path in sorted(CHECKOUT_FROZEN_DIR.glob("*_upgrade.sql")):
        rev = path.name.removesuffix("_upgrade.sql")
        if rev < revision:
            found.update(sections(path.read_text()))
    return found


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` → ``postgresql+psycopg://…`` (SQLAlchemy would pick psycopg2)."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql+psycopg://", url)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(ALEMBIC_INI))
    # Alembic's ini interpolation treats % specially.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, target: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), target)


def downgrade(url: str, target: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), target)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()
    if head is None:
        raise RuntimeError("alembic/versions holds no revision")
    return head


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def revision_summaries() -> list[tuple[str, str]]:
    """``(revision, first paragraph of its docstring)`` for every revision, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    return [
        (r.revision, " ".join((r.doc or "").strip().split("\n\n")[0].split()))
        for r in reversed(list(script.walk_revisions()))
    ]


def current_revision(url: str) -> str | None:
    """The database's revision, or None when it has no prebuilds schema yet."""
    import psycopg

    with psycopg.connect(url, prepare_threshold=None, connect_timeout=10) as conn:
        exists = conn.execute("select to_regclass('public.alembic_version') is not null").fetchone()
        if not (exists and exists[0]):
            return None
        row = conn.execute("select version_num from alembic_version").fetchone()
    return row[0] if row else None
