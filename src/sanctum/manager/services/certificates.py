"""Each account's certificate authority, the record of every issued certificate, revocation, CRLs.

An account's CA (root plus issuing intermediate, :mod:`sanctum.manager.ca`) is created the
first time the account needs it (its first app, node or CA request); several replicas racing to
create it insert with "on conflict do nothing" and all use the winner. The private keys are
sealed by the manager's secret box; an unsealed copy is cached per process (a cache only: any
replica can rebuild it from the database).

Every certificate the issuing CA signs is recorded (serial, subject, SANs, app, build, node,
validity, status). Revocation is by a user or automatic (a build revoked, a node deactivated);
:func:`crl_for` turns the records into a CRL signed by the issuing CA.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Final, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sanctum.errors import ConflictError, NotFoundError
from sanctum.manager.ca import (
    AccountCa,
    RevokedCertificate,
    StoredAccountCa,
    build_crl,
    create_account_ca,
    load_account_ca,
)
from sanctum.manager.db import Prepared
from sanctum.manager.models import Account, new_id
from sanctum.manager.models_attestation import (
    AccountCaRecord,
    CertificateRecord,
    CertificateStatus,
)
from sanctum.manager.secretbox import SecretBox
from sanctum.manager.services.audit import Severity, audit
from sanctum.manager.services.context import ServiceContext

__all__ = [
    "CaCache",
    "crl_for",
    "ensure_account_ca",
    "get_certificate",
    "insert_certificate_record",
    "list_certificates",
    "record_certificate",
    "revoke_certificate",
    "revoke_where",
    "serial_hex",
]

#: How long a CRL is valid; relying parties fetch a new one by then.
CRL_LIFETIME: Final = dt.timedelta(hours=24)


def serial_hex(serial: int) -> str:
    """Return the stored form of a serial number (lowercase hex)."""
    return format(serial, "x")


class CaCache:
    """Unsealed account CAs of this process, by account id (a cache: the database is the truth)."""

    def __init__(self) -> None:
        """Start empty."""
        self._items: dict[str, AccountCa] = {}
        self._lock = threading.Lock()

    def get(self, account_id: str) -> AccountCa | None:
        """Return the cached CA of ``account_id``, if any."""
        with self._lock:
            return self._items.get(account_id)

    def put(self, account_id: str, ca: AccountCa) -> None:
        """Remember the CA of ``account_id``."""
        with self._lock:
            self._items[account_id] = ca


def _context(account_id: str, which: str) -> str:
    return f"account_ca:{account_id}:{which}"


def _insert_ignoring_conflict(session: Session, values: dict[str, object]) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(AccountCaRecord).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(AccountCaRecord).values(values).on_conflict_do_nothing())


#: ``session.info`` key: the accounts whose CA this session's transaction created.
_CREATED_CAS: Final = "sanctum.created_account_cas"


def ensure_account_ca(ctx: ServiceContext, account_id: str, cache: CaCache) -> AccountCa:
    """Return the account's CA, creating (and auditing) it on first use.

    Only a CA read from a record that was already committed is cached: a CA created by this
    unit of work exists only if it commits (a refusal rolls back the savepoint that created
    it), so it is cached by the first unit of work that reads it after the commit (ADR 0120).
    Another replica's record, found after losing the race to create it, is committed already.

    Raises:
        NotFoundError: No such account (``account.not_found``).
        EvidenceError: The stored CA does not unseal or load (``secret.*``, ``ca.store_invalid``).
    """
    cached = cache.get(account_id)
    if cached is not None:
        return cached
    session = ctx.session
    box: SecretBox = ctx.runtime.box
    record = session.get(AccountCaRecord, account_id)
    created_here = account_id in session.info.get(_CREATED_CAS, ())
    if record is None:
        account = session.get(Account, account_id)
        if account is None:
            raise NotFoundError("no such account", code="account.not_found")
        created = create_account_ca(account.name[:64], now=ctx.now)
        root_key = created.root_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        issuing_key = created.issuing_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _insert_ignoring_conflict(
            session,
            {
                "account_id": account_id,
                "root_certificate_pem": created.root_pem(),
                "issuing_certificate_pem": created.chain_pem()[0],
                "root_key_sealed": box.seal(
                    session, root_key, context=_context(account_id, "root"), now=ctx.now
                ),
                "issuing_key_sealed": box.seal(
                    session, issuing_key, context=_context(account_id, "issuing"), now=ctx.now
                ),
                "created_at": ctx.now,
            },
        )
        record = session.scalars(
            select(AccountCaRecord).where(AccountCaRecord.account_id == account_id)
        ).one()
        if record.root_certificate_pem == created.root_pem():
            created_here = True
            session.info.setdefault(_CREATED_CAS, set()).add(account_id)
            audit(
                ctx,
                "certificate.ca_created",
                account_id=account_id,
                target_type="account",
                target_id=account_id,
                details={"root_serial": serial_hex(created.root_certificate.serial_number)},
            )
    account = session.get(Account, account_id)
    stored = StoredAccountCa(
        account_name=account.name[:64] if account is not None else "",
        root_certificate_pem=record.root_certificate_pem,
        issuing_certificate_pem=record.issuing_certificate_pem,
        root_key_wrapped=record.root_key_sealed,
        issuing_key_wrapped=record.issuing_key_sealed,
    )
    contexts = {
        record.root_key_sealed: _context(account_id, "root"),
        record.issuing_key_sealed: _context(account_id, "issuing"),
    }
    ca = load_account_ca(
        stored, unwrap=lambda blob: box.open(session, blob, context=contexts[blob])
    )
    if not created_here:
        cache.put(account_id, ca)
    return ca


def record_certificate(
    ctx: ServiceContext,
    account_id: str,
    certificate: x509.Certificate,
    *,
    sans: Sequence[str],
    app_id: str | None = None,
    build_id: str | None = None,
    node_id: str | None = None,
    instance: str | None = None,
) -> CertificateRecord:
    """Record an issued certificate (the caller audits the event that caused it)."""
    record = CertificateRecord(
        account_id=account_id,
        serial=serial_hex(certificate.serial_number),
        subject=certificate.subject.rfc4514_string()[:500],
        sans=list(sans),
        app_id=app_id,
        build_id=build_id,
        node_id=node_id,
        instance=instance,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        status=CertificateStatus.active,
        pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        created_at=ctx.now,
    )
    ctx.session.add(record)
    return record


_CERTIFICATES: Final = cast("Table", CertificateRecord.__table__)
_INSERT_CERTIFICATE: Final = Prepared(
    insert(_CERTIFICATES), column_keys=[column.key for column in _CERTIFICATES.c]
)


def insert_certificate_record(
    connection: Connection,
    account_id: str,
    certificate: x509.Certificate,
    *,
    pem: str,
    sans: Sequence[str],
    now: dt.datetime,
    app_id: str | None = None,
    build_id: str | None = None,
    instance: str | None = None,
) -> None:
    """Record an issued certificate with one Core ``INSERT`` (the attestation hot path).

    The same row as :func:`record_certificate` writes, without an ORM object; ``pem`` is the
    certificate's PEM text (the caller has it already).
    """
    _INSERT_CERTIFICATE.execute(
        connection,
        {
            "id": new_id(),
            "account_id": account_id,
            "serial": serial_hex(certificate.serial_number),
            "subject": certificate.subject.rfc4514_string()[:500],
            "sans": list(sans),
            "app_id": app_id,
            "build_id": build_id,
            "node_id": None,
            "instance": instance,
            "not_before": certificate.not_valid_before_utc,
            "not_after": certificate.not_valid_after_utc,
            "status": CertificateStatus.active,
            "revoked_at": None,
            "revocation_reason": None,
            "pem": pem,
            "created_at": now,
        },
    )


def list_certificates(
    ctx: ServiceContext,
    account_id: str,
    *,
    app_id: str | None = None,
    build_id: str | None = None,
    status: CertificateStatus | None = None,
    limit: int = 100,
) -> Sequence[CertificateRecord]:
    """Return the account's certificates, newest first, optionally filtered."""
    statement = select(CertificateRecord).where(CertificateRecord.account_id == account_id)
    if app_id is not None:
        statement = statement.where(CertificateRecord.app_id == app_id)
    if build_id is not None:
        statement = statement.where(CertificateRecord.build_id == build_id)
    if status is not None:
        statement = statement.where(CertificateRecord.status == status)
    return ctx.session.scalars(
        statement.order_by(CertificateRecord.created_at.desc(), CertificateRecord.id).limit(limit)
    ).all()


