"""A cheaper plan read (issue 9): preset_plan_at reads the active presets in one pass over the
live templates with every column the rules need (no second lookup per preset), calls
pool_size_at only for presets sized by schedules or demand, computes the failure-history ranks in
one window and ranks surplus only where a pool has some; preset_schedule_at computes its
reason once instead of once per use (four copies, each planned and run).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0014_upgrade.sql and 0014_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
