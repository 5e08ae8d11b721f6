"""Schedules evaluated in SQL, lifetime counters for metrics, run retention, interrupted runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Frozen SQL: alembic/sql/0002_upgrade.sql and 0002_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
