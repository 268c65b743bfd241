"""SQLAlchemy models of attestation and issuance: apps, builds, domains, nodes, CA, certificates.

These tables extend the manager core's schema (:mod:`sanctum.manager.models`, same declarative
``Base``) and are created by the migration ``0002_attestation``. Secret material never appears
in clear: the account CA's private keys and the apps' secret values are envelope-encrypted
blobs (:mod:`sanctum.manager.secretbox`); challenge nonces are stored as SHA-256 digests.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from sanctum.manager.models import Base, new_id

__all__ = [
    "AccountCaRecord",
    "App",
    "AppSecret",
    "AttestNonce",
    "Build",
    "BuildStatus",
    "CertificateRecord",
    "CertificateStatus",
    "Domain",
    "DomainStatus",
    "Node",
    "NodeStatus",
    "WorkloadInstance",
]


class BuildStatus(enum.StrEnum):
    """Life cycle of a build: approved through a task, revocable by an administrator."""

    pending = "pending"
    allowlisted = "allowlisted"
    rejected = "rejected"
    revoked = "revoked"


class DomainStatus(enum.StrEnum):
    """Life cycle of a certificate name an app asked for."""

    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class NodeStatus(enum.StrEnum):
    """Life cycle of a node (a machine that runs workloads)."""

    pending = "pending"
    active = "active"
    deactivated = "deactivated"
    failed = "failed"


class CertificateStatus(enum.StrEnum):
    """Whether an issued certificate still stands."""

    active = "active"
    revoked = "revoked"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


class AccountCaRecord(Base):
    """An account's root and issuing CA; private keys sealed by the secret box."""

    __tablename__ = "account_cas"

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    root_certificate_pem: Mapped[str] = mapped_column(Text)
    issuing_certificate_pem: Mapped[str] = mapped_column(Text)
    root_key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    issuing_key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]


