"""Issuance of workload and server certificates by an account's issuing CA.

The CA trusts nothing in a CSR except its public key and its self-signature (proof that the
requester holds the private key). Subject and SANs come from the caller, which has already
checked them against the app's approved domains; a CSR that *asks* for a name the caller did not
grant is refused rather than silently trimmed, so a misconfigured workload is noticed.

Accepted workload keys: ECDSA P-256, RSA 2048 and RSA 3072.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sanctum.errors import UsageError
from sanctum.manager.ca.authority import CLOCK_SKEW, AccountCa
from sanctum.manager.ca.errors import CsrError
from sanctum.manager.ca.extension import AttestationClaims, attestation_extension

__all__ = [
    "CertificateFacts",
    "WorkloadKey",
    "certificate_facts",
    "issue_node_certificate",
    "issue_server_certificate",
    "issue_workload_certificate",
    "load_csr",
    "new_serial",
    "parse_sans",
]

WorkloadKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_RSA_SIZES: Final = frozenset({2048, 3072})
_MAX_SERIAL_BITS: Final = 159
_DNS_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAX_CN: Final = 64

GeneralName = x509.DNSName | x509.IPAddress


class _CheckedCsrs:
    """The parsed CSRs whose self-signature :func:`load_csr` checked recently (by identity).

    Attestation loads a CSR, then hands the same object to the issuance, which would otherwise
    verify its signature a second time. Entries hold a strong reference to the object, so its
    ``id`` cannot be reused by another object while it is listed; parsed CSRs are immutable.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[int, x509.CertificateSigningRequest] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, csr: x509.CertificateSigningRequest) -> None:
        with self._lock:
            self._items[id(csr)] = csr
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __contains__(self, csr: x509.CertificateSigningRequest) -> bool:
        with self._lock:
            return self._items.get(id(csr)) is csr


_CHECKED_CSRS: Final = _CheckedCsrs(256)


