"""SQLAlchemy 2 models of the manager's database.

The schema is owned by the Alembic migrations in :mod:`sanctum.manager.migrations`; a test
checks that they produce exactly these models. Times are stored as UTC and read back
timezone-aware on both SQLite and PostgreSQL (:class:`UTCDateTime`). Nothing secret is stored in
clear: passwords, API keys and invitation tokens are stored as hashes, and secret values as
envelope-encrypted blobs (:mod:`sanctum.manager.secretbox`).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Account",
    "ApiKey",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEntry",
    "AuthFailure",
    "Base",
    "DataKey",
    "Invitation",
    "ManagerSecret",
    "Membership",
    "Role",
    "Task",
    "TaskStatus",
    "TaskVote",
    "User",
    "UserStatus",
    "new_id",
]

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """Return a new random object id (UUID 4 text)."""
    return str(uuid.uuid4())


_NAIVE_DATETIME: Final = "naive datetime given to a UTCDateTime column"
#: SQLAlchemy's default storage format of SQLite ``DATETIME`` values, and the same text as a
#: positional format (what :meth:`UTCDateTime.bind_processor` composes).
_SQLITE_DATETIME_FORMAT: Final = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)
_SQLITE_DATETIME_TEXT: Final = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC and returned timezone-aware (UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Convert an aware time to naive UTC for storage.

        Raises:
            ValueError: ``value`` is naive (a programming error).
        """
        del dialect
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(_NAIVE_DATETIME)
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """Return one function doing :meth:`process_bind_param` and then the dialect's own step.

        SQLAlchemy would call the two in turn for every value bound; the attestation binds a
        dozen timestamps per request (ADR 0120). The composed function gives exactly what they
        give: on PostgreSQL the naive UTC time, on SQLite the same text as its ``DATETIME``
        type's default storage format (any other format falls back to the two steps).
        """
        impl = self.impl_instance.dialect_impl(dialect)
        inner = impl.bind_processor(dialect)
        utc = dt.UTC
        if inner is None:

            def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
                if value is None:
                    return None
                if value.tzinfo is None:
                    raise ValueError(_NAIVE_DATETIME)
                return value.astimezone(utc).replace(tzinfo=None)

            return naive_utc
        if getattr(impl, "_storage_format", None) == _SQLITE_DATETIME_FORMAT:

            def sqlite_text(value: dt.datetime | None) -> str | None:
                if value is None:
                    return None
                if value.tzinfo is None:
                    raise ValueError(_NAIVE_DATETIME)
                value = value.astimezone(utc)
                return _SQLITE_DATETIME_TEXT % (
                    value.year,
                    value.month,
                    value.day,
                    value.hour,
                    value.minute,
                    value.second,
                    value.microsecond,
                )

            return sqlite_text

        def two_steps(value: dt.datetime | None) -> Any:
            return inner(self.process_bind_param(value, dialect))

        return two_steps

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Return the stored time as aware UTC."""
        del dialect
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Role(enum.StrEnum):
    """A member's role in an account, in increasing power."""

    viewer = "viewer"
    editor = "editor"
    administrator = "administrator"

    @property
    def rank(self) -> int:
        """Return the role's power (viewer 1, editor 2, administrator 3)."""
        return _ROLE_RANK[self]


_ROLE_RANK = {Role.viewer: 1, Role.editor: 2, Role.administrator: 3}


class UserStatus(enum.StrEnum):
    """Whether a user may sign in."""

    active = "active"
    disabled = "disabled"
    pending_invite = "pending_invite"


class TaskStatus(enum.StrEnum):
    """Life cycle of an approval task."""

    pending = "pending"
    approved = "approved"
    denied = "denied"
    cancelled = "cancelled"
    expired = "expired"
    failed = "failed"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable migration names)."""

    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 (SQLAlchemy reads it as a class var)
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Account(Base):
    """A tenant: owns users' memberships, API keys, tasks and audit entries."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    quorum: Mapped[int] = mapped_column(Integer, default=1)
    allow_self_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime]


class User(Base):
    """A person who signs in with an email and a password."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[UserStatus] = mapped_column(_enum(UserStatus, "user_status"))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    #: Bearer tokens issued before this (whole second) are refused: set on a password change.
    tokens_valid_after: Mapped[dt.datetime | None]

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class Membership(Base):
    """A user's role in one account."""

    __tablename__ = "memberships"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    created_at: Mapped[dt.datetime]

    user: Mapped[User] = relationship(back_populates="memberships")


class Invitation(Base):
    """A single-use, expiring token that lets an invited user set a password."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class ApiKey(Base):
    """A credential for automation; only a hash of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    #: The owning user; ``None`` for a service-account key (created by an administrator).
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class AuthFailure(Base):
    """One failed sign-in, counted per identity and per source address for rate limiting."""

    __tablename__ = "auth_failures"
    __table_args__ = (Index("ix_auth_failures_scope_subject_at", "scope", "subject", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    scope: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(320))
    at: Mapped[dt.datetime]


class Task(Base):
    """An approval task (M-of-N): a sensitive action waiting for votes."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_account_id_status", "account_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus, "task_status"))
    payload: Mapped[dict[str, Any]]
    summary: Mapped[str] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(36))
    requested_by_type: Mapped[str] = mapped_column(String(16))
    quorum: Mapped[int] = mapped_column(Integer)
    allow_self_approval: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    closed_at: Mapped[dt.datetime | None]
    result_code: Mapped[str | None] = mapped_column(String(100))

    votes: Mapped[list[TaskVote]] = relationship(
        back_populates="task", cascade="all, delete-orphan", order_by="TaskVote.created_at"
    )


class TaskVote(Base):
    """One user's approval or denial of a task; a user votes at most once per task."""

    __tablename__ = "task_votes"
    __table_args__ = (UniqueConstraint("task_id", "voter_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(String(36), ForeignKey("tasks.id", ondelete="CASCADE"))
    voter_id: Mapped[str] = mapped_column(String(36))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime]

    task: Mapped[Task] = relationship(back_populates="votes")


class AuditEntry(Base):
    """One audit log entry, linked to the previous entry of its chain by hash."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_audit_entries_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    chain: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime]
    account_id: Mapped[str | None] = mapped_column(String(36))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_name: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(320))
    outcome: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    source_address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]]


class AuditChainHead(Base):
    """The last link of each audit chain; locked while appending so chains stay linear."""

    __tablename__ = "audit_chain_heads"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime]


class AuditCheckpoint(Base):
    """A signature by the manager's key over a chain head at some point in time."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (UniqueConstraint("chain", "seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    chain: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class DataKey(Base):
    """An AES-256 data key, stored only wrapped by the key-encryption key (KEK)."""

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    retired_at: Mapped[dt.datetime | None]


class ManagerSecret(Base):
    """A named secret of the manager itself (token key, audit signing key), sealed."""

    __tablename__ = "manager_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    public: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
