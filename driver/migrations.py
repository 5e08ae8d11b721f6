"""Alembic glue: the frozen SQL of each revision, URL conversion and programmatic upgrades.

Each revision in ``alembic/versions`` runs ``alembic/sql/<rev>_upgrade.sql`` (or
``_downgrade.sql``): a copy of ``db/`` frozen when the revision was written, so an old revision
never changes meaning when ``db/`` moves on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from driver.dbsource import REPO_ROOT, schema_script

ALEMBIC_INI = REPO_ROOT / "alembic.ini"
FROZEN_DIR = REPO_ROOT / "alembic" / "sql"

#: The schema revision this driver speaks; the driver refuses to run against any other.
#: tests/test_migrations.py checks it is alembic's head.
EXPECTED_REVISION = "0001"


def frozen_path(revision: str, direction: str) -> Path:
    return FROZEN_DIR / f"{revision}_{direction}.sql"


def run_frozen_sql(bind: Any, revision: str, direction: str) -> None:
    """Execute a revision's frozen SQL verbatim (no bind-parameter parsing of ``:x`` or ``%``)."""
    sql = frozen_path(revision, direction).read_text()
    bind.exec_driver_sql(sql, execution_options={"no_parameters": True})


def freeze(revision: str) -> Path:
    """Write the current ``db/`` as the frozen upgrade SQL of ``revision``."""
    path = frozen_path(revision, "upgrade")
    header = (
        f"-- Frozen by `prebuilds freeze {revision}` from db/manifest.txt.\n"
        "-- Never edit: write a new revision instead.\n\n"
    )
    path.write_text(header + schema_script())
    return path


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
