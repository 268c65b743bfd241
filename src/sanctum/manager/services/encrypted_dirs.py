"""Keys of the apps' encrypted directories: created on first use, released only to attested builds.

Each directory an app lists (``App.encrypted_dirs``) has a 256-bit key held by the manager,
sealed at rest by the secret box (ADR 0051). The app's key policy decides the key's scope:

- ``same_build`` (the default, the safe one): one key per build, so data written by a build can
  be read only by that build;
- ``app_builds``: one key for every allowlisted build of the app, so an upgrade keeps its data.

Keys leave the manager in exactly two ways: sealed to the attested key in a successful
attestation response (:func:`seal_dir_keys`, called by the attestation service inside its
savepoint), and to an administrator for offline ``sanctum files`` use (:func:`export_dir_key`,
always audited). Changing the policy is administrator-only and audited; it does not move data:
directories written under the old scope keep their old keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sanctum.errors import NotFoundError, UsageError
from sanctum.manager.models_attestation import App, Build
from sanctum.manager.models_encfs import EncryptedDirKey, EncryptedDirPolicy, KeyPolicy, key_context
from sanctum.manager.services.audit import Severity, audit
from sanctum.manager.services.context import ServiceContext
from sanctum.protocol.messages import SealedBoxWire, SealedDirKey, dir_key_aad
from sanctum.protocol.sealing import seal

__all__ = [
    "DIR_KEY_SIZE",
    "DirKeyInfo",
    "ExportedDirKey",
    "export_dir_key",
    "get_policy",
    "list_dir_keys",
    "seal_dir_keys",
    "set_policy",
]

#: Bytes of a directory key (AES-256; see :data:`sanctum.encfs.KEY_SIZE`).
DIR_KEY_SIZE = 32


@dataclass(frozen=True, slots=True)
class DirKeyInfo:
    """What may be shown about a stored key (never the key).

    Attributes:
        path: The directory.
        scope: ``app`` or ``build:<id>``.
        version: The key version.
        created_at: When the key was created (RFC 3339).
    """

    path: str
    scope: str
    version: int
    created_at: str


@dataclass(frozen=True, slots=True)
class ExportedDirKey:
    """A directory key handed to an administrator.

    Attributes:
        path: The directory.
        scope: ``app`` or ``build:<id>``.
        version: The key version.
        key: The 32-byte key.
        created: Whether this request created the key.
    """

    path: str
    scope: str
    version: int
    key: bytes
    created: bool


def get_policy(ctx: ServiceContext, app: App) -> KeyPolicy:
    """Return the app's key policy (``same_build`` when none was set)."""
    row = ctx.session.get(EncryptedDirPolicy, app.id)
    return KeyPolicy.same_build if row is None else row.key_policy


def set_policy(ctx: ServiceContext, app: App, policy: KeyPolicy) -> KeyPolicy:
    """Set the app's key policy (audited; existing keys stay where they are).

    Returns:
        The previous policy.
    """
    previous = get_policy(ctx, app)
    row = ctx.session.get(EncryptedDirPolicy, app.id)
    if row is None:
        row = EncryptedDirPolicy(app_id=app.id, key_policy=policy, updated_at=ctx.now)
        ctx.session.add(row)
    row.key_policy = policy
    row.updated_at = ctx.now
    row.updated_by = ctx.actor.user_id
    ctx.session.flush()
    audit(
        ctx,
        "app.encrypted_dir_policy_set",
        account_id=app.account_id,
        target_type="app",
        target_id=app.id,
        details={"previous": previous.value, "policy": policy.value},
    )
    return previous


def _scope(policy: KeyPolicy, build_id: str) -> str:
    return "app" if policy is KeyPolicy.app_builds else f"build:{build_id}"


def _current(ctx: ServiceContext, app: App, scope: str, path: str) -> EncryptedDirKey | None:
    return ctx.session.scalars(
        select(EncryptedDirKey)
        .where(
            EncryptedDirKey.app_id == app.id,
            EncryptedDirKey.scope == scope,
            EncryptedDirKey.path == path,
        )
        .order_by(EncryptedDirKey.version.desc())
        .limit(1)
    ).first()


def _open(ctx: ServiceContext, row: EncryptedDirKey) -> bytes:
    """Return the clear key of ``row``.

    Raises:
        EvidenceError: The sealed key does not open (``secret.*``).
    """
    return ctx.runtime.box.open(
        ctx.session,
        row.sealed_key,
        context=key_context(row.app_id, row.scope, row.path, row.version),
    )