def get_certificate(ctx: ServiceContext, account_id: str, serial: str) -> CertificateRecord:
    """Return one certificate of the account by serial (hex) or id.

    Raises:
        NotFoundError: No such certificate (``certificate.not_found``).
    """
    key = serial.lower().lstrip("0") or "0"
    found = ctx.session.scalars(
        select(CertificateRecord).where(
            CertificateRecord.account_id == account_id,
            (CertificateRecord.serial == key) | (CertificateRecord.id == serial),
        )
    ).first()
    if found is None:
        raise NotFoundError("no such certificate", code="certificate.not_found")
    return found


def revoke_certificate(
    ctx: ServiceContext, account_id: str, serial: str, reason: str
) -> CertificateRecord:
    """Revoke one certificate (it appears in the next CRL).

    Raises:
        NotFoundError: No such certificate.
        ConflictError: Already revoked (``certificate.already_revoked``).
    """
    record = get_certificate(ctx, account_id, serial)
    if record.status == CertificateStatus.revoked:
        raise ConflictError(
            "the certificate is already revoked", code="certificate.already_revoked"
        )
    record.status = CertificateStatus.revoked
    record.revoked_at = ctx.now
    record.revocation_reason = reason
    audit(
        ctx,
        "certificate.revoked",
        account_id=account_id,
        target_type="certificate",
        target_id=record.serial,
        severity=Severity.warning,
        details={"reason": reason, "app_id": record.app_id, "build_id": record.build_id},
    )
    return record


