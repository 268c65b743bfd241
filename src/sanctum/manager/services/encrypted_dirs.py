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

Rollback floor (ADR 0116): every key version records the highest index epoch an attested
workload reported for its directory (:func:`record_dir_report`, a signed report checked
against the manager's record of the workload's certificate); the attestation response carries
it as ``min_epoch``, and the workload refuses an older copy. The floor only ever rises.

Rotation (ADR 0118): an administrator adds a key version (:func:`rotate_dir_key`); until the
workload reports the directory re-encrypted (a ``rotated`` report), the attestation response
carries the new key *and* the older versions still needed; the report (or an administrator's
forced :func:`retire_dir_keys`) retires them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from sanctum.errors import ConflictError, EvidenceError, NotFoundError, UsageError
from sanctum.manager.models_attestation import (
    AccountCaRecord,
    App,
    Build,
    CertificateRecord,
    CertificateStatus,
)
from sanctum.manager.models_encfs import (
    EncryptedDirKey,
    EncryptedDirKeyRelease,
    EncryptedDirPolicy,
    KeyPolicy,
    key_context,
)
from sanctum.manager.services.audit import Severity, audit
from sanctum.manager.services.certificates import serial_hex
from sanctum.manager.services.context import ServiceContext
from sanctum.protocol.dir_reports import (
    DirReport,
    DirReportAnswer,
    SignedDirReport,
    verify_dir_report_signature,
)
from sanctum.protocol.messages import (
    SealedBoxWire,
    SealedDirKey,
    SealedPreviousDirKey,
    dir_key_aad,
)
from sanctum.protocol.sealing import seal

__all__ = [
    "DIR_KEY_SIZE",
    "CertifiedWorkload",
    "DirKeyInfo",
    "ExportedDirKey",
    "certified_workload",
    "directory_of",
    "export_dir_key",
    "get_policy",
    "key_fingerprint",
    "list_dir_keys",
    "record_dir_report",
    "retire_dir_keys",
    "rotate_dir_key",
    "seal_dir_keys",
    "set_policy",
]

#: Bytes of a directory key (AES-256; see :data:`sanctum.encfs.KEY_SIZE`).
DIR_KEY_SIZE = 32
#: Most key versions of one directory released at once (the current one and older ones).
MAX_LIVE_VERSIONS: Final = 8


@dataclass(frozen=True, slots=True)
class DirKeyInfo:
    """What may be shown about a stored key (never the key).

    Attributes:
        path: The directory.
        scope: ``app`` or ``build:<id>``.
        version: The key version.
        created_at: When the key was created (RFC 3339).
        min_epoch: The rollback floor recorded under this key (0: none yet).
        retired_at: When the version was retired (RFC 3339), or ``None`` while released.
    """

    path: str
    scope: str
    version: int
    created_at: str
    min_epoch: int = 0
    retired_at: str | None = None


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


def _live_keys(ctx: ServiceContext, app: App, scope: str) -> dict[str, list[EncryptedDirKey]]:
    """Return the unretired key versions of every directory of ``app`` in ``scope``, newest first.

    One query for all directories (the attestation's hot path).
    """
    live: defaultdict[str, list[EncryptedDirKey]] = defaultdict(list)
    for stored in ctx.session.scalars(
        select(EncryptedDirKey)
        .where(
            EncryptedDirKey.app_id == app.id,
            EncryptedDirKey.scope == scope,
            EncryptedDirKey.retired_at.is_(None),
        )
        .order_by(EncryptedDirKey.version.desc())
    ):
        live[stored.path].append(stored)
    return dict(live)


