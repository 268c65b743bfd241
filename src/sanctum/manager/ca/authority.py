"""Creation and storage form of an account's certificate authority.

Every account has its own two-level CA: a root, whose certificate relying parties pin, and an
issuing intermediate, which signs workload, node and server certificates and the CRL. Both use
ECDSA P-256 with SHA-256. The root key is needed only to re-issue the intermediate; keeping the
two apart lets the intermediate be rotated without every relying party changing its trust
anchor.

Nothing here touches a database or a clock: the caller passes ``now`` and stores the
:class:`StoredAccountCa`, whose private keys have gone through the caller's ``wrap`` hook (the
manager encrypts them under its key-encryption key before they reach the database).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sanctum.errors import EvidenceError, UsageError

__all__ = [
    "CLOCK_SKEW",
    "AccountCa",
    "StoredAccountCa",
    "create_account_ca",
    "load_account_ca",
    "store_account_ca",
]

#: Certificates start this long before ``now`` so that relying parties with a slightly slow
#: clock accept them at once.
CLOCK_SKEW: Final = timedelta(minutes=5)

_DEFAULT_ROOT_VALIDITY: Final = timedelta(days=3650)
_DEFAULT_ISSUING_VALIDITY: Final = timedelta(days=1825)
_MAX_NAME: Final = 64


@dataclass(frozen=True, slots=True)
class AccountCa:
    """An account's CA with its private keys in memory.

    Attributes:
        account_name: The account the CA belongs to (its certificates' organization).
        root_key: The root's private key.
        root_certificate: The self-signed root certificate (the trust anchor).
        issuing_key: The issuing intermediate's private key.
        issuing_certificate: The intermediate's certificate, signed by the root.
    """

    account_name: str
    root_key: ec.EllipticCurvePrivateKey
    root_certificate: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    issuing_certificate: x509.Certificate

    def chain_pem(self) -> list[str]:
        """Return the PEM intermediates that leaf certificates need (the issuing CA)."""
        return [_pem(self.issuing_certificate)]

    def root_pem(self) -> str:
        """Return the PEM root certificate (the trust anchor)."""
        return _pem(self.root_certificate)


@dataclass(frozen=True, slots=True)
class StoredAccountCa:
    """The storage form of an :class:`AccountCa`.

    Attributes:
        account_name: The account the CA belongs to.
        root_certificate_pem: PEM root certificate (public).
        issuing_certificate_pem: PEM issuing certificate (public).
        root_key_wrapped: The root's PKCS#8 PEM private key after the caller's ``wrap``.
        issuing_key_wrapped: The intermediate's PKCS#8 PEM private key after ``wrap``.
    """

    account_name: str
    root_certificate_pem: str
    issuing_certificate_pem: str
    root_key_wrapped: bytes
    issuing_key_wrapped: bytes


def _pem(cert: x509.Certificate) -> str:
    """Return ``cert`` as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _name(account_name: str, common_name: str) -> x509.Name:
    """Return the distinguished name of one of the account's CA certificates."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, account_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Sanctum Enclave Manager"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_usage() -> x509.KeyUsage:
    """Return the key usage of a CA that signs certificates and CRLs only."""
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def create_account_ca(
    account_name: str,
    *,
    now: datetime,
    root_validity: timedelta = _DEFAULT_ROOT_VALIDITY,
    issuing_validity: timedelta = _DEFAULT_ISSUING_VALIDITY,
) -> AccountCa:
    """Create a new root and issuing intermediate for ``account_name``.

    Args:
        account_name: The account's name, 1 to 64 characters (used as the organization).
        now: The creation time (timezone-aware).
        root_validity: Lifetime of the root certificate.
        issuing_validity: Lifetime of the intermediate (clipped to the root's).

    Returns:
        The CA with fresh ECDSA P-256 keys.

    Raises:
        UsageError: The account name or a validity is unusable (code ``ca.parameters_invalid``).
    """
    if not 1 <= len(account_name) <= _MAX_NAME:
        raise UsageError(
            f"account name must be 1 to {_MAX_NAME} characters for a certificate name",
            code="ca.parameters_invalid",
        )
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware", code="ca.parameters_invalid")
    if root_validity <= timedelta(0) or issuing_validity <= timedelta(0):
        raise UsageError("CA validities must be positive", code="ca.parameters_invalid")
    root_key = ec.generate_private_key(ec.SECP256R1())
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    start = now - CLOCK_SKEW
    root_end = now + root_validity
    root_name = _name(account_name, "Sanctum Root CA")
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root_certificate = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(root_end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(root_ski, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    issuing_certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(account_name, "Sanctum Issuing CA"))
        .issuer_name(root_name)
        .public_key(issuing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(now + issuing_validity, root_end))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(issuing_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return AccountCa(account_name, root_key, root_certificate, issuing_key, issuing_certificate)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Return ``key`` as unencrypted PKCS#8 PEM (for the caller's wrap hook only)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def store_account_ca(ca: AccountCa, *, wrap: Callable[[bytes], bytes]) -> StoredAccountCa:
    """Return the storage form of ``ca``, private keys passed through ``wrap``.

    Args:
        ca: The CA to store.
        wrap: Encrypts a PKCS#8 PEM private key for storage (for example under the manager's
            key-encryption key). It must not return its input unchanged in production.

    Returns:
        Certificates as PEM and the wrapped keys.
    """
    return StoredAccountCa(
        account_name=ca.account_name,
        root_certificate_pem=_pem(ca.root_certificate),
        issuing_certificate_pem=_pem(ca.issuing_certificate),
        root_key_wrapped=wrap(_key_pem(ca.root_key)),
        issuing_key_wrapped=wrap(_key_pem(ca.issuing_key)),
    )


def _load_key(blob: bytes, which: str) -> ec.EllipticCurvePrivateKey:
    """Return the P-256 private key in the PKCS#8 PEM ``blob``.

    Raises:
        EvidenceError: ``blob`` is not a P-256 private key (code ``ca.store_invalid``).
    """
    try:
        key = serialization.load_pem_private_key(blob, password=None)
    except ValueError as exc:
        raise EvidenceError(
            f"the stored {which} key does not load (wrong unwrap key?)", code="ca.store_invalid"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EvidenceError(f"the stored {which} key is not EC P-256", code="ca.store_invalid")
    return key


def _load_certificate(pem: str, which: str) -> x509.Certificate:
    """Return the certificate in ``pem``.

    Raises:
        EvidenceError: ``pem`` is not a certificate (code ``ca.store_invalid``).
    """
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError as exc:
        raise EvidenceError(
            f"the stored {which} certificate does not parse", code="ca.store_invalid"
        ) from exc


def load_account_ca(stored: StoredAccountCa, *, unwrap: Callable[[bytes], bytes]) -> AccountCa:
    """Return the CA held by ``stored``, keys passed through ``unwrap``.

    The keys are checked against their certificates, and the intermediate against the root.

    Args:
        stored: The storage form.
        unwrap: The inverse of the ``wrap`` used by :func:`store_account_ca`.

    Returns:
        The CA with keys in memory.

    Raises:
        EvidenceError: Something stored does not load or does not belong together (code
            ``ca.store_invalid``).
    """
    root_certificate = _load_certificate(stored.root_certificate_pem, "root")
    issuing_certificate = _load_certificate(stored.issuing_certificate_pem, "issuing")
    root_key = _load_key(unwrap(stored.root_key_wrapped), "root")
    issuing_key = _load_key(unwrap(stored.issuing_key_wrapped), "issuing")
    if root_key.public_key() != root_certificate.public_key():
        raise EvidenceError("the root key does not match its certificate", code="ca.store_invalid")
    if issuing_key.public_key() != issuing_certificate.public_key():
        raise EvidenceError(
            "the issuing key does not match its certificate", code="ca.store_invalid"
        )
    try:
        issuing_certificate.verify_directly_issued_by(root_certificate)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise EvidenceError(
            "the issuing certificate was not issued by the stored root", code="ca.store_invalid"
        ) from exc
    return AccountCa(
        stored.account_name, root_key, root_certificate, issuing_key, issuing_certificate
    )
