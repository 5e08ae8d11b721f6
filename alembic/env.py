"""Alembic environment: raw-SQL migrations of the prebuilds schema, run online only.

The URL comes from ``-x url=…``, else the ``sqlalchemy.url`` the caller set (the driver does
this), else ``DATABASE_URL``. Plain ``postgresql://`` URLs are accepted.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from prebuilds.migrations import sqlalchemy_url

config = context.config
url = (
    context.get_x_argument(as_dictionary=True).get("url")
    or config.get_main_option("sqlalchemy.url")
    or os.environ.get("DATABASE_URL")
)
if not url:
    raise SystemExit("alembic: no database given; set DATABASE_URL or pass -x url=postgresql://…")

engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
