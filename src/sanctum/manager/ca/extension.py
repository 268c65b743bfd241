"""The attestation certificate extension: the attested identity inside a workload certificate.

A relying party that trusts the account CA learns from a workload certificate not only *who*
(the SANs) but *what*: the measurement and signer of the code, its product id and security
version, the platform's TCB status and advisories, and whether the evidence was debug or
simulated. The extension is non-critical, so TLS stacks that do not know it still accept the
certificate; Sanctum tools decode it with :func:`read_attestation_extension`.

OID and ASN.1 module: see ``docs/adr/0080-attestation-certificate-extension.md``::

    id-sanctum ::= { joint-iso-itu-t(2) uuid(25) 319978867223196153942391167230832888643 }
    id-sanctum-attestation ::= { id-sanctum x509-extension(1) attestation-v1(1) }

    SanctumAttestation ::= SEQUENCE {
        version      INTEGER { v1(1) },
        tee          UTF8String,              -- "sgx" or "tdx"
        measurement  OCTET STRING,            -- MRENCLAVE (32 bytes) or MRTD (48 bytes)
        signer       OCTET STRING,            -- MRSIGNER (32) or MRSIGNERSEAM (48)
        isvProdId    INTEGER (0..65535),
        isvSvn       INTEGER (0..65535),
        tcbStatus    UTF8String,              -- Intel's status name, e.g. "UpToDate"
        advisoryIds  SEQUENCE OF UTF8String,  -- sorted, unique, e.g. "INTEL-SA-00334"
        debug        BOOLEAN,
        simulated    BOOLEAN
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography import x509

from sanctum.errors import EvidenceError
from sanctum.manager.ca import _der

__all__ = [
    "ATTESTATION_EXTENSION_OID",
    "SANCTUM_OID_ARC",
    "AttestationClaims",
    "TeeName",
    "attestation_extension",
    "decode_attestation_claims",
    "encode_attestation_claims",
    "read_attestation_extension",
]

#: Sanctum's private OID arc: a UUID-derived OID (ITU-T X.667), unique without registration.
SANCTUM_OID_ARC: Final = "2.25.319978867223196153942391167230832888643"

#: The attestation extension, version 1.
ATTESTATION_EXTENSION_OID: Final = x509.ObjectIdentifier(f"{SANCTUM_OID_ARC}.1.1")

_VERSION: Final = 1
_MEASUREMENT_SIZES: Final = {"sgx": 32, "tdx": 48}
_MAX_U16: Final = 0xFFFF

TeeName = Literal["sgx", "tdx"]


@dataclass(frozen=True, slots=True)
class AttestationClaims:
    """The attested identity a workload certificate carries.

    Attributes:
        tee: ``sgx`` or ``tdx``.
        measurement: MRENCLAVE (SGX, 32 bytes) or MRTD (TDX, 48 bytes).
        signer: MRSIGNER (SGX, 32 bytes) or MRSIGNERSEAM (TDX, 48 bytes).
        isvprodid: The enclave's product id (0 for TDX).
        isvsvn: The enclave's security version number (0 for TDX).
        tcb_status: Intel's TCB status name for the platform, e.g. ``UpToDate``.
        advisory_ids: Intel security advisories that apply, sorted and unique.
        debug: True when the enclave or TD runs in debug mode (its memory is readable).
        simulated: True when the evidence came from the simulated platform.
    """

    tee: TeeName
    measurement: bytes
    signer: bytes
    isvprodid: int
    isvsvn: int
    tcb_status: str
    advisory_ids: tuple[str, ...] = field(default=())
    debug: bool = False
    simulated: bool = False

    def __post_init__(self) -> None:
        """Check sizes and ranges and normalise the advisory list.

        Raises:
            EvidenceError: A field is out of range (code ``ca.claims_invalid``).
        """
        expected = _MEASUREMENT_SIZES.get(self.tee)
        if expected is None:
            raise EvidenceError(f"unknown TEE {self.tee!r}", code="ca.claims_invalid")
        if len(self.measurement) != expected:
            raise EvidenceError(
                f"{self.tee} measurement must be {expected} bytes, not {len(self.measurement)}",
                code="ca.claims_invalid",
            )
        if len(self.signer) not in {0, expected}:
            raise EvidenceError(
                f"{self.tee} signer must be {expected} bytes, not {len(self.signer)}",
                code="ca.claims_invalid",
            )
        for name in ("isvprodid", "isvsvn"):
            value = getattr(self, name)
            if not 0 <= value <= _MAX_U16:
                raise EvidenceError(
                    f"{name} {value} is not a 16-bit value", code="ca.claims_invalid"
                )
        if not self.tcb_status:
            raise EvidenceError("tcb_status is empty", code="ca.claims_invalid")
        object.__setattr__(self, "advisory_ids", tuple(sorted(set(self.advisory_ids))))


def encode_attestation_claims(claims: AttestationClaims) -> bytes:
    """Return the DER ``SanctumAttestation`` value of ``claims``."""
    return _der.sequence(
        _der.integer(_VERSION),
        _der.utf8_string(claims.tee),
        _der.octet_string(claims.measurement),
        _der.octet_string(claims.signer),
        _der.integer(claims.isvprodid),
        _der.integer(claims.isvsvn),
        _der.utf8_string(claims.tcb_status),
        _der.sequence(*(_der.utf8_string(advisory) for advisory in claims.advisory_ids)),
        _der.boolean(claims.debug),
        _der.boolean(claims.simulated),
    )


def decode_attestation_claims(der: bytes) -> AttestationClaims:
    """Parse a DER ``SanctumAttestation`` value strictly.

    Args:
        der: The extension's value bytes.

    Returns:
        The claims.

    Raises:
        EvidenceError: The bytes are not a valid version-1 value (codes
            ``ca.extension_malformed``, ``ca.extension_version`` or ``ca.claims_invalid``).
    """
    outer = _der.Reader(der)
    body = outer.sequence()
    outer.finish()
    version = body.integer()
    if version != _VERSION:
        raise EvidenceError(
            f"attestation extension version {version} is not supported (expected 1)",
            code="ca.extension_version",
        )
    tee = body.utf8_string()
    measurement = body.octet_string()
    signer = body.octet_string()
    isvprodid = body.integer()
    isvsvn = body.integer()
    tcb_status = body.utf8_string()
    advisories_reader = body.sequence()
    advisories: list[str] = []
    while not advisories_reader.at_end():
        advisories.append(advisories_reader.utf8_string())
    debug = body.boolean()
    simulated = body.boolean()
    body.finish()
    if tee not in _MEASUREMENT_SIZES:
        raise EvidenceError(f"unknown TEE {tee!r} in extension", code="ca.claims_invalid")
    if advisories != sorted(set(advisories)):
        raise EvidenceError(
            "advisory ids in the extension are not sorted and unique", code="ca.extension_malformed"
        )
    return AttestationClaims(
        tee="sgx" if tee == "sgx" else "tdx",
        measurement=measurement,
        signer=signer,
        isvprodid=isvprodid,
        isvsvn=isvsvn,
        tcb_status=tcb_status,
        advisory_ids=tuple(advisories),
        debug=debug,
        simulated=simulated,
    )


def attestation_extension(claims: AttestationClaims) -> x509.UnrecognizedExtension:
    """Return the extension value to add (non-critical) to a workload certificate."""
    return x509.UnrecognizedExtension(ATTESTATION_EXTENSION_OID, encode_attestation_claims(claims))


def read_attestation_extension(cert: x509.Certificate) -> AttestationClaims:
    """Return the attested identity carried by ``cert``.

    Args:
        cert: A workload certificate issued by a Sanctum CA.

    Returns:
        The decoded claims.

    Raises:
        EvidenceError: The certificate has no attestation extension (code
            ``ca.extension_missing``), it is critical, or it is malformed.
    """
    try:
        ext = cert.extensions.get_extension_for_oid(ATTESTATION_EXTENSION_OID)
    except x509.ExtensionNotFound as exc:
        raise EvidenceError(
            "the certificate carries no Sanctum attestation extension",
            code="ca.extension_missing",
        ) from exc
    if ext.critical:
        raise EvidenceError(
            "the attestation extension is marked critical; Sanctum issues it non-critical",
            code="ca.extension_malformed",
        )
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover (private OID)
        raise EvidenceError("unexpected extension type", code="ca.extension_malformed")
    return decode_attestation_claims(value.value)
