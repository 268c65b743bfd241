"""Certificate revocation lists signed by an account's issuing CA.

The manager keeps the revocation records (a user revoked a certificate, or a build was revoked
and every certificate issued to it went with it); this module turns them into an RFC 5280 CRL
with a CRL number and the issuer's key identifier, ready for the CRL endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sanctum.errors import UsageError
from sanctum.manager.ca.authority import AccountCa

__all__ = ["RevokedCertificate", "build_crl"]


@dataclass(frozen=True, slots=True)
class RevokedCertificate:
    """One revocation record.

    Attributes:
        serial: The revoked certificate's serial number.
        revoked_at: When it was revoked (timezone-aware).
        reason: Why, or ``None`` (RFC 5280 asks to omit ``unspecified``).
    """

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags | None = None


def build_crl(
    ca: AccountCa,
    revoked: Sequence[RevokedCertificate | tuple[int, datetime, x509.ReasonFlags | None]],
    *,
    now: datetime,
    next_update: datetime,
    number: int | None = None,
) -> x509.CertificateRevocationList:
    """Return a CRL of ``revoked`` signed by the issuing CA.

    Args:
        ca: The account's CA.
        revoked: The revocation records, as :class:`RevokedCertificate` or
            ``(serial, revocation_time, reason)`` tuples.
        now: The CRL's ``thisUpdate`` (timezone-aware).
        next_update: The CRL's ``nextUpdate``; relying parties refetch by then.
        number: The CRL number; by default the Unix time of ``now``, which increases with each
            CRL issued at a later second.

    Returns:
        The signed CRL.

    Raises:
        UsageError: ``next_update`` is not after ``now``, a time is naive, or a serial repeats
            (code ``ca.parameters_invalid``).
    """
    if now.tzinfo is None or next_update.tzinfo is None:
        raise UsageError("CRL times must be timezone-aware", code="ca.parameters_invalid")
    if next_update <= now:
        raise UsageError("next_update must be after now", code="ca.parameters_invalid")
    issuer = ca.issuing_certificate
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)
        .next_update(next_update)
        .add_extension(
            x509.CRLNumber(number if number is not None else int(now.timestamp())), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    )
    seen: set[int] = set()
    for item in revoked:
        record = item if isinstance(item, RevokedCertificate) else RevokedCertificate(*item)
        if record.serial in seen:
            raise UsageError(
                f"serial {record.serial} is listed twice", code="ca.parameters_invalid"
            )
        if record.revoked_at.tzinfo is None:
            raise UsageError(
                "revocation times must be timezone-aware", code="ca.parameters_invalid"
            )
        seen.add(record.serial)
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(record.serial)
            .revocation_date(record.revoked_at)
        )
        if record.reason is not None and record.reason is not x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(record.reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.issuing_key, hashes.SHA256())