class App(Base):
    """An application: what its workloads are, what they get, and what evidence it accepts."""

    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")
    input_image: Mapped[str | None] = mapped_column(String(500))
    output_image: Mapped[str | None] = mapped_column(String(500))
    isvprodid: Mapped[int | None] = mapped_column(Integer)
    min_isvsvn: Mapped[int] = mapped_column(Integer, default=0)
    enclave_size_mib: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    #: Certificate subject, key type, validity and the paths inside the workload.
    certificate: Mapped[dict[str, Any]] = mapped_column(JSON)
    install_ca_trust: Mapped[bool] = mapped_column(Boolean, default=False)
    encrypted_dirs: Mapped[list[str]] = mapped_column(JSON)
    env: Mapped[dict[str, Any]] = mapped_column(JSON)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The canonical :class:`~sanctum.manager.policy.AttestationPolicy` (``to_dict`` form).
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class AppSecret(Base):
    """A named secret an app's workloads receive (sealed at rest, write-only through the API)."""

    __tablename__ = "app_secrets"
    __table_args__ = (UniqueConstraint("app_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(String(36), ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    delivery: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(500))
    sealed_value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class Domain(Base):
    """A certificate name (DNS name or IP address) an app wants, approved through a task."""

    __tablename__ = "domains"
    __table_args__ = (UniqueConstraint("app_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[str] = mapped_column(String(36), ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(253))
    status: Mapped[DomainStatus] = mapped_column(_enum(DomainStatus, "domain_status"))
    task_id: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime]
    decided_at: Mapped[dt.datetime | None]


class Build(Base):
    """One converted image of an app: its measurement, approved through a task."""

    __tablename__ = "builds"
    __table_args__ = (
        UniqueConstraint("account_id", "tee", "measurement"),
        Index("ix_builds_app_id_status", "app_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    app_id: Mapped[str] = mapped_column(String(36), ForeignKey("apps.id", ondelete="CASCADE"))
    image_name: Mapped[str | None] = mapped_column(String(500))
    image_digest: Mapped[str | None] = mapped_column(String(100))
    tee: Mapped[str] = mapped_column(String(8))
    #: MRENCLAVE (SGX) or MRTD (TDX), lowercase hex.
    measurement: Mapped[str] = mapped_column(String(96))
    #: MRSIGNER (SGX) or MRSIGNERSEAM (TDX), lowercase hex; ``None`` does not constrain.
    signer: Mapped[str | None] = mapped_column(String(96))
    #: TDX RTMR0..3 the build pins (hex or ``None`` each).
    rtmrs: Mapped[list[str | None]] = mapped_column(JSON)
    isvprodid: Mapped[int | None] = mapped_column(Integer)
    isvsvn: Mapped[int | None] = mapped_column(Integer)
    debug: Mapped[bool] = mapped_column(Boolean, default=False)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[BuildStatus] = mapped_column(_enum(BuildStatus, "build_status"))
    task_id: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime]
    decided_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(36))


class Node(Base):
    """A machine that joined with a single-use token and a verified quote of its platform."""

    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[NodeStatus] = mapped_column(_enum(NodeStatus, "node_status"))
    join_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    join_token_expires_at: Mapped[dt.datetime | None]
    tee: Mapped[str | None] = mapped_column(String(8))
    fmspc: Mapped[str | None] = mapped_column(String(12))
    #: The platform's PCK identity: ``<pce_id>:<ppid>`` (hex), stable across reboots.
    pck_identity: Mapped[str | None] = mapped_column(String(100), index=True)
    tcb_status: Mapped[str | None] = mapped_column(String(64))
    advisory_ids: Mapped[list[str]] = mapped_column(JSON)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Why the node is flagged (its TCB became unacceptable), or ``None``.
    flag: Mapped[str | None] = mapped_column(String(200))
    last_quote: Mapped[bytes | None] = mapped_column(LargeBinary)
    certificate_serial: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime]
    attested_at: Mapped[dt.datetime | None]
    #: The platform's TCB as verified at join (:class:`sanctum.manager.node_tcb.NodePlatformTcb`
    #: JSON): what a re-check evaluates against fresh TCB info.
    platform_tcb: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: The re-check run that holds the node (its lease), and when it claimed it.
    recheck_claim: Mapped[str | None] = mapped_column(String(36))
    recheck_claimed_at: Mapped[dt.datetime | None]
    #: When a re-check last evaluated the node against fresh collateral.
    rechecked_at: Mapped[dt.datetime | None]
    #: The highest ``tcbEvaluationDataNumber`` of the TCB info the node was judged with (join
    #: or re-check): collateral with a lower number is an older issue and is refused.
    tcb_evaluation_data_number: Mapped[int | None] = mapped_column(Integer)
    #: The highest ``tcbEvaluationDataNumber`` of the QE identity the node was judged with (join
    #: or re-check): a QE identity with a lower number is an older issue and is refused.
    qe_tcb_evaluation_data_number: Mapped[int | None] = mapped_column(Integer)


class CertificateRecord(Base):
    """Every certificate the account's issuing CA signed (workloads and nodes)."""

    __tablename__ = "certificates"
    __table_args__ = (Index("ix_certificates_account_id_status", "account_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    #: Serial number, lowercase hex without leading zeros.
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(500))
    sans: Mapped[list[str]] = mapped_column(JSON)
    app_id: Mapped[str | None] = mapped_column(String(36), index=True)
    build_id: Mapped[str | None] = mapped_column(String(36), index=True)
    node_id: Mapped[str | None] = mapped_column(String(36))
    instance: Mapped[str | None] = mapped_column(String(200))
    not_before: Mapped[dt.datetime]
    not_after: Mapped[dt.datetime]
    status: Mapped[CertificateStatus] = mapped_column(
        _enum(CertificateStatus, "certificate_status")
    )
    revoked_at: Mapped[dt.datetime | None]
    revocation_reason: Mapped[str | None] = mapped_column(String(64))
    pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]


class AttestNonce(Base):
    """A challenge nonce (its SHA-256): single use, short-lived, shared by every replica."""

    __tablename__ = "attest_nonces"

    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    used_at: Mapped[dt.datetime | None]


class WorkloadInstance(Base):
    """One running workload instance of an app: when it last attested (renewal, heartbeat)."""

    __tablename__ = "workload_instances"
    __table_args__ = (UniqueConstraint("app_id", "instance"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[str] = mapped_column(String(36), ForeignKey("apps.id", ondelete="CASCADE"))
    instance: Mapped[str] = mapped_column(String(200))
    build_id: Mapped[str] = mapped_column(String(36))
    certificate_serial: Mapped[str | None] = mapped_column(String(64))
    attestations: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
