"""Attestation and issuance: apps, builds, domains, nodes, account CAs, certificates, nonces.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply the revision."""
    op.create_table(
        "attest_nonces",
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("nonce_hash", name=op.f("pk_attest_nonces")),
    )
    op.create_index(
        op.f("ix_attest_nonces_expires_at"), "attest_nonces", ["expires_at"], unique=False
    )
    op.create_table(
        "account_cas",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("root_certificate_pem", sa.Text(), nullable=False),
        sa.Column("issuing_certificate_pem", sa.Text(), nullable=False),
        sa.Column("root_key_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("issuing_key_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_cas_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_cas")),
    )
    op.create_table(
        "apps",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("input_image", sa.String(length=500), nullable=True),
        sa.Column("output_image", sa.String(length=500), nullable=True),
        sa.Column("isvprodid", sa.Integer(), nullable=True),
        sa.Column("min_isvsvn", sa.Integer(), nullable=False),
        sa.Column("enclave_size_mib", sa.Integer(), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("certificate", sa.JSON(), nullable=False),
        sa.Column("install_ca_trust", sa.Boolean(), nullable=False),
        sa.Column("encrypted_dirs", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_apps_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apps")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_apps_account_id_name")),
    )
    op.create_index(op.f("ix_apps_account_id"), "apps", ["account_id"], unique=False)
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("sans", sa.JSON(), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=True),
        sa.Column("build_id", sa.String(length=36), nullable=True),
        sa.Column("node_id", sa.String(length=36), nullable=True),
        sa.Column("instance", sa.String(length=200), nullable=True),
        sa.Column("not_before", sa.DateTime(), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "revoked", name="certificate_status", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revocation_reason", sa.String(length=64), nullable=True),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_certificates_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
        sa.UniqueConstraint("serial", name=op.f("uq_certificates_serial")),
    )
    op.create_index(
        "ix_certificates_account_id_status", "certificates", ["account_id", "status"], unique=False
    )
    op.create_index(op.f("ix_certificates_app_id"), "certificates", ["app_id"], unique=False)
    op.create_index(op.f("ix_certificates_build_id"), "certificates", ["build_id"], unique=False)
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "active",
                "deactivated",
                "failed",
                name="node_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("join_token_hash", sa.String(length=64), nullable=True),
        sa.Column("join_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("tee", sa.String(length=8), nullable=True),
        sa.Column("fmspc", sa.String(length=12), nullable=True),
        sa.Column("pck_identity", sa.String(length=100), nullable=True),
        sa.Column("tcb_status", sa.String(length=64), nullable=True),
        sa.Column("advisory_ids", sa.JSON(), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("flag", sa.String(length=200), nullable=True),
        sa.Column("last_quote", sa.LargeBinary(), nullable=True),
        sa.Column("certificate_serial", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("attested_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_nodes_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_nodes_account_id_name")),
        sa.UniqueConstraint("join_token_hash", name=op.f("uq_nodes_join_token_hash")),
    )
    op.create_index(op.f("ix_nodes_pck_identity"), "nodes", ["pck_identity"], unique=False)
    op.create_table(
        "app_secrets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("delivery", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("sealed_value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_app_secrets_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_secrets")),
        sa.UniqueConstraint("app_id", "name", name=op.f("uq_app_secrets_app_id_name")),
    )
    op.create_table(
        "builds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("image_name", sa.String(length=500), nullable=True),
        sa.Column("image_digest", sa.String(length=100), nullable=True),
        sa.Column("tee", sa.String(length=8), nullable=False),
        sa.Column("measurement", sa.String(length=96), nullable=False),
        sa.Column("signer", sa.String(length=96), nullable=True),
        sa.Column("rtmrs", sa.JSON(), nullable=False),
        sa.Column("isvprodid", sa.Integer(), nullable=True),
        sa.Column("isvsvn", sa.Integer(), nullable=True),
        sa.Column("debug", sa.Boolean(), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "allowlisted",
                "rejected",
                "revoked",
                name="build_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_builds_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_builds_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_builds")),
        sa.UniqueConstraint(
            "account_id", "tee", "measurement", name=op.f("uq_builds_account_id_tee_measurement")
        ),
    )
    op.create_index("ix_builds_app_id_status", "builds", ["app_id", "status"], unique=False)
    op.create_table(
        "domains",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "rejected",
                name="domain_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_domains_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_domains_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domains")),
        sa.UniqueConstraint("app_id", "name", name=op.f("uq_domains_app_id_name")),
    )
    op.create_index(op.f("ix_domains_account_id"), "domains", ["account_id"], unique=False)
    op.create_table(
        "workload_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("build_id", sa.String(length=36), nullable=False),
        sa.Column("certificate_serial", sa.String(length=64), nullable=True),
        sa.Column("attestations", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_workload_instances_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
            name=op.f("fk_workload_instances_app_id_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workload_instances")),
        sa.UniqueConstraint(
            "app_id", "instance", name=op.f("uq_workload_instances_app_id_instance")
        ),
    )
    op.create_index(
        op.f("ix_workload_instances_account_id"), "workload_instances", ["account_id"], unique=False
    )


def downgrade() -> None:
    """Revert the revision."""
    op.drop_index(op.f("ix_workload_instances_account_id"), table_name="workload_instances")
    op.drop_table("workload_instances")
    op.drop_index(op.f("ix_domains_account_id"), table_name="domains")
    op.drop_table("domains")
    op.drop_index("ix_builds_app_id_status", table_name="builds")
    op.drop_table("builds")
    op.drop_table("app_secrets")
    op.drop_index(op.f("ix_nodes_pck_identity"), table_name="nodes")
    op.drop_table("nodes")
    op.drop_index(op.f("ix_certificates_build_id"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_app_id"), table_name="certificates")
    op.drop_index("ix_certificates_account_id_status", table_name="certificates")
    op.drop_table("certificates")
    op.drop_index(op.f("ix_apps_account_id"), table_name="apps")
    op.drop_table("apps")
    op.drop_table("account_cas")
    op.drop_index(op.f("ix_attest_nonces_expires_at"), table_name="attest_nonces")
    op.drop_table("attest_nonces")
