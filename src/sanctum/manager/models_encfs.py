"""SQLAlchemy models of encrypted directories: each app's key policy and directory keys.

An app's encrypted directories (``App.encrypted_dirs``) each get a 256-bit key, created by the
manager on first use and stored only sealed by the secret box (envelope encryption, ADR 0051).
The key *scope* follows the app's policy: ``build:<id>`` for ``same_build`` (each build has its
own key, so no other build can read its data) or ``app`` for ``app_builds`` (one key for every
allowlisted build of the app, so an upgrade keeps its data). Created by migration ``0005``.

Migration ``0006`` adds, per key version, the rollback floor (``epoch``: the highest index epoch
an attested workload reported for the directory under that key, never lowered; ADR 0116) and
the retirement of keys replaced by a rotation (``retired_at``; ADR 0118), and the record of
which key versions were released to which attested key (:class:`EncryptedDirKeyRelease`): a
workload's report may only concern a key version released with its certificate, whatever the
app's key policy is by the time it reports.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from sanctum.manager.models import Base, new_id

__all__ = [
    "EncryptedDirKey",
    "EncryptedDirKeyRelease",
    "EncryptedDirPolicy",
    "KeyPolicy",
    "key_context",
]


class KeyPolicy(enum.StrEnum):
    """Which builds of an app share a directory key."""

    #: Each build has its own key: only the build that wrote the data can read it (default).
    same_build = "same_build"
    #: One key for every allowlisted build of the app: upgrades keep their data.
    app_builds = "app_builds"


class EncryptedDirPolicy(Base):
    """The key policy of an app's encrypted directories (absent: ``same_build``)."""

    __tablename__ = "encrypted_dir_policies"

    app_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    key_policy: Mapped[KeyPolicy] = mapped_column(
        Enum(
            KeyPolicy,
            name="encrypted_dir_key_policy",
            native_enum=False,
            validate_strings=True,
            length=16,
        )
    )
    updated_by: Mapped[str | None] = mapped_column(String(36))
    updated_at: Mapped[dt.datetime]


class EncryptedDirKey(Base):
    """One version of the key of one encrypted directory of an app, in one scope."""

    __tablename__ = "encrypted_dir_keys"
    __table_args__ = (UniqueConstraint("app_id", "scope", "path", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[str] = mapped_column(String(36), ForeignKey("apps.id", ondelete="CASCADE"))
    #: ``app`` or ``build:<build id>``.
    scope: Mapped[str] = mapped_column(String(48))
    path: Mapped[str] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer)
    #: The 32-byte key, sealed by the secret box under :func:`key_context`.
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    #: The highest index epoch reported under this key (the ``min_epoch`` sent back; 0: none).
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    epoch_updated_at: Mapped[dt.datetime | None]
    #: Who made this version by a rotation (``None``: created on first use).
    rotated_by: Mapped[str | None] = mapped_column(String(36))
    #: When a newer version replaced it for good (no longer released); ``None``: still needed.
    retired_at: Mapped[dt.datetime | None]


class EncryptedDirKeyRelease(Base):
    """One key version released, in an attestation response, to one attested workload key.

    Written by ``seal_dir_keys`` inside the attestation's transaction; a report signed by the
    workload key (through its certificate) may concern only the key versions released to it.
    """

    __tablename__ = "encrypted_dir_key_releases"

    #: SHA-256 (hex) of the attested key's SubjectPublicKeyInfo (the certificate's key).
    key_fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    dir_key_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("encrypted_dir_keys.id", ondelete="CASCADE"), primary_key=True
    )
    released_at: Mapped[dt.datetime]


def key_context(app_id: str, scope: str, path: str, version: int) -> str:
    """Return the secret-box context a directory key is sealed under (binds its identity)."""
    return f"encrypted-dir-key:{app_id}:{scope}:{version}:{path}"
