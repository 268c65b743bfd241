"""Nodes: the QE identity's tcbEvaluationDataNumber high-water mark, next to the TCB info's.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply the revision."""
    op.add_column("nodes", sa.Column("qe_tcb_evaluation_data_number", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Revert the revision."""
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("qe_tcb_evaluation_data_number")
