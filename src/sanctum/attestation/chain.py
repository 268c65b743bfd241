"""Certificate chains and CRLs of Intel's DCAP PKI, checked the way Intel's QVL checks them.

Intel's PKI has a fixed shape, so paths are checked by hand (``cryptography.x509.verification``
targets the web PKI):

- PCK chain: exactly three certificates, ``Intel SGX PCK Certificate`` ← ``Intel SGX PCK
  Platform CA`` or ``Intel SGX PCK Processor CA`` ← the pinned root;
- TCB signing chain (TCB info, QE identity): exactly two, ``Intel SGX TCB Signing`` ← root;
- PCK CRL issuer chain: exactly two, the Platform/Processor CA ← root.

Names are compared exactly. The anchor's common name is ``<prefix>SGX Root CA``; the others
must be ``<prefix>SGX PCK Certificate``, ``<prefix>SGX PCK Platform CA`` / ``Processor CA`` and
``<prefix>SGX TCB Signing``, and their other attributes (O, L, ST, C) must equal the anchor's.
For Intel's root (prefix ``Intel ``) these are exactly Intel's names; a simulated platform's root
anchors its own names the same way. The chain's root must be the anchor, byte for byte.
CRLs must name their issuer exactly, carry the CRL Number and Authority Key Identifier
extensions, and verify under the issuer's key.

These functions check structure and signatures only; validity periods are returned as
:class:`Validity` windows and judged against the verification time by the verifier, so cached
results never hide an expiry.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtensionOID, NameOID

from sanctum.attestation import _der
from sanctum.attestation._memo import ObjectMemo, memo
from sanctum.attestation.errors import DerError
from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import EvidenceError

__all__ = [
    "PCK_CA_CNS",
    "PCK_CERT_CN",
    "ROOT_CA_CN",
    "TCB_SIGNING_CN",
    "PckChain",
    "Validity",
    "VerifiedCrl",
    "load_pem_chain",
    "public_key_from_raw",
    "verify_crl",
    "verify_pck_chain",
    "verify_pck_crl_issuer_chain",
    "verify_raw_signature",
    "verify_tcb_signing_chain",
]

ROOT_CA_CN: Final = "Intel SGX Root CA"
PCK_CA_CNS: Final = ("Intel SGX PCK Platform CA", "Intel SGX PCK Processor CA")
PCK_CERT_CN: Final = "Intel SGX PCK Certificate"
TCB_SIGNING_CN: Final = "Intel SGX TCB Signing"

# Common names are "<issuer prefix>" + one of these; the prefix is the anchor's ("Intel " for
# Intel's root, "Sanctum Simulated " for the simulated platform's).
_ROOT_SUFFIX: Final = "SGX Root CA"
_PCK_CA_SUFFIXES: Final = ("SGX PCK Platform CA", "SGX PCK Processor CA")
_PCK_CERT_SUFFIX: Final = "SGX PCK Certificate"
_TCB_SIGNING_SUFFIX: Final = "SGX TCB Signing"

_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class Validity:
    """The validity window of one collateral item.

    Attributes:
        what: Operator-facing name of the item (for example ``PCK certificate``).
        not_before: Start of validity (notBefore, thisUpdate, issueDate).
        not_after: End of validity (notAfter, nextUpdate).
    """

    what: str
    not_before: datetime
    not_after: datetime


def _fail(code: str, message: str) -> EvidenceError:
    """Return an evidence error with ``code``."""
    return EvidenceError(message, code=code)


def load_pem_chain(pem: str | bytes, *, code: str, what: str) -> tuple[x509.Certificate, ...]:
    """Parse a PEM chain (leaf first), ignoring a trailing NUL as in quote certification data.

    Raises:
        EvidenceError: The text is not a PEM certificate chain (``code``).
    """
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)
    try:
        return _load_pem_certificates(data.rstrip(b"\0").strip())
    except ValueError as exc:
        raise _fail(code, f"the {what} is not a PEM certificate chain: {exc}") from exc


@memo
def _load_pem_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """Parse PEM certificates (memoised: certificates are immutable).

    Raises:
        ValueError: The text is not a PEM certificate chain.
    """
    return tuple(x509.load_pem_x509_certificates(data))


@memo
def _load_der_crl(der: bytes) -> x509.CertificateRevocationList:
    """Parse a DER CRL (memoised: CRL objects are immutable).

    Raises:
        ValueError: The bytes are not a DER CRL.
    """
    return x509.load_der_x509_crl(der)


@memo
def _crl_issuer(der: bytes) -> tuple[x509.Name, bytes]:
    """Return the issuer name of the DER CRL ``der`` and its DER encoding (memoised).

    cryptography builds a new :class:`~cryptography.x509.Name` on every ``crl.issuer`` access.

    Raises:
        ValueError: The CRL or its issuer name cannot be decoded.
    """
    name = _load_der_crl(der).issuer
    return name, name.public_bytes()


@memo
def _p256_key(xy: bytes) -> ec.EllipticCurvePublicKey:
    """Return the P-256 key of the raw point ``xy`` (memoised: keys are immutable).

    Raises:
        ValueError: Not a point on P-256.
    """
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)


def cert_validity(cert: x509.Certificate, what: str) -> Validity:
    """Return a certificate's validity window."""
    return Validity(what, cert.not_valid_before_utc, cert.not_valid_after_utc)


