"""Trust anchors for DCAP verification: the root certificate every chain must end in.

A :class:`TrustAnchor` pins one self-signed root CA certificate. The default is the real Intel SGX
Root CA, shipped as package data and pinned by the SHA-256 of its DER encoding, so a tampered
installation fails loudly instead of trusting another key. A simulated platform has its own root;
an anchor built for it is marked ``simulated=True``, and every result verified under it carries
that mark (the verifier derives ``VerifiedQuote.simulated`` from the anchor and nothing else).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sanctum.errors import EvidenceError, UsageError

__all__ = ["INTEL_SGX_ROOT_CA_SHA256", "TrustAnchor"]

#: SHA-256 of the DER encoding of the Intel SGX Root CA certificate (dcap.md §2.1).
INTEL_SGX_ROOT_CA_SHA256: Final = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

_INTEL_ROOT_RESOURCE: Final = "intel_sgx_root_ca.der"


def _load_certificate(data: bytes) -> x509.Certificate:
    """Parse one certificate given as DER or PEM.

    Raises:
        UsageError: ``data`` is neither a DER nor a PEM certificate.
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise UsageError(
            f"the root CA is not a DER or PEM X.509 certificate: {exc}", code="trust.invalid_root"
        ) from exc


@dataclass(frozen=True, slots=True, eq=False)
class TrustAnchor:
    """A pinned root CA certificate that PCK and TCB-signing chains must end in.

    Attributes:
        certificate: The self-signed root CA certificate (P-256 ECDSA).
        simulated: True when the root belongs to a simulated platform, not to Intel.
        der: The DER encoding of ``certificate``.
        fingerprint: SHA-256 of ``der`` (lowercase hex), used as a cache key.
        public_key: The root's public key.
        public_key_bytes: The root's uncompressed public point (``04 || x || y``).
        common_name: The root's common name (``Intel SGX Root CA``), or ``None``.
        other_name_attributes: The root subject's attributes other than the common name, in
            order, as ``(dotted OID, value)`` pairs; PKI names under this root must match them.
    """

    certificate: x509.Certificate
    simulated: bool
    der: bytes = field(init=False)
    fingerprint: str = field(init=False)
    public_key: ec.EllipticCurvePublicKey = field(init=False)
    public_key_bytes: bytes = field(init=False)
    common_name: str | None = field(init=False)
    other_name_attributes: tuple[tuple[str, object], ...] = field(init=False)

    def __post_init__(self) -> None:
        """Derive the cached encodings and check the root is a self-signed P-256 CA.

        Raises:
            UsageError: The certificate is not a self-signed P-256 ECDSA root
                (``trust.invalid_root``), or the anchor is not simulated and the root is not
                the pinned Intel SGX Root CA (``trust.anchor_not_intel``).
        """
        key = self.certificate.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise UsageError("the root CA key is not a P-256 ECDSA key", code="trust.invalid_root")
        if self.certificate.issuer != self.certificate.subject:
            raise UsageError(
                "the root CA certificate is not self-issued", code="trust.invalid_root"
            )
        try:
            self.certificate.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise UsageError(
                "the root CA certificate is not validly self-signed", code="trust.invalid_root"
            ) from exc
        subject = self.certificate.subject
        names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = names[0].value if len(names) == 1 else None
        object.__setattr__(
            self, "common_name", common_name if isinstance(common_name, str) else None
        )
        object.__setattr__(
            self,
            "other_name_attributes",
            tuple(
                (attr.oid.dotted_string, attr.value)
                for attr in subject
                if attr.oid != NameOID.COMMON_NAME
            ),
        )
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        object.__setattr__(self, "der", der)
        object.__setattr__(self, "fingerprint", hashlib.sha256(der).hexdigest())
        if not self.simulated and self.fingerprint != INTEL_SGX_ROOT_CA_SHA256:
            # Only Intel's root vouches for hardware: any other root labelled as hardware would
            # let its owner pass off evidence it signed as genuine SGX/TDX.
            raise UsageError(
                "a trust anchor that is not simulated must be the pinned Intel SGX Root CA "
                f"(SHA-256 {INTEL_SGX_ROOT_CA_SHA256}); this root is {self.fingerprint}",
                code="trust.anchor_not_intel",
                hint="mark a test or simulation root as simulated",
            )
        object.__setattr__(self, "public_key", key)
        object.__setattr__(
            self,
            "public_key_bytes",
            key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            ),
        )

    @classmethod
    def intel(cls) -> TrustAnchor:
        """Return the real Intel SGX Root CA, checked against its pinned SHA-256.

        Raises:
            EvidenceError: The shipped root certificate does not match the pin (a corrupted or
                tampered installation), code ``trust.root_mismatch``.
        """
        data = resources.files("sanctum.attestation").joinpath("data", _INTEL_ROOT_RESOURCE)
        der = data.read_bytes()
        if hashlib.sha256(der).hexdigest() != INTEL_SGX_ROOT_CA_SHA256:
            raise EvidenceError(
                "the shipped Intel SGX Root CA does not match its pinned SHA-256",
                code="trust.root_mismatch",
                hint="reinstall Sanctum; the package data was modified",
            )
        return cls(x509.load_der_x509_certificate(der), simulated=False)

    @classmethod
    def from_bytes(cls, data: bytes, *, simulated: bool) -> TrustAnchor:
        """Build an anchor from a DER or PEM root certificate.

        A root whose DER equals the pinned Intel root is never marked simulated, whatever the
        caller says; any other root must be simulated.

        Raises:
            UsageError: ``data`` is not a self-signed P-256 root certificate
                (``trust.invalid_root``), or ``simulated`` is False and the root is not the
                pinned Intel SGX Root CA (``trust.anchor_not_intel``).
        """
        certificate = _load_certificate(data)
        anchor = cls(certificate, simulated=simulated)
        if anchor.fingerprint == INTEL_SGX_ROOT_CA_SHA256 and simulated:
            return cls(certificate, simulated=False)
        return anchor

    @property
    def is_intel(self) -> bool:
        """Whether this anchor is the pinned Intel SGX Root CA."""
        return self.fingerprint == INTEL_SGX_ROOT_CA_SHA256

    def __eq__(self, other: object) -> bool:
        """Anchors are equal when they pin the same certificate and simulation mark."""
        if not isinstance(other, TrustAnchor):
            return NotImplemented
        return self.fingerprint == other.fingerprint and self.simulated == other.simulated

    def __hash__(self) -> int:
        """Hash on the pinned certificate and the simulation mark."""
        return hash((self.fingerprint, self.simulated))
