"""Encrypted directories: rollback floor per key (``epoch``), key rotation (``retired_at``).

Also the record of which key versions were released to which attested key
(``encrypted_dir_key_releases``), so a workload report concerns only keys it was given.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-28 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply the revision."""
    op.add_column(
        "encrypted_dir_keys",
        sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column("encrypted_dir_keys", sa.Column("epoch_updated_at", sa.DateTime(), nullable=True))
    op.add_column(
        "encrypted_dir_keys", sa.Column("rotated_by", sa.String(length=36), nullable=True)
    )
    op.add_column("encrypted_dir_keys", sa.Column("retired_at", sa.DateTime(), nullable=True))
    op.create_table(
        "encrypted_dir_key_releases",
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("dir_key_id", sa.String(length=36), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["dir_key_id"], ["encrypted_dir_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key_fingerprint", "dir_key_id"),
    )


def downgrade() -> None:
    """Revert the revision."""
    op.drop_table("encrypted_dir_key_releases")
    with op.batch_alter_table("encrypted_dir_keys") as batch:
        batch.drop_column("retired_at")
        batch.drop_column("rotated_by")
        batch.drop_column("epoch_updated_at")
        batch.drop_column("epoch")
