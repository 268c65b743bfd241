"""SQLAlchemy models of background jobs, saved registry credentials and account signing keys.

These tables extend the manager's schema (same declarative ``Base``) and are created by the
migration ``0004_conversion_jobs``. A job row is the whole state of a background job: workers of
every replica claim queued jobs with a database lease (``lease_owner``, ``lease_expires_at``), so
a job whose worker died is picked up again once its lease expires. Secret material is never in
clear: per-request registry credentials are sealed by the secret box while the job runs (and
erased when it ends), saved registry passwords and account signing keys are sealed for good.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sanctum.manager.models import Base, new_id

__all__ = ["AccountSigningKey", "Job", "JobStatus", "RegistryCredential"]


class JobStatus(enum.StrEnum):
    """Life cycle of a background job."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class Job(Base):
    """A background job (a conversion): its request, progress, outcome and lease."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_lease", "status", "lease_expires_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, name="job_status", native_enum=False, length=16, validate_strings=True)
    )
    #: The job's parameters, without any secret (credentials are in ``secrets_sealed``).
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Sealed per-request secrets (registry credentials); erased when the job ends.
    secrets_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(String(2000))
    #: Who asked: ``{"type", "id", "name", "user_id"}`` (the actor the job acts as).
    actor: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(36))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[dt.datetime | None]
    build_id: Mapped[str | None] = mapped_column(String(36))
    task_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class RegistryCredential(Base):
    """Registry credentials an account saved for conversions (password sealed)."""

    __tablename__ = "registry_credentials"
    __table_args__ = (UniqueConstraint("account_id", "host"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    host: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(255))
    password_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class AccountSigningKey(Base):
    """An account's enclave signing key (RSA-3072, e=3), created on first use, sealed."""

    __tablename__ = "account_signing_keys"

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    mrsigner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
