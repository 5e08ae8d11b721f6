"""Fixed costs of the plan: schedules parsed once, on write (generated expression_error and
masks columns); readiness and build lookups the planner cannot turn into scans.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

Frozen SQL: alembic/sql/0003_upgrade.sql and 0003_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