def revoke_where(
    ctx: ServiceContext,
    account_id: str,
    *,
    reason: str,
    build_id: str | None = None,
    node_id: str | None = None,
) -> int:
    """Revoke every active certificate of a build or a node; return how many."""
    condition = (
        CertificateRecord.build_id == build_id
        if build_id is not None
        else CertificateRecord.node_id == node_id
    )
    result = ctx.session.execute(
        update(CertificateRecord)
        .where(
            CertificateRecord.account_id == account_id,
            CertificateRecord.status == CertificateStatus.active,
            condition,
        )
        .values(status=CertificateStatus.revoked, revoked_at=ctx.now, revocation_reason=reason)
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        audit(
            ctx,
            "certificate.revoked",
            account_id=account_id,
            target_type="build" if build_id is not None else "node",
            target_id=build_id or node_id,
            severity=Severity.warning,
            details={"reason": reason, "count": count},
        )
    return count


_REASONS: Final = {flag.value: flag for flag in x509.ReasonFlags}


def crl_for(ctx: ServiceContext, account_id: str, cache: CaCache) -> x509.CertificateRevocationList:
    """Return a fresh CRL of the account's revoked, unexpired certificates.

    Raises:
        NotFoundError: No such account.
    """
    ca = ensure_account_ca(ctx, account_id, cache)
    rows = ctx.session.execute(
        select(
            CertificateRecord.serial,
            CertificateRecord.revoked_at,
            CertificateRecord.revocation_reason,
        ).where(
            CertificateRecord.account_id == account_id,
            CertificateRecord.status == CertificateStatus.revoked,
            CertificateRecord.not_after > ctx.now,
        )
    ).all()
    revoked = [
        RevokedCertificate(
            int(serial, 16),
            revoked_at or ctx.now,
            _REASONS.get(reason or "unspecified"),
        )
        for serial, revoked_at, reason in rows
    ]
    return build_crl(ca, revoked, now=ctx.now, next_update=ctx.now + CRL_LIFETIME)
