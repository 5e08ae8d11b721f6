"""count_claim becomes PL/pgSQL, so PostgreSQL 15 caches the plan of the upsert every claim runs
(a `begin atomic` SQL function is planned on every call there), as revision 0011 did for
count_prebuild_event.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0012_upgrade.sql and 0012_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
