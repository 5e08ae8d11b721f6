"""create_prebuild runs its statements' cached generic plans (plan_cache_mode =
force_generic_plan): its schedule lookup was planned afresh on every create (issue 9, apply
throughput; bench/apply_pieces.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0008_upgrade.sql and 0008_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
