"""Envelope encryption of every secret the manager stores (ADR 0051).

Each secret value is encrypted with AES-256-GCM under a random *data key*; data keys are stored
in the database only *wrapped* (encrypted) by the key-encryption key (KEK), and the KEK never
enters the database. The KEK is reached through a :class:`KeyProvider`: a local 32-byte key from
a file or an environment variable (:class:`LocalKeyProvider`), or any other implementation (a
KMS, an HSM) passed to :func:`sanctum.manager.app.create_app`.

Sealed blob layout (version 1)::

    b"S1" | data-key id (36 ASCII bytes) | nonce (12) | ciphertext + tag

The associated data binds a blob to its *context* (for example ``"manager_secret:token_key"``),
so a blob copied into another row does not decrypt there.

KEK rotation (:func:`rotate_kek`) re-wraps every data key under the new KEK while the old one is
still accepted for unwrapping (a :class:`Keyring` holds current and previous providers), so
replicas keep serving during a rotation.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.errors import EvidenceError, UsageError
from sanctum.manager.models import DataKey, new_id

__all__ = [
    "KeyProvider",
    "Keyring",
    "LocalKeyProvider",
    "SecretBox",
    "ensure_kek_file",
    "load_kek_env",
    "load_kek_file",
    "rotate_kek",
]

KEK_BYTES: Final = 32
_MAGIC: Final = b"S1"
_ID_LEN: Final = 36
_NONCE_LEN: Final = 12
_log = logging.getLogger(__name__)


class KeyProvider(Protocol):
    """Wraps and unwraps data keys under a key-encryption key it never reveals."""

    @property
    def kek_id(self) -> str:
        """Return a stable, non-secret identifier of the KEK (recorded with each data key)."""
        ...

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        """Return ``data_key`` encrypted under the KEK, bound to ``context``."""
        ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Return the data key inside ``wrapped``.

        Raises:
            EvidenceError: ``wrapped`` was not made by this KEK or was altered.
        """
        ...


