"""The plan's wrappers cache their plan: reconciliation_actions_at and preset_state_at become
PL/pgSQL with a generic plan planned once per connection, preset_plan_at and the new internal
planned_actions_at are inlined into it, and the settings row is estimated as one row (issue 9).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0007_upgrade.sql and 0007_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
