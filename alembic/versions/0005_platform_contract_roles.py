"""The platform's contract (SPEC 7): publish_template_version, configure_preset and the other
platform functions, presets.parameters; the four group roles, security definer functions and
execute revoked from PUBLIC; the driver's log and prune writes through functions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0005_upgrade.sql and 0005_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
