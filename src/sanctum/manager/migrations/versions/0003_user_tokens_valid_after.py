"""Users: ``tokens_valid_after``, so a password change revokes the tokens issued before it.

Revision ID: 0003
Revises: 0005
Create Date: 2026-11-28 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply the revision."""
    op.add_column("users", sa.Column("tokens_valid_after", sa.DateTime(), nullable=True))


def downgrade() -> None:
    """Revert the revision."""
    op.drop_column("users", "tokens_valid_after")