def _der_of(cert: x509.Certificate) -> bytes:
    """Return the DER encoding of ``cert``."""
    return cert.public_bytes(serialization.Encoding.DER)


def _subject_der_of(cert: x509.Certificate) -> bytes:
    """Return the DER encoding of ``cert``'s subject name.

    Raises:
        ValueError: The name cannot be decoded.
    """
    return cert.subject.public_bytes()


def _issuer_der_of(cert: x509.Certificate) -> bytes:
    """Return the DER encoding of ``cert``'s issuer name.

    Raises:
        ValueError: The name cannot be decoded.
    """
    return cert.issuer.public_bytes()


def _subject_parts_of(cert: x509.Certificate) -> tuple[str | None, tuple[tuple[str, object], ...]]:
    """Return ``cert``'s subject common name (or ``None``) and its other attributes.

    Raises:
        ValueError: The name cannot be decoded.
    """
    subject = cert.subject
    return _common_name(subject), _other_attributes(subject)


def _point_of(cert: x509.Certificate) -> bytes:
    """Return the uncompressed public point of ``cert``'s key.

    Raises:
        ValueError: The key cannot be decoded or has no point form.
        TypeError: The key is not an elliptic-curve key.
    """
    return cert.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


# Pure conversions of immutable certificates (objects shared through the PEM memo), memoised by
# object identity (docs/adr/0022-parse-memos.md).
cert_der: Final = ObjectMemo(_der_of)
subject_der: Final = ObjectMemo(_subject_der_of)
issuer_der: Final = ObjectMemo(_issuer_der_of)
cert_point: Final = ObjectMemo(_point_of)
_subject_parts: Final = ObjectMemo(_subject_parts_of)


def _common_name(name: x509.Name) -> str | None:
    """Return the single common name of a name, or ``None``."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1 or not isinstance(values[0].value, str):
        return None
    return values[0].value


def _other_attributes(name: x509.Name) -> tuple[tuple[str, object], ...]:
    """Return a name's attributes except the common name, in order."""
    return tuple(
        (attr.oid.dotted_string, attr.value) for attr in name if attr.oid != NameOID.COMMON_NAME
    )


def _name_prefix(anchor: TrustAnchor, code: str) -> str:
    """Return the common-name prefix of the anchor's PKI (``"Intel "`` for Intel's root).

    Raises:
        EvidenceError: The anchor's common name does not end in ``SGX Root CA`` (``code``).
    """
    common_name = anchor.common_name
    if common_name is None or not common_name.endswith(_ROOT_SUFFIX):
        raise _fail(code, f"the trust anchor's common name {common_name!r} is not an SGX root CA")
    return common_name[: -len(_ROOT_SUFFIX)]


