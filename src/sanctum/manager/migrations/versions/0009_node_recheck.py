"""Nodes: the platform TCB recorded at join, the re-check's lease and the TCB data high-water mark.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-28 09:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply the revision."""
    op.add_column("nodes", sa.Column("platform_tcb", sa.JSON(), nullable=True))
    op.add_column("nodes", sa.Column("recheck_claim", sa.String(length=36), nullable=True))
    op.add_column("nodes", sa.Column("recheck_claimed_at", sa.DateTime(), nullable=True))
    op.add_column("nodes", sa.Column("rechecked_at", sa.DateTime(), nullable=True))
    op.add_column("nodes", sa.Column("tcb_evaluation_data_number", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Revert the revision."""
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("tcb_evaluation_data_number")
        batch.drop_column("rechecked_at")
        batch.drop_column("recheck_claimed_at")
        batch.drop_column("recheck_claim")
        batch.drop_column("platform_tcb")