def new_serial(random_bytes: Callable[[int], bytes] = os.urandom) -> int:
    """Return a fresh random serial number: positive, 159 bits at most, 64 bits of entropy or more.

    Args:
        random_bytes: The randomness source (tests inject a fixed one).

    Returns:
        A serial for :func:`issue_workload_certificate` and friends.
    """
    value = int.from_bytes(random_bytes(20), "big") >> 1  # 159 bits
    return value or 1


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What the manager records about a certificate it issued.

    Attributes:
        serial: Serial number, lowercase hex without leading zeros.
        subject: Subject as an RFC 4514 string.
        sans: DNS names and IP addresses, in certificate order.
        not_before: Start of validity.
        not_after: End of validity.
    """

    serial: str
    subject: str
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime


def certificate_facts(cert: x509.Certificate) -> CertificateFacts:
    """Return the record facts of ``cert``."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple(str(name.value) for name in names)
    except x509.ExtensionNotFound:
        sans = ()
    return CertificateFacts(
        serial=format(cert.serial_number, "x"),
        subject=cert.subject.rfc4514_string(),
        sans=sans,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def load_csr(csr: x509.CertificateSigningRequest | bytes | str) -> x509.CertificateSigningRequest:
    """Parse ``csr`` (PEM text or bytes, or DER bytes) and check its self-signature.

    A parsed request that this function checked recently is returned without a second check.

    Args:
        csr: The request, or an already parsed request.

    Returns:
        The request, with a valid signature.

    Raises:
        CsrError: It does not parse (``ca.csr_malformed``) or its signature does not verify
            (``ca.csr_signature_invalid``).
    """
    if not isinstance(csr, x509.CertificateSigningRequest):
        data = csr.encode("ascii", errors="replace") if isinstance(csr, str) else csr
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                csr = x509.load_pem_x509_csr(data)
            else:
                csr = x509.load_der_x509_csr(data)
        except ValueError as exc:
            raise CsrError("the CSR is not a PKCS#10 request", code="ca.csr_malformed") from exc
    elif csr in _CHECKED_CSRS:
        return csr
    try:
        valid = csr.is_signature_valid
    except ValueError as exc:  # An unsupported or undecodable key/signature algorithm.
        raise CsrError(
            "the CSR's signature cannot be checked", code="ca.csr_signature_invalid"
        ) from exc
    if not valid:
        raise CsrError(
            "the CSR's self-signature does not verify: the requester does not prove key possession",
            code="ca.csr_signature_invalid",
        )
    _CHECKED_CSRS.add(csr)
    return csr


def _workload_key(key: CertificatePublicKeyTypes) -> WorkloadKey:
    """Return ``key`` if it is an accepted workload key type.

    Raises:
        CsrError: Another key type or size (code ``ca.key_type_unsupported``).
    """
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size in _RSA_SIZES:
        return key
    description = (
        f"EC {key.curve.name}"
        if isinstance(key, ec.EllipticCurvePublicKey)
        else f"RSA {key.key_size}"
        if isinstance(key, rsa.RSAPublicKey)
        else type(key).__name__
    )
    raise CsrError(
        f"the CSR's key is {description}; accepted: ECDSA P-256, RSA 2048, RSA 3072",
        code="ca.key_type_unsupported",
    )


def parse_sans(sans: Sequence[str]) -> list[GeneralName]:
    """Return the general names for ``sans`` (DNS names and IP addresses).

    DNS names are lower-cased and must be letters-digits-hyphens labels (no wildcards); IP
    addresses may be IPv4 or IPv6.

    Args:
        sans: The names, as the app configuration spells them.

    Returns:
        One ``DNSName`` or ``IPAddress`` per distinct name, in the given order.

    Raises:
        UsageError: A name is neither an IP address nor a valid DNS name (code
            ``ca.san_invalid``).
    """
    names: list[GeneralName] = []
    seen: set[GeneralName] = set()
    for raw in sans:
        general: GeneralName
        try:
            general = x509.IPAddress(ipaddress.ip_address(raw))
        except ValueError:
            name = raw.lower().rstrip(".")
            labels = name.split(".")
            if not name or len(name) > 253 or not all(_DNS_LABEL.fullmatch(x) for x in labels):
                raise UsageError(
                    f"{raw!r} is not a DNS name or IP address", code="ca.san_invalid"
                ) from None
            general = x509.DNSName(name)
        if general not in seen:
            seen.add(general)
            names.append(general)
    return names


def _requested_sans(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """Return the SANs the CSR asks for (empty when it asks for none)."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


def _check_requested_sans(
    csr: x509.CertificateSigningRequest, granted: Sequence[GeneralName]
) -> None:
    """Refuse a CSR that asks for any name not in ``granted``.

    Raises:
        CsrError: A requested name was not granted (code ``ca.san_not_allowed``).
    """
    allowed = set(granted)
    for requested in _requested_sans(csr):
        candidate: x509.GeneralName = requested
        if isinstance(requested, x509.DNSName):
            candidate = x509.DNSName(requested.value.lower().rstrip("."))
        if candidate not in allowed:
            raise CsrError(
                f"the CSR asks for {requested.value!r}, which is not an approved name of this app",
                code="ca.san_not_allowed",
                details={"requested": str(requested.value)},
            )


def _subject(subject: x509.Name | str) -> x509.Name:
    """Return ``subject`` as a name (a string is the common name).

    Raises:
        UsageError: The common name is empty or too long (code ``ca.parameters_invalid``).
    """
    if isinstance(subject, x509.Name):
        return subject
    if not 1 <= len(subject) <= _MAX_CN:
        raise UsageError(
            f"subject common name must be 1 to {_MAX_CN} characters",
            code="ca.parameters_invalid",
        )
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])


def _leaf_usage(key: WorkloadKey) -> x509.KeyUsage:
    """Return the key usage of a TLS leaf (RSA keys may also encipher keys)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_builder(
    ca: AccountCa,
    key: WorkloadKey,
    *,
    subject: x509.Name,
    sans: Sequence[GeneralName],
    validity: timedelta,
    serial: int,
    now: datetime,
    usages: Sequence[x509.ObjectIdentifier],
    crl_url: str | None,
) -> x509.CertificateBuilder:
    """Return a builder with everything leaves have in common.

    Raises:
        UsageError: A parameter is unusable (code ``ca.parameters_invalid``).
    """
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware", code="ca.parameters_invalid")
    if validity <= timedelta(0):
        raise UsageError("validity must be positive", code="ca.parameters_invalid")
    if not 0 < serial < 1 << _MAX_SERIAL_BITS:
        raise UsageError(
            "serial must be a positive integer of at most 159 bits", code="ca.parameters_invalid"
        )
    issuer = ca.issuing_certificate
    if now >= issuer.not_valid_after_utc:
        raise UsageError(
            "the issuing CA has expired; rotate it before issuing", code="ca.issuer_expired"
        )
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + validity, issuer.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if crl_url is not None:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    return builder


def issue_workload_certificate(
    ca: AccountCa,
    csr: x509.CertificateSigningRequest | bytes | str,
    *,
    subject: x509.Name | str,
    sans: Sequence[str],
    validity: timedelta,
    serial: int,
    attestation: AttestationClaims,
    now: datetime,
    crl_url: str | None = None,
) -> x509.Certificate:
    """Issue a TLS certificate for an attested workload's CSR key.

    Args:
        ca: The account's CA (the issuing intermediate signs).
        csr: The workload's CSR (PEM/DER or parsed); only its key and signature are used.
        subject: The certificate subject (a string is the common name).
        sans: The approved DNS names and IP addresses to include.
        validity: Requested lifetime (clipped to the issuing CA's).
        serial: The serial number the caller allocated and records (1 to 159 bits).
        attestation: The attested identity, added as the non-critical attestation extension.
        now: The issuance time (timezone-aware).
        crl_url: Optional CRL distribution point URL.

    Returns:
        The certificate, for server and client authentication.

    Raises:
        CsrError: The CSR is malformed, its signature is bad, its key type is not accepted, or
            it asks for names not in ``sans`` (codes ``ca.csr_*``, ``ca.key_type_unsupported``,
            ``ca.san_not_allowed``).
        UsageError: A parameter is unusable (codes ``ca.parameters_invalid``, ``ca.san_invalid``,
            ``ca.issuer_expired``).
    """
    request = load_csr(csr)
    key = _workload_key(request.public_key())
    granted = parse_sans(sans)
    _check_requested_sans(request, granted)
    builder = _leaf_builder(
        ca,
        key,
        subject=_subject(subject),
        sans=granted,
        validity=validity,
        serial=serial,
        now=now,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        crl_url=crl_url,
    ).add_extension(attestation_extension(attestation), critical=False)
    return builder.sign(ca.issuing_key, hashes.SHA256())


def issue_server_certificate(
    ca: AccountCa,
    public_key: CertificatePublicKeyTypes,
    *,
    common_name: str,
    sans: Sequence[str],
    validity: timedelta,
    serial: int,
    now: datetime,
) -> x509.Certificate:
    """Issue a TLS server certificate with no attestation (for example the manager's own).

    Args:
        ca: The CA whose issuing intermediate signs.
        public_key: The server's key (ECDSA P-256 or RSA 2048/3072).
        common_name: The subject common name.
        sans: DNS names and IP addresses the server answers on.
        validity: Requested lifetime (clipped to the issuing CA's).
        serial: The serial number (1 to 159 bits).
        now: The issuance time (timezone-aware).

    Returns:
        The certificate, for server authentication only.

    Raises:
        CsrError: The key type is not accepted (code ``ca.key_type_unsupported``).
        UsageError: A parameter is unusable.
    """
    key = _workload_key(public_key)
    builder = _leaf_builder(
        ca,
        key,
        subject=_subject(common_name),
        sans=parse_sans(sans),
        validity=validity,
        serial=serial,
        now=now,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        crl_url=None,
    )
    return builder.sign(ca.issuing_key, hashes.SHA256())


def issue_node_certificate(
    ca: AccountCa,
    csr: x509.CertificateSigningRequest | bytes | str,
    *,
    node_name: str,
    validity: timedelta,
    serial: int,
    now: datetime,
    attestation: AttestationClaims | None = None,
) -> x509.Certificate:
    """Issue a client-authentication certificate to a node that joined the account.

    The subject is the node's name; the certificate carries no SANs (nodes authenticate as
    clients) and, when the node's quote identified an enclave, the attestation extension.

    Args:
        ca: The account's CA.
        csr: The node's CSR (its self-signature is checked; names in it are refused).
        node_name: The node's name (the common name, 1 to 64 characters).
        validity: Requested lifetime (clipped to the issuing CA's).
        serial: The serial number the caller allocated (1 to 159 bits).
        now: The issuance time (timezone-aware).
        attestation: Claims of the node's verified quote, if any.

    Returns:
        The certificate, for client authentication only.

    Raises:
        CsrError: The CSR is malformed, badly signed, of an unaccepted key type, or asks for
            SANs.
        UsageError: A parameter is unusable.
    """
    request = load_csr(csr)
    key = _workload_key(request.public_key())
    _check_requested_sans(request, [])
    builder = _leaf_builder(
        ca,
        key,
        subject=_subject(node_name),
        sans=[],
        validity=validity,
        serial=serial,
        now=now,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        crl_url=None,
    )
    if attestation is not None:
        builder = builder.add_extension(attestation_extension(attestation), critical=False)
    return builder.sign(ca.issuing_key, hashes.SHA256())
