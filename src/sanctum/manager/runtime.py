"""The manager's long-lived collaborators, built once per app from settings.

:class:`Runtime` bundles the settings, the database, the clock, the secret box, the task type
registry and the manager's own keys (bearer-token key, audit signing key). The keys live in the
database sealed by the secret box (created by whichever replica starts first), so every replica
shares them and none of them exists in clear outside process memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sanctum.manager.clock import Clock
from sanctum.manager.credentials import password_hasher
from sanctum.manager.db import Database
from sanctum.manager.models import ManagerSecret
from sanctum.manager.secretbox import SecretBox
from sanctum.manager.services.audit import AuditSigner, key_id_of
from sanctum.manager.services.tasks import TaskRegistry
from sanctum.manager.settings import ManagerSettings

__all__ = ["Runtime", "load_or_create_secret"]

_log = logging.getLogger(__name__)
TOKEN_KEY_NAME = "bearer_token_key"  # noqa: S105 (a row name, not a secret)
AUDIT_KEY_NAME = "audit_signing_key"


def load_or_create_secret(
    session: Session,
    box: SecretBox,
    name: str,
    make: Callable[[], tuple[bytes, str | None]],
    now: dt.datetime,
) -> tuple[bytes, str | None]:
    """Return the sealed manager secret ``name``, creating it with ``make`` if absent.

    Concurrent first starts are safe: the insert does nothing if another replica won, and
    everyone then reads the winner's value.
    """
    existing = session.get(ManagerSecret, name)
    if existing is None:
        value, public = make()
        values = {
            "name": name,
            "sealed": box.seal(session, value, context=f"manager_secret:{name}", now=now),
            "public": public,
            "created_at": now,
        }
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                postgresql.insert(ManagerSecret).values(values).on_conflict_do_nothing()
            )
        else:
            session.execute(sqlite.insert(ManagerSecret).values(values).on_conflict_do_nothing())
        existing = session.scalars(select(ManagerSecret).where(ManagerSecret.name == name)).one()
    plain = box.open(session, existing.sealed, context=f"manager_secret:{name}")
    return plain, existing.public


def _new_audit_key() -> tuple[bytes, str | None]:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return raw, public.decode()


@dataclass
class Runtime:
    """Everything a request needs besides the request itself."""

    settings: ManagerSettings
    db: Database
    clock: Clock
    box: SecretBox
    tasks: TaskRegistry
    token_key: bytes = b""
    signer: AuditSigner | None = None
    audit_public_keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    @property
    def hasher(self) -> PasswordHasher:
        """Return the password hasher the settings call for."""
        return password_hasher(unsafe_fast=self.settings.unsafe_fast_password_hashing)

    def load_keys(self) -> None:
        """Load (or on first start create) the bearer-token key and the audit signing key."""
        now = self.clock.now()
        with self.db.transaction() as session:
            self.token_key, _ = load_or_create_secret(
                session,
                self.box,
                TOKEN_KEY_NAME,
                lambda: (secrets.token_bytes(32), None),
                now,
            )
            raw, _ = load_or_create_secret(session, self.box, AUDIT_KEY_NAME, _new_audit_key, now)
        signer = AuditSigner(Ed25519PrivateKey.from_private_bytes(raw))
        self.signer = signer
        self.audit_public_keys = {signer.key_id: signer.public_key}

    def audit_signer(self) -> AuditSigner:
        """Return the audit signing key.

        Raises:
            RuntimeError: :meth:`load_keys` was not called (a programming error).
        """
        if self.signer is None:
            msg = "Runtime.load_keys() was not called"
            raise RuntimeError(msg)
        return self.signer


def audit_key_id(public_key: Ed25519PublicKey) -> str:
    """Return the fingerprint of an audit public key (re-exported for the API)."""
    return key_id_of(public_key)
