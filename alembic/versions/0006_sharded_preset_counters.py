"""Sharded preset_counters: a claim counts into its backend's shard row of the preset
(pg_backend_pid() % 16), so concurrent claims of one preset no longer queue on one counter row
until commit (issue 9, the claim path under load; bench/claims.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Frozen SQL: alembic/sql/0006_upgrade.sql and 0006_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
