"""Encrypted directories: the apps' key policies and directory keys (sealed at rest).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply the revision."""
    op.create_table(
        "encrypted_dir_policies",
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column(
            "key_policy",
            sa.Enum(
                "same_build",
                "app_builds",
                name="encrypted_dir_key_policy",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
            name=op.f("fk_encrypted_dir_policies_app_id_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_encrypted_dir_policies")),
    )
    op.create_table(
        "encrypted_dir_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.String(length=48), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_encrypted_dir_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
            name=op.f("fk_encrypted_dir_keys_app_id_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encrypted_dir_keys")),
        sa.UniqueConstraint(
            "app_id",
            "scope",
            "path",
            "version",
            name=op.f("uq_encrypted_dir_keys_app_id_scope_path_version"),
        ),
    )
    op.create_index(
        op.f("ix_encrypted_dir_keys_account_id"), "encrypted_dir_keys", ["account_id"], unique=False
    )


def downgrade() -> None:
    """Revert the revision."""
    op.drop_index(op.f("ix_encrypted_dir_keys_account_id"), table_name="encrypted_dir_keys")
    op.drop_table("encrypted_dir_keys")
    op.drop_table("encrypted_dir_policies")
