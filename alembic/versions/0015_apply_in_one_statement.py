"""Applying an action in one statement (issue 9, apply throughput): apply_action takes the lock
timeout as an argument (the driver's pipelined writers no longer send a statement of timeouts
before each action), reads the run, takes the write fence and checks the licence in one query,
and returns the workspace instead of a row set; create_prebuild, queue_build and
count_prebuild_event lose their `set search_path` (internal helpers, per the convention);
track_latest_build runs its update's generic plan (it was planned for every build inserted);
create_prebuild's re-check reads the latest build's facts from the workspace, as the plan does.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0015_upgrade.sql and 0015_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
