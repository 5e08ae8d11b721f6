"""One writer even when the plan connection dies: runs record their lock holder, every action
checks it behind a write fence, dead runs are marked abandoned; bounded cycles and pool sizes;
the settings row cannot be deleted; time zones must be IANA Area/Location names.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0004_upgrade.sql and 0004_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