def _check_name(
    cert: x509.Certificate, suffixes: Sequence[str], anchor: TrustAnchor, code: str, what: str
) -> str:
    """Check a certificate's subject is exactly one of the PKI's names under ``anchor``.

    Returns the matched suffix (for example ``SGX PCK Platform CA``).

    Raises:
        EvidenceError: The name differs (``code``).
    """
    prefix = _name_prefix(anchor, code)
    allowed_cns = [prefix + suffix for suffix in suffixes]
    common_name, other_attributes = _subject_parts(cert)
    if common_name not in allowed_cns:
        raise _fail(
            code, f"the {what}'s common name is {common_name!r}, expected {allowed_cns[0]!r}"
        )
    if other_attributes != anchor.other_name_attributes:
        raise _fail(code, f"the {what}'s subject {cert.subject.rfc4514_string()} is not Intel's")
    return common_name[len(prefix) :]


@dataclass(frozen=True, slots=True)
class _Layout:
    """The fields of a certificate's DER that ``verify_directly_issued_by`` compares.

    Attributes:
        outer_algorithm: The certificate's signatureAlgorithm element (tag, length, value).
        inner_algorithm: The TBSCertificate's signature element.
        issuer: The TBSCertificate's issuer element.
        subject: The TBSCertificate's subject element.
    """

    outer_algorithm: bytes
    inner_algorithm: bytes
    issuer: bytes
    subject: bytes


def _layout_of(cert: x509.Certificate) -> _Layout | None:
    """Return the compared fields of ``cert``'s DER, or ``None`` if they cannot be located.

    The DER is cryptography's encoding of the parsed certificate, the form its own checks use.
    """
    der = cert_der(cert)
    try:
        top = _der.read_sequence(der)
        if len(top) != 3:
            return None
        fields = _der.read_sequence(der, *top[0])
    except DerError:
        return None
    # Skip the optional [0] EXPLICIT version; then serial, signature, issuer, validity, subject.
    first = 1 if fields and der[fields[0][0]] == 0xA0 else 0
    if len(fields) < first + 5:
        return None
    signature, issuer, subject = (fields[first + index] for index in (1, 2, 4))
    return _Layout(
        outer_algorithm=der[top[1][0] : top[1][1]],
        inner_algorithm=der[signature[0] : signature[1]],
        issuer=der[issuer[0] : issuer[1]],
        subject=der[subject[0] : subject[1]],
    )


_layout: Final = ObjectMemo(_layout_of)
# AlgorithmIdentifier { ecdsa-with-SHA256 } without parameters (RFC 5758), the only form the
# fast path below takes.
_ECDSA_SHA256_ALGORITHM: Final = bytes.fromhex("300a06082a8648ce3d040302")


def _check_signed_by(
    child: x509.Certificate, parent: x509.Certificate, code: str, what: str
) -> None:
    """Check ``child`` names ``parent`` as issuer and carries a valid signature by it.

    This is ``child.verify_directly_issued_by(parent)``: the inner and outer signature
    algorithms must be equal, ``child``'s issuer must equal ``parent``'s subject, and the
    signature over the TBSCertificate must verify under ``parent``'s key. When the encoded
    fields are byte-identical (hence equal), the algorithm is ECDSA with SHA-256 and the key is
    an EC key, the same verification is done directly with the (memoised) parent key object,
    which saves cryptography re-reading the parent key on every call; anything else, including
    every mismatch, goes through ``verify_directly_issued_by`` itself.

    Raises:
        EvidenceError: Issuer mismatch or bad signature (``code``).
    """
    child_layout = _layout(child)
    parent_layout = _layout(parent)
    if (
        child_layout is not None
        and parent_layout is not None
        and child_layout.outer_algorithm == _ECDSA_SHA256_ALGORITHM
        and child_layout.inner_algorithm == _ECDSA_SHA256_ALGORITHM
        and child_layout.issuer == parent_layout.subject
    ):
        key = _public_key(parent)
        if isinstance(key, ec.EllipticCurvePublicKey):
            try:
                key.verify(child.signature, _tbs(child), _ECDSA_SHA256)
            except InvalidSignature as exc:
                raise _fail(
                    code, f"the {what} is not issued and signed by its parent: {exc}"
                ) from exc
            return
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise _fail(code, f"the {what} is not issued and signed by its parent: {exc}") from exc


