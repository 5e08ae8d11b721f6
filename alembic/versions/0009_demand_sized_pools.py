"""Demand-sized pools (SPEC 6.3): presets gain min_instances and max_instances; with
max_instances set the pool follows demand, ceil(claims in settings.demand_window * the median
build time of the last 24 hours / window), clamped; pool_size_at computes the size for the plan
and for create_prebuild's re-check alike; preset_state gains demand and desired_reason.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0009_upgrade.sql and 0009_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