class LocalKeyProvider:
    """A KEK held in memory (read from a file or an environment variable)."""

    def __init__(self, kek: bytes) -> None:
        """Use the 32-byte ``kek``.

        Raises:
            UsageError: ``kek`` is not 32 bytes (``kek.invalid``).
        """
        if len(kek) != KEK_BYTES:
            raise UsageError(f"a KEK is {KEK_BYTES} bytes, got {len(kek)}", code="kek.invalid")
        self._aead = AESGCM(kek)
        # A fingerprint that identifies the KEK without revealing it.
        self._kek_id = "local:" + hashlib.sha256(b"sanctum-kek-id\x00" + kek).hexdigest()[:16]

    @property
    def kek_id(self) -> str:
        """Return the KEK fingerprint."""
        return self._kek_id

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        """Encrypt ``data_key`` with AES-256-GCM under the KEK."""
        nonce = os.urandom(_NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Decrypt a wrapped data key.

        Raises:
            EvidenceError: The wrapping is corrupt or from another KEK (``kek.unwrap_failed``).
        """
        try:
            return self._aead.decrypt(wrapped[:_NONCE_LEN], wrapped[_NONCE_LEN:], context)
        except InvalidTag as error:
            raise EvidenceError(
                "a data key does not unwrap under this KEK", code="kek.unwrap_failed"
            ) from error


def _decode_kek(text: bytes, origin: str) -> bytes:
    stripped = text.strip()
    if len(text) == KEK_BYTES:
        return text
    try:
        decoded = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UsageError(
            f"the KEK in {origin} is neither 32 raw bytes nor base64", code="kek.invalid"
        ) from error
    if len(decoded) != KEK_BYTES:
        raise UsageError(f"the KEK in {origin} is not 32 bytes", code="kek.invalid")
    return decoded


def load_kek_file(path: Path) -> LocalKeyProvider:
    """Read a KEK file (32 raw bytes or base64 text).

    Raises:
        UsageError: Missing or malformed (``kek.missing``, ``kek.invalid``).
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read the KEK file {path}", code="kek.missing") from error
    return LocalKeyProvider(_decode_kek(data, str(path)))


def load_kek_env(name: str, environ: dict[str, str] | None = None) -> LocalKeyProvider:
    """Read a base64 KEK from the environment variable ``name``.

    Raises:
        UsageError: Unset or malformed (``kek.missing``, ``kek.invalid``).
    """
    value = (environ if environ is not None else dict(os.environ)).get(name)
    if not value:
        raise UsageError(f"the KEK variable {name} is not set", code="kek.missing")
    return LocalKeyProvider(_decode_kek(value.encode(), f"${name}"))


def ensure_kek_file(path: Path) -> tuple[LocalKeyProvider, bool]:
    """Load the KEK at ``path``, creating it (mode 0600) if absent; return it and "created".

    Raises:
        UsageError: The file exists but is malformed.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_kek_file(path), False
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(KEK_BYTES)) + b"\n")
    return load_kek_file(path), True


class Keyring:
    """The current KEK provider plus older ones still accepted for unwrapping."""

    def __init__(self, current: KeyProvider, previous: Sequence[KeyProvider] = ()) -> None:
        """Hold ``current`` (used to wrap) and ``previous`` (only to unwrap)."""
        self.current = current
        self._by_id = {p.kek_id: p for p in (*previous, current)}

    def provider(self, kek_id: str) -> KeyProvider:
        """Return the provider of ``kek_id``.

        Raises:
            EvidenceError: No configured KEK has that id (``kek.unknown``).
        """
        provider = self._by_id.get(kek_id)
        if provider is None:
            raise EvidenceError(
                f"a data key is wrapped by KEK {kek_id}, which is not configured",
                code="kek.unknown",
                hint="configure that KEK as a previous KEK, or restore it",
            )
        return provider


def _wrap_context(data_key_id: str) -> bytes:
    return b"sanctum-data-key\x00" + data_key_id.encode()


class SecretBox:
    """Seals and opens secret values with envelope encryption; caches unwrapped data keys."""

    def __init__(self, keyring: Keyring) -> None:
        """Use ``keyring`` for every data key."""
        self.keyring = keyring
        self._cache: dict[str, AESGCM] = {}
        self._lock = threading.Lock()

    def _active_key(self, session: Session, now: dt.datetime) -> tuple[str, AESGCM]:
        row = session.scalars(
            select(DataKey)
            .where(DataKey.retired_at.is_(None))
            .order_by(DataKey.created_at.desc(), DataKey.id)
            .limit(1)
        ).first()
        if row is None:
            return self.new_data_key(session, now)
        return row.id, self._aead_for(row)

    def new_data_key(self, session: Session, now: dt.datetime) -> tuple[str, AESGCM]:
        """Create and store a new data key (wrapped by the current KEK); return it."""
        key = AESGCM.generate_key(bit_length=256)
        key_id = new_id()
        row = DataKey(
            id=key_id,
            kek_id=self.keyring.current.kek_id,
            created_at=now,
            wrapped_key=self.keyring.current.wrap(key, context=_wrap_context(key_id)),
        )
        session.add(row)
        session.flush()
        aead = AESGCM(key)
        with self._lock:
            self._cache[row.id] = aead
        return row.id, aead

    def _aead_for(self, row: DataKey) -> AESGCM:
        with self._lock:
            cached = self._cache.get(row.id)
        if cached is not None:
            return cached
        key = self.keyring.provider(row.kek_id).unwrap(
            row.wrapped_key, context=_wrap_context(row.id)
        )
        aead = AESGCM(key)
        with self._lock:
            self._cache[row.id] = aead
        return aead

    def seal(self, session: Session, plaintext: bytes, *, context: str, now: dt.datetime) -> bytes:
        """Encrypt ``plaintext`` for storage, bound to ``context``."""
        key_id, aead = self._active_key(session, now)
        nonce = os.urandom(_NONCE_LEN)
        header = _MAGIC + key_id.encode()
        return header + nonce + aead.encrypt(nonce, plaintext, header + context.encode())

    def open(self, session: Session, blob: bytes, *, context: str) -> bytes:
        """Decrypt a blob made by :meth:`seal` with the same ``context``.

        Raises:
            EvidenceError: The blob is malformed, altered, moved to another context, or its data
                key is missing (``secret.corrupt``, ``secret.key_missing``).
        """
        if len(blob) < len(_MAGIC) + _ID_LEN + _NONCE_LEN + 16 or not blob.startswith(_MAGIC):
            raise EvidenceError("a sealed secret is malformed", code="secret.corrupt")
        header = blob[: len(_MAGIC) + _ID_LEN]
        key_id = header[len(_MAGIC) :].decode("ascii", errors="replace")
        row = session.get(DataKey, key_id)
        if row is None:
            raise EvidenceError(
                "the data key of a sealed secret is missing", code="secret.key_missing"
            )
        aead = self._aead_for(row)
        body = blob[len(header) :]
        try:
            return aead.decrypt(body[:_NONCE_LEN], body[_NONCE_LEN:], header + context.encode())
        except InvalidTag as error:
            raise EvidenceError(
                "a sealed secret does not decrypt (altered or moved)", code="secret.corrupt"
            ) from error


def rotate_kek(session: Session, keyring: Keyring) -> int:
    """Re-wrap every data key not yet under ``keyring.current``; return how many changed.

    Secrets themselves are not re-encrypted: only their data keys are re-wrapped, so rotation is
    quick and can run while replicas serve (they accept both KEKs until it is done).

    Raises:
        EvidenceError: A data key's KEK is not in the keyring (``kek.unknown``).
    """
    changed = 0
    current = keyring.current
    rows = session.scalars(select(DataKey).where(DataKey.kek_id != current.kek_id)).all()
    for row in rows:
        context = _wrap_context(row.id)
        key = keyring.provider(row.kek_id).unwrap(row.wrapped_key, context=context)
        row.wrapped_key = current.wrap(key, context=context)
        row.kek_id = current.kek_id
        changed += 1
    session.flush()
    if changed:
        _log.info("re-wrapped %d data keys under KEK %s", changed, current.kek_id)
    return changed