def _public_key(cert: x509.Certificate) -> object:
    """Return ``cert``'s public key, or ``None`` when cryptography cannot load it."""
    try:
        return cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _tbs_of(cert: x509.Certificate) -> bytes:
    """Return the TBSCertificate bytes cryptography verifies signatures over."""
    return cert.tbs_certificate_bytes


_tbs: Final = ObjectMemo(_tbs_of)


def _check_root(root: x509.Certificate, anchor: TrustAnchor, code: str, what: str) -> None:
    """Check a chain's root is the trust anchor itself, byte for byte.

    QVL checks the chain root is self-signed with a valid signature and that its signature
    equals the trusted root's; requiring the identical DER implies both and also rejects a
    root whose unsigned parts were altered.

    Raises:
        EvidenceError: The root differs from the anchor (``code``).
    """
    if cert_der(root) != anchor.der:
        raise _fail(code, f"the {what}'s root CA is not the trusted root CA")


@dataclass(frozen=True, slots=True)
class PckChain:
    """A structurally valid PCK chain (signatures checked, time not yet judged).

    Attributes:
        leaf: The PCK certificate.
        intermediate: The Platform or Processor CA certificate.
        root: The root CA certificate (equal to the trust anchor).
        ca_type: ``"platform"`` or ``"processor"``, from the intermediate's common name.
        validity: Validity windows of the three certificates.
    """

    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate
    ca_type: str
    validity: tuple[Validity, ...]


def _verify_pck_chain(certs: Sequence[x509.Certificate], anchor: TrustAnchor) -> PckChain:
    """Check a PCK chain has Intel's exact shape and chains to ``anchor`` (QVL §2.4 step 2).

    Raises:
        EvidenceError: Wrong length, names, issuers or signatures (``pck.chain_invalid``).
    """
    code = "pck.chain_invalid"
    if len(certs) != 3:
        raise _fail(code, f"the PCK certificate chain has {len(certs)} certificates, expected 3")
    leaf, intermediate, root = certs
    _check_root(root, anchor, code, "PCK certificate chain")
    ca_suffix = _check_name(intermediate, _PCK_CA_SUFFIXES, anchor, code, "PCK CA certificate")
    _check_name(leaf, (_PCK_CERT_SUFFIX,), anchor, code, "PCK certificate")
    _check_signed_by(intermediate, root, code, "PCK CA certificate")
    _check_signed_by(leaf, intermediate, code, "PCK certificate")
    return PckChain(
        leaf=leaf,
        intermediate=intermediate,
        root=root,
        ca_type="platform" if ca_suffix == _PCK_CA_SUFFIXES[0] else "processor",
        validity=(
            cert_validity(leaf, "PCK certificate"),
            cert_validity(intermediate, "PCK CA certificate"),
            cert_validity(root, "root CA certificate"),
        ),
    )


def _verify_tcb_signing_chain(
    certs: Sequence[x509.Certificate], anchor: TrustAnchor, *, code: str, what: str
) -> tuple[x509.Certificate, tuple[Validity, ...]]:
    """Check a TCB signing chain (TCB Signing cert ← root) and return the signing cert.

    Raises:
        EvidenceError: Wrong length, names, issuers or signatures (``code``).
    """
    if len(certs) != 2:
        raise _fail(code, f"the {what} has {len(certs)} certificates, expected 2")
    signing, root = certs
    _check_root(root, anchor, code, what)
    _check_name(signing, (_TCB_SIGNING_SUFFIX,), anchor, code, f"{what}'s signing certificate")
    _check_signed_by(signing, root, code, f"{what}'s signing certificate")
    return signing, (
        cert_validity(signing, f"{what} signing certificate"),
        cert_validity(root, "root CA certificate"),
    )


