"""Adoptable by a real platform: provisioner heartbeats (provisioner_jobs.updated_at,
heartbeat_job), acquire_job returns what to build, presets carry parameters.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

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
