"""Woken by changes, claims counted (issue 11, SPEC 6.1 and 6.2): claim_prebuild, complete_job and
statement triggers on templates, presets, preset_schedules and settings notify
prebuilds_reconcile; prebuilds.next_change_at(p_now) says when the plan next changes by itself;
every claim is counted, a hit or a miss, per preset and minute in claim_stats (sharded like
preset_counters), shown in preset_state as claims_last_hour and misses_last_hour and pruned after
settings.claim_stats_retention.

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
