"""next_change_at reads the live prebuilds once: its TTL, backoff, self-healing and hard-limit
branches shared a four-way join that each ran again over every live prebuild; a materialized
`live` CTE in next_change_after now serves them all.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0013_upgrade.sql and 0013_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