def _verify_pck_crl_issuer_chain(
    certs: Sequence[x509.Certificate], anchor: TrustAnchor, verified_ca_ders: frozenset[bytes]
) -> tuple[x509.Certificate, tuple[Validity, ...]]:
    """Check the PCK CRL issuer chain (Platform/Processor CA ← root) and return the CA cert.

    Raises:
        EvidenceError: Wrong length, names, issuers or signatures (``crl.invalid``).
    """
    code = "crl.invalid"
    if len(certs) != 2:
        raise _fail(code, f"the PCK CRL issuer chain has {len(certs)} certificates, expected 2")
    issuer, root = certs
    _check_root(root, anchor, code, "PCK CRL issuer chain")
    _check_name(issuer, _PCK_CA_SUFFIXES, anchor, code, "PCK CRL issuer")
    # The root is the anchor (checked above), so a CA certificate byte-identical to one already
    # verified under this anchor has a valid signature; anything else is verified here.
    if not verified_ca_ders or cert_der(issuer) not in verified_ca_ders:
        _check_signed_by(issuer, root, code, "PCK CRL issuer")
    return issuer, (
        cert_validity(issuer, "PCK CRL issuer certificate"),
        cert_validity(root, "root CA certificate"),
    )


@dataclass(frozen=True, slots=True)
class VerifiedCrl:
    """A CRL whose issuer, extensions and signature were checked.

    Attributes:
        what: Operator-facing name (``PCK CRL``, ``root CA CRL``).
        issuer: The CRL issuer's name.
        issuer_der: The DER encoding of ``issuer`` (compared byte for byte).
        number: The CRL number.
        validity: thisUpdate to nextUpdate.
        crl: The parsed CRL (revocation lookups run in cryptography's Rust code).
        digest: SHA-256 of the DER encoding.
    """

    what: str
    issuer: x509.Name
    issuer_der: bytes
    number: int
    validity: Validity
    crl: x509.CertificateRevocationList
    digest: bytes

    def is_revoked(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` (issued by this CRL's issuer) is listed as revoked.

        Raises:
            EvidenceError: An entry of the (signed) CRL cannot be decoded (``crl.invalid``).
        """
        try:
            entry = self.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        except ValueError as exc:
            raise _fail("crl.invalid", f"the {self.what} has a malformed entry: {exc}") from exc
        return entry is not None and cert.issuer.public_bytes() == self.issuer_der


def verify_crl(der: bytes, issuer: x509.Certificate, what: str) -> VerifiedCrl:
    """Parse and check a CRL issued by ``issuer`` (QVL ``PckCrlVerifier``).

    Raises:
        EvidenceError: Unreadable, wrong issuer, missing CRL Number / AKI extension, no
            nextUpdate or a bad signature (``crl.invalid``).
    """
    code = "crl.invalid"
    try:
        crl = _load_der_crl(bytes(der))
    except ValueError as exc:
        raise _fail(code, f"the {what} is not a DER CRL: {exc}") from exc
    try:
        crl_issuer, crl_issuer_der = _crl_issuer(bytes(der))
        if crl_issuer_der != subject_der(issuer):
            raise _fail(
                code,
                f"the {what} is issued by {crl_issuer.rfc4514_string()}, expected "
                f"{issuer.subject.rfc4514_string()}",
            )
        try:
            number = crl.extensions.get_extension_for_oid(ExtensionOID.CRL_NUMBER).value
            crl.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        except x509.ExtensionNotFound as exc:
            raise _fail(code, f"the {what} lacks extension {exc.oid.dotted_string}") from exc
        next_update = crl.next_update_utc
        if next_update is None:
            raise _fail(code, f"the {what} has no nextUpdate")
        public_key = issuer.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(
            public_key
        ):
            raise _fail(code, f"the {what}'s signature does not verify")
    except (ValueError, TypeError) as exc:
        # cryptography parses CRL fields lazily, so a malformed entry surfaces here.
        raise _fail(code, f"the {what} is malformed: {exc}") from exc
    if not isinstance(number, x509.CRLNumber):
        raise _fail(code, f"the {what}'s CRL number is malformed")
    return VerifiedCrl(
        what=what,
        issuer=crl_issuer,
        issuer_der=crl_issuer_der,
        number=number.crl_number,
        validity=Validity(what, crl.last_update_utc, next_update),
        crl=crl,
        digest=hashlib.sha256(der).digest(),
    )


def verify_pck_chain(certs: Sequence[x509.Certificate], anchor: TrustAnchor) -> PckChain:
    """Check a PCK chain has Intel's exact shape and chains to ``anchor`` (QVL §2.4 step 2).

    Raises:
        EvidenceError: Wrong length, names, issuers, keys or signatures (``pck.chain_invalid``).
    """
    with _malformed_as("pck.chain_invalid", "PCK certificate chain"):
        return _verify_pck_chain(certs, anchor)


def verify_tcb_signing_chain(
    certs: Sequence[x509.Certificate], anchor: TrustAnchor, *, code: str, what: str
) -> tuple[x509.Certificate, tuple[Validity, ...]]:
    """Check a TCB signing chain (TCB Signing cert, then root) and return the signing cert.

    Raises:
        EvidenceError: Wrong length, names, issuers, keys or signatures (``code``).
    """
    with _malformed_as(code, what):
        return _verify_tcb_signing_chain(certs, anchor, code=code, what=what)


def verify_pck_crl_issuer_chain(
    certs: Sequence[x509.Certificate],
    anchor: TrustAnchor,
    *,
    verified_ca_ders: frozenset[bytes] = frozenset(),
) -> tuple[x509.Certificate, tuple[Validity, ...]]:
    """Check the PCK CRL issuer chain (Platform/Processor CA, then root); return the CA cert.

    ``verified_ca_ders`` holds DER encodings of PCK CA certificates already verified under
    ``anchor`` in the same verification (the PCK chain's CA, normally the same certificate), whose
    signature need not be checked twice.

    Raises:
        EvidenceError: Wrong length, names, issuers, keys or signatures (``crl.invalid``).
    """
    with _malformed_as("crl.invalid", "PCK CRL issuer chain"):
        return _verify_pck_crl_issuer_chain(certs, anchor, verified_ca_ders)


@contextlib.contextmanager
def _malformed_as(code: str, what: str) -> Iterator[None]:
    """Turn cryptography's lazy-parsing errors (``ValueError``) into an evidence error.

    cryptography decodes names, keys and extensions on first access, so a corrupted certificate
    that loaded fine can still fail deep inside a check.

    Raises:
        EvidenceError: A ``ValueError`` or ``TypeError`` escaped the block (``code``).
    """
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise _fail(code, f"the {what} holds a malformed certificate: {exc}") from exc


def public_key_from_raw(xy: bytes, *, code: str, what: str) -> ec.EllipticCurvePublicKey:
    """Return a P-256 public key from its raw 64-byte ``x || y`` form (as quotes carry it).

    Raises:
        EvidenceError: Not 64 bytes or not a point on P-256 (``code``).
    """
    if len(xy) != 64:
        raise _fail(code, f"the {what} is {len(xy)} bytes, expected 64")
    try:
        return _p256_key(bytes(xy))
    except ValueError as exc:
        raise _fail(code, f"the {what} is not a P-256 point") from exc


def verify_raw_signature(
    key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, *, code: str, what: str
) -> None:
    """Verify an ECDSA-P256-SHA256 signature given as raw ``r || s`` (64 bytes).

    Raises:
        EvidenceError: The signature is malformed or does not verify (``code``).
    """
    if len(signature) != 64:
        raise _fail(code, f"the {what} is {len(signature)} bytes, expected 64")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
    except InvalidSignature as exc:
        raise _fail(code, f"the {what} does not verify") from exc
