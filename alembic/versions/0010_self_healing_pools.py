"""Self-healing pools (issue 10, SPEC 5): failed deletes retried with exponential backoff then
quarantined (workspaces.delete_failures), hung prebuild jobs failed (fail_job), surplus queued
builds cancelled on active presets, a probe build for hard-limited presets, failures visible
(preset_state.last_error, retrying_deletes, quarantined; the view prebuild_failures) and cleaned
up (settings.failed_prebuild_retention, cleanup_prebuilds).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0010_upgrade.sql and 0010_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