def _key_of(
    ctx: ServiceContext, app: App, scope: str, path: str, *, reason: str
) -> tuple[EncryptedDirKey, bytes, bool]:
    """Return the newest key row of ``path`` in ``scope`` and its clear key; create it if none.

    Raises:
        EvidenceError: A stored key does not unseal (``secret.*``).
    """
    row = _current(ctx, app, scope, path)
    if row is not None:
        return row, _open(ctx, row), False
    key = os.urandom(DIR_KEY_SIZE)
    row = EncryptedDirKey(
        account_id=app.account_id,
        app_id=app.id,
        scope=scope,
        path=path,
        version=1,
        sealed_key=ctx.runtime.box.seal(
            ctx.session, key, context=key_context(app.id, scope, path, 1), now=ctx.now
        ),
        created_at=ctx.now,
    )
    try:
        with ctx.session.begin_nested():
            ctx.session.add(row)
    except IntegrityError:
        # A concurrent first attestation of the same scope created it: use that one.
        winner = _current(ctx, app, scope, path)
        if winner is None:  # pragma: no cover (the conflicting row is committed)
            raise
        return winner, _open(ctx, winner), False
    audit(
        ctx,
        "app.encrypted_dir_key_created",
        account_id=app.account_id,
        target_type="app",
        target_id=app.id,
        details={"path": path, "scope": scope, "version": 1, "reason": reason},
    )
    return row, key, True


def seal_dir_keys(
    ctx: ServiceContext, app: App, build_id: str, public_key: PublicKeyTypes, *, info: bytes
) -> list[SealedDirKey]:
    """Return the keys of every encrypted directory of ``app`` sealed to ``public_key``.

    Call this only once the attestation of ``build_id`` passed every check: it creates missing
    keys (in the caller's transaction) and releases them. Each box uses the attestation's
    sealing ``info`` (the same context as the secrets) and an associated data naming the
    directory and key version, so boxes cannot be swapped between directories.

    Args:
        ctx: The unit of work (the attestation's savepoint).
        app: The attested app.
        build_id: The allowlisted build the quote matched.
        public_key: The attested key (from the CSR).
        info: The sealing context's ``info`` bytes.

    Returns:
        One sealed key per directory, in the app's order.

    Raises:
        EvidenceError: A stored key does not unseal.
        SealingError: ``public_key`` cannot be sealed to.
    """
    if not app.encrypted_dirs:
        return []
    scope = _scope(get_policy(ctx, app), build_id)
    sealed: list[SealedDirKey] = []
    for path in dict.fromkeys(app.encrypted_dirs):
        row, key, _created = _key_of(ctx, app, scope, path, reason="attestation")
        box = seal(public_key, key, info=info, aad=dir_key_aad(path=path, version=row.version))
        sealed.append(SealedDirKey(path=path, version=row.version, box=SealedBoxWire.from_box(box)))
    return sealed


def list_dir_keys(ctx: ServiceContext, app: App) -> list[DirKeyInfo]:
    """Return every stored key version of ``app`` (metadata only)."""
    rows = ctx.session.scalars(
        select(EncryptedDirKey)
        .where(EncryptedDirKey.app_id == app.id)
        .order_by(EncryptedDirKey.path, EncryptedDirKey.scope, EncryptedDirKey.version)
    ).all()
    return [
        DirKeyInfo(
            path=row.path,
            scope=row.scope,
            version=row.version,
            created_at=row.created_at.isoformat(),
        )
        for row in rows
    ]


def _directory(app: App, name: str) -> str:
    """Return the directory of ``app`` that ``name`` designates.

    ``name`` is the path without its leading slash, slashes written as ``:`` (URL path
    segments cannot hold ``/``), or the path itself.

    Raises:
        NotFoundError: The app has no such directory (``encrypted_dir.not_found``).
    """
    candidates: Sequence[str] = app.encrypted_dirs
    wanted = name if name.startswith("/") else "/" + name.replace(":", "/")
    if wanted.rstrip("/") in candidates:
        return wanted.rstrip("/")
    raise NotFoundError(
        f"app {app.name!r} has no encrypted directory {wanted!r}",
        code="encrypted_dir.not_found",
        hint=f"the app's encrypted directories: {', '.join(candidates) or 'none'}",
    )


def export_dir_key(ctx: ServiceContext, app: App, name: str, build: Build | None) -> ExportedDirKey:
    """Return a directory key for offline use by an administrator (audited at warning level).

    Under ``same_build`` the build whose key is wanted must be given; under ``app_builds`` it
    must not. A missing key is created, so operators can pre-encrypt input data before the
    first start.

    Raises:
        NotFoundError: No such directory (``encrypted_dir.not_found``).
        UsageError: The build is missing, superfluous or of another app
            (``encrypted_dir.build_invalid``).
        EvidenceError: The stored key does not unseal.
    """
    path = _directory(app, name)
    policy = get_policy(ctx, app)
    if policy is KeyPolicy.same_build:
        if build is None or build.app_id != app.id:
            raise UsageError(
                "the app's key policy is same_build: name one of its builds",
                code="encrypted_dir.build_invalid",
                hint="pass ?build=<build id or measurement>",
            )
        scope = _scope(policy, build.id)
    else:
        if build is not None:
            raise UsageError(
                "the app's key policy is app_builds: its builds share one key, omit the build",
                code="encrypted_dir.build_invalid",
            )
        scope = "app"
    row, key, created = _key_of(ctx, app, scope, path, reason="export")
    audit(
        ctx,
        "app.encrypted_dir_key_exported",
        account_id=app.account_id,
        target_type="app",
        target_id=app.id,
        severity=Severity.warning,
        details={"path": path, "scope": scope, "version": row.version, "created": created},
    )
    return ExportedDirKey(path=path, scope=scope, version=row.version, key=key, created=created)
