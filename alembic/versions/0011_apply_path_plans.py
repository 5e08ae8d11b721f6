"""The apply path's server time (issue 9, apply throughput; bench/apply_pieces.py):
create_prebuild runs its cached generic plans (its schedule lookup was planned afresh on every
create), write_fence_key and reconcile_lock_held lose a `set search_path` that kept them from
being inlined, and count_prebuild_event becomes PL/pgSQL so PostgreSQL 15 caches its plan.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29

Frozen SQL: alembic/sql/0011_upgrade.sql and 0011_downgrade.sql.
"""

from alembic import op

from prebuilds.migrations import run_frozen_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "upgrade")


def downgrade() -> None:
    run_frozen_sql(op.get_bind(), revision, "downgrade")