def key_fingerprint(public_key: PublicKeyTypes) -> str:
    """Return the SHA-256 (hex) of ``public_key``'s SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def _record_releases(
    ctx: ServiceContext, public_key: PublicKeyTypes, rows: Sequence[EncryptedDirKey]
) -> None:
    """Record that ``rows`` were released to ``public_key`` (in the attestation's transaction)."""
    fingerprint = key_fingerprint(public_key)
    known = set(
        ctx.session.scalars(
            select(EncryptedDirKeyRelease.dir_key_id).where(
                EncryptedDirKeyRelease.key_fingerprint == fingerprint
            )
        )
    )
    fresh = [row for row in rows if row.id not in known]
    if not fresh:
        return
    try:
        with ctx.session.begin_nested():
            ctx.session.add_all(
                EncryptedDirKeyRelease(
                    key_fingerprint=fingerprint, dir_key_id=row.id, released_at=ctx.now
                )
                for row in fresh
            )
    except IntegrityError:
        # A concurrent attestation with the same key recorded them: nothing is missing.
        return


def seal_dir_keys(
    ctx: ServiceContext, app: App, build_id: str, public_key: PublicKeyTypes, *, info: bytes
) -> list[SealedDirKey]:
    """Return the keys of every encrypted directory of ``app`` sealed to ``public_key``.

    Call this only once the attestation of ``build_id`` passed every check: it creates missing
    keys (in the caller's transaction) and releases them, recording which key versions were
    released to ``public_key`` (a later report of the workload may concern only those). Each
    box uses the attestation's sealing ``info`` (the same context as the secrets) and an
    associated data naming the directory and key version, so boxes cannot be swapped between
    directories.

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
    live = _live_keys(ctx, app, scope)
    sealed: list[SealedDirKey] = []
    released: list[EncryptedDirKey] = []
    for path in dict.fromkeys(app.encrypted_dirs):
        rows = live.get(path)
        if rows:
            row, key = rows[0], _open(ctx, rows[0])
        else:
            row, key, _created = _key_of(ctx, app, scope, path, reason="attestation")
            rows = [row]
        released.extend(rows[:MAX_LIVE_VERSIONS])
        box = seal(public_key, key, info=info, aad=dir_key_aad(path=path, version=row.version))
        previous = [
            SealedPreviousDirKey(
                version=older.version,
                min_epoch=older.epoch or None,
                box=SealedBoxWire.from_box(
                    seal(
                        public_key,
                        _open(ctx, older),
                        info=info,
                        aad=dir_key_aad(path=path, version=older.version),
                    )
                ),
            )
            for older in rows[1:MAX_LIVE_VERSIONS]
        ]
        sealed.append(
            SealedDirKey(
                path=path,
                version=row.version,
                min_epoch=row.epoch or None,
                box=SealedBoxWire.from_box(box),
                previous=previous,
            )
        )
    _record_releases(ctx, public_key, released)
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
            min_epoch=row.epoch,
            retired_at=None if row.retired_at is None else row.retired_at.isoformat(),
        )
        for row in rows
    ]


def directory_of(app: App, name: str) -> str:
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


def _admin_scope(ctx: ServiceContext, app: App, build: Build | None) -> str:
    """Return the key scope an administrator's request designates.

    Raises:
        UsageError: The build is missing, superfluous or of another app
            (``encrypted_dir.build_invalid``).
    """
    policy = get_policy(ctx, app)
    if policy is KeyPolicy.same_build:
        if build is None or build.app_id != app.id:
            raise UsageError(
                "the app's key policy is same_build: name one of its builds",
                code="encrypted_dir.build_invalid",
                hint="pass ?build=<build id or measurement>",
            )
        return _scope(policy, build.id)
    if build is not None:
        raise UsageError(
            "the app's key policy is app_builds: its builds share one key, omit the build",
            code="encrypted_dir.build_invalid",
        )
    return "app"


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
    path = directory_of(app, name)
    scope = _admin_scope(ctx, app, build)
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


# --- Workload reports: the rollback floor and the end of a rotation (ADRs 0116, 0118) ---------


@dataclass(frozen=True, slots=True)
class CertifiedWorkload:
    """A workload proven by a signature of its attested key (see :func:`certified_workload`).

    Attributes:
        account_id: The account whose CA issued the certificate.
        app_id: The app the certificate was issued to.
        build_id: The allowlisted build the workload attested as.
        instance: The instance id it gave at attestation, if any.
        serial: The certificate's serial (hex).
        report: The verified report.
        key_fingerprint: SHA-256 (hex) of the certificate's (attested) key.
    """

    account_id: str
    app_id: str
    build_id: str
    instance: str | None
    serial: str
    report: DirReport
    key_fingerprint: str = ""


def _refuse(message: str, code: str) -> EvidenceError:
    return EvidenceError(message, code=code, hint="attest again to get a current certificate")


def _issued_by_account_ca(
    ctx: ServiceContext, account_id: str, certificate: x509.Certificate
) -> bool:
    """Return whether the account's issuing CA signed ``certificate``."""
    ca = ctx.session.get(AccountCaRecord, account_id)
    if ca is None:
        return False
    try:
        issuing = x509.load_pem_x509_certificate(ca.issuing_certificate_pem.encode("ascii"))
        certificate.verify_directly_issued_by(issuing)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def certified_workload(ctx: ServiceContext, signed: SignedDirReport) -> CertifiedWorkload:
    """Authenticate a workload's report: its certificate, then its signature.

    The certificate must be one this manager issued to an app's attested workload (the same
    bytes as its record), still active, valid now, and signed by the account's issuing CA; the
    report must be signed by the certificate's key (the attested key, held only by the
    workload). The app, build and instance come from the
    manager's record of the certificate, never from the request.

    Raises:
        EvidenceError: ``dir_report.certificate_invalid``, ``dir_report.certificate_unknown``,
            ``dir_report.certificate_revoked``, ``dir_report.certificate_expired``,
            ``dir_report.signature_invalid`` or ``dir_report.malformed``.
    """
    try:
        certificate = x509.load_pem_x509_certificate(signed.certificate.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise _refuse(
            "the report's certificate is not a PEM certificate", "dir_report.certificate_invalid"
        ) from None
    record = ctx.session.scalars(
        select(CertificateRecord).where(
            CertificateRecord.serial == serial_hex(certificate.serial_number)
        )
    ).first()
    if (
        record is None
        or record.app_id is None
        or record.build_id is None
        or x509.load_pem_x509_certificate(record.pem.encode("ascii")) != certificate
    ):
        raise _refuse(
            "the report's certificate was not issued to a workload by this manager",
            "dir_report.certificate_unknown",
        )
    if record.status != CertificateStatus.active:
        raise _refuse("the report's certificate is revoked", "dir_report.certificate_revoked")
    if not record.not_before <= ctx.now <= record.not_after:
        raise _refuse("the report's certificate is not valid now", "dir_report.certificate_expired")
    if not _issued_by_account_ca(ctx, record.account_id, certificate):
        raise _refuse(
            "the report's certificate is not signed by the account's CA",
            "dir_report.certificate_invalid",
        )
    report = verify_dir_report_signature(certificate.public_key(), signed)
    return CertifiedWorkload(
        account_id=record.account_id,
        app_id=record.app_id,
        build_id=record.build_id,
        instance=record.instance,
        serial=record.serial,
        report=report,
        key_fingerprint=key_fingerprint(certificate.public_key()),
    )


def record_dir_report(ctx: ServiceContext, workload: CertifiedWorkload) -> DirReportAnswer:
    """Raise the directory's rollback floor (and, for ``rotated``, retire older keys).

    The floor of the reported key version becomes ``max(floor, epoch)`` in one conditional
    ``UPDATE`` (concurrent reports of several instances cannot lower it). A ``rotated`` report
    must name the newest version of the directory's key; it retires every older version (they
    are no longer released). A ``mounted`` report of the newest version is proof of the
    rotation too and retires them as well (the ``rotated`` report may have been dropped).
    Audited (``app.encrypted_dir_epoch_reported``,
    ``app.encrypted_dir_key_retired``).

    Raises:
        NotFoundError: The app has no such directory, or the key version was not released to
            the workload (``encrypted_dir.not_found``, ``encrypted_dir.key_not_found``).
        ConflictError: The version is retired, or a ``rotated`` report names an older version
            than the newest (``encrypted_dir.key_retired``, ``encrypted_dir.key_stale``).
    """
    report = workload.report
    app = ctx.session.get(App, workload.app_id)
    if app is None:  # pragma: no cover (the certificate's app was deleted with its records)
        raise NotFoundError("the certificate's app no longer exists", code="app.not_found")
    path = directory_of(app, report.path)
    # The key version must be one released with this workload's certificate (to its key): the
    # app's policy may have changed since, and must not redirect the report to another scope.
    row = ctx.session.scalars(
        select(EncryptedDirKey)
        .join(EncryptedDirKeyRelease, EncryptedDirKeyRelease.dir_key_id == EncryptedDirKey.id)
        .where(
            EncryptedDirKeyRelease.key_fingerprint == workload.key_fingerprint,
            EncryptedDirKey.app_id == app.id,
            EncryptedDirKey.path == path,
            EncryptedDirKey.version == report.version,
        )
    ).first()
    if row is None:
        raise NotFoundError(
            f"key version {report.version} of {path} was not released to this workload",
            code="encrypted_dir.key_not_found",
        )
    scope = row.scope
    if row.retired_at is not None:
        raise ConflictError(
            f"key version {report.version} of {path} is retired", code="encrypted_dir.key_retired"
        )
    newest = _current(ctx, app, scope, path)
    if report.event == "rotated" and newest is not None and newest.version != row.version:
        raise ConflictError(
            f"the rotation reported is to version {row.version}, but {newest.version} is newest",
            code="encrypted_dir.key_stale",
            hint="attest again: the manager rotated the key once more",
        )
    previous = row.epoch
    ctx.session.execute(
        update(EncryptedDirKey)
        .where(EncryptedDirKey.id == row.id, EncryptedDirKey.epoch < report.epoch)
        .values(epoch=report.epoch, epoch_updated_at=ctx.now)
        .execution_options(synchronize_session=False)
    )
    ctx.session.refresh(row)
    audit(
        ctx,
        "app.encrypted_dir_epoch_reported",
        account_id=app.account_id,
        target_type="app",
        target_id=app.id,
        details={
            "path": path,
            "scope": scope,
            "version": row.version,
            "event": report.event,
            "reported": report.epoch,
            "previous_floor": previous,
            "floor": row.epoch,
            "certificate": workload.serial,
            "signed_at": report.issued_at.isoformat(),
        },
    )
    retired: list[int] = []
    if report.event == "rotated":
        retired = _retire_older(ctx, app, scope, path, row.version, reason="rotation_reported")
    elif newest is not None and newest.version == row.version:
        # A workload mounted the directory under the newest version: the rotation is done even
        # if its ``rotated`` report was lost (the launcher never reports a directory it found
        # empty while older versions were released, so this cannot retire a forgotten volume's
        # keys).
        retired = _retire_older(ctx, app, scope, path, row.version, reason="mounted_newest")
    return DirReportAnswer(path=path, version=row.version, min_epoch=row.epoch, retired=retired)


def _retire_older(
    ctx: ServiceContext, app: App, scope: str, path: str, version: int, *, reason: str
) -> list[int]:
    """Retire every unretired version of ``path`` older than ``version``; return them."""
    older = ctx.session.scalars(
        select(EncryptedDirKey).where(
            EncryptedDirKey.app_id == app.id,
            EncryptedDirKey.scope == scope,
            EncryptedDirKey.path == path,
            EncryptedDirKey.version < version,
            EncryptedDirKey.retired_at.is_(None),
        )
    ).all()
    for row in older:
        row.retired_at = ctx.now
    retired = sorted(row.version for row in older)
    if retired:
        audit(
            ctx,
            "app.encrypted_dir_key_retired",
            account_id=app.account_id,
            target_type="app",
            target_id=app.id,
            severity=Severity.warning if reason == "forced" else Severity.info,
            details={"path": path, "scope": scope, "retired": retired, "reason": reason},
        )
    return retired


def rotate_dir_key(ctx: ServiceContext, app: App, name: str, build: Build | None) -> DirKeyInfo:
    """Add a new key version to a directory (administrators; audited at warning level).

    The new version is released, with the older versions still needed, at the next
    attestation; the workload re-encrypts the directory and reports it (``rotated``), which
    retires the older versions. Under ``same_build`` the build whose key rotates is named.

    Raises:
        NotFoundError: No such directory (``encrypted_dir.not_found``).
        UsageError: The build is missing, superfluous or of another app.
        ConflictError: Too many versions are still live (``encrypted_dir.rotation_pending``):
            the workload has not finished the earlier rotations.
        EvidenceError: A stored key does not unseal.
    """
    path = directory_of(app, name)
    scope = _admin_scope(ctx, app, build)
    current, _key, _created = _key_of(ctx, app, scope, path, reason="rotation")
    live = ctx.session.scalars(
        select(EncryptedDirKey.version).where(
            EncryptedDirKey.app_id == app.id,
            EncryptedDirKey.scope == scope,
            EncryptedDirKey.path == path,
            EncryptedDirKey.retired_at.is_(None),
        )
    ).all()
    if len(live) >= MAX_LIVE_VERSIONS:
        raise ConflictError(
            f"{path} already has {len(live)} unretired key versions",
            code="encrypted_dir.rotation_pending",
            hint="start the app so it finishes re-encrypting, or retire old versions with force",
        )
    version = current.version + 1
    row = EncryptedDirKey(
        account_id=app.account_id,
        app_id=app.id,
        scope=scope,
        path=path,
        version=version,
        sealed_key=ctx.runtime.box.seal(
            ctx.session,
            os.urandom(DIR_KEY_SIZE),
            context=key_context(app.id, scope, path, version),
            now=ctx.now,
        ),
        created_at=ctx.now,
        rotated_by=ctx.actor.user_id,
    )
    try:
        with ctx.session.begin_nested():
            ctx.session.add(row)
    except IntegrityError:
        raise ConflictError(
            f"{path} was rotated concurrently", code="encrypted_dir.rotation_conflict"
        ) from None
    audit(
        ctx,
        "app.encrypted_dir_key_rotated",
        account_id=app.account_id,
        target_type="app",
        target_id=app.id,
        severity=Severity.warning,
        details={"path": path, "scope": scope, "version": version, "previous": current.version},
    )
    return DirKeyInfo(
        path=path, scope=scope, version=version, created_at=row.created_at.isoformat()
    )


def retire_dir_keys(
    ctx: ServiceContext, app: App, name: str, build: Build | None, *, force: bool
) -> list[int]:
    """Retire the older key versions of a directory before the workload reported its rotation.

    Destructive: data still encrypted under a retired version can no longer be opened by the
    workload (only by an administrator who exported that key before). Hence ``force``.

    Returns:
        The versions retired.

    Raises:
        NotFoundError: No such directory.
        UsageError: ``force`` is not set (``encrypted_dir.force_required``), or the build
            is missing, superfluous or of another app.
    """
    path = directory_of(app, name)
    scope = _admin_scope(ctx, app, build)
    if not force:
        raise UsageError(
            "retiring keys before the workload reported the rotation can make data unreadable",
            code="encrypted_dir.force_required",
            hint="pass force (--force) if the data under the old keys is no longer needed",
        )
    current = _current(ctx, app, scope, path)
    if current is None:
        return []
    return _retire_older(ctx, app, scope, path, current.version, reason="forced")
