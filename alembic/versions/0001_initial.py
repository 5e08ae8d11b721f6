"""Initial schema: platform model, reconciliation views, write and provisioner functions.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Frozen SQL: alembic/sql/0001_upgrade.sql and 0001_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
