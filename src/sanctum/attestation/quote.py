"""Parser of Intel DCAP ECDSA quotes (versions 3, 4 and 5; SGX and TDX) into frozen dataclasses.

A quote is ``header ‖ body ‖ uint32 signature_data_length ‖ signature_data``; the attestation
key signs ``header ‖ body`` (:attr:`Quote.signed_bytes`). The body is an SGX report (v3, v4 SGX,
v5 type 1) or a TD report (v4 TDX: 1.0; v5 types 2, 3, 4: 1.0, 1.5, 1.5 Ex). The signature data
carries the quote signature, the attestation public key and the Quoting Enclave's report signed
by the PCK key, followed by certification data (normally the PEM PCK certificate chain). In v4
and v5 the QE part is wrapped in certification data of type 6.

:func:`parse_quote` only checks structure: every length is bounded by the enclosing length and by
the buffer, variants Sanctum cannot verify are refused with a specific code, and nothing but a
:class:`~sanctum.attestation.errors.QuoteFormatError` ever escapes. Bytes after the declared
signature data (real TDX quotes are zero-padded to 5006 or 8000 bytes) are ignored, as Intel's QVL
does. No cryptography happens here: signatures, the QE vendor ID, the PCK chain and the TCB are the
verifier's job. Layouts and sources: ``docs/adr/0010-dcap-quote-parsing.md``.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from sanctum.attestation.errors import QuoteFormatError
from sanctum.attestation.report import (
    SGX_REPORT_BODY_SIZE,
    TD_REPORT10_SIZE,
    TD_REPORT15_SIZE,
    TD_REPORT15EX_SIZE,
    SgxReportBody,
    TdReportBody,
    TdReportExtension,
    parse_sgx_report_body,
    parse_td_report_body,
)

__all__ = [
    "ATTESTATION_KEY_TYPE_ECDSA_P256",
    "INTEL_QE_VENDOR_ID",
    "QUOTE_HEADER_SIZE",
    "BodyType",
    "CertificationData",
    "CertificationType",
    "PckIdentity",
    "QeReportCertificationData",
    "Quote",
    "QuoteHeader",
    "QuoteSignature",
    "SgxReportBody",
    "TdReportBody",
    "TdReportExtension",
    "TeeType",
    "parse_quote",
]

QUOTE_HEADER_SIZE: Final = 48
#: Attestation key type 2: ECDSA-256-with-P-256 (the only one Sanctum verifies).
ATTESTATION_KEY_TYPE_ECDSA_P256: Final = 2
#: Attestation key type 3: ECDSA-384-with-P-384 (defined by Intel, never produced, refused).
ATTESTATION_KEY_TYPE_ECDSA_P384: Final = 3
#: QE vendor ID of Intel's Quoting Enclave; the verifier must require it.
INTEL_QE_VENDOR_ID: Final = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

_HEADER: Final = struct.Struct("<HHIHH16s20s")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_V5_BODY_DESCRIPTOR: Final = struct.Struct("<HI")
_CERT_HEADER: Final = struct.Struct("<HI")
_PCK_ID_TAIL: Final = struct.Struct("<16sH2s")

_SIGNATURE_SIZE: Final = 64
_KEY_SIZE: Final = 64
# QE report (384) + QE report signature (64) + uint16 auth data size.
_QE_FIXED_SIZE: Final = SGX_REPORT_BODY_SIZE + _SIGNATURE_SIZE + 2


class TeeType(enum.IntEnum):
    """The trusted execution environment a quote describes (header offset 4)."""

    SGX = 0x00000000
    TDX = 0x00000081


class BodyType(enum.IntEnum):
    """Quote v5 body types; v3 and v4 quotes are given the equivalent type."""

    SGX_REPORT = 1
    TD_REPORT10 = 2
    TD_REPORT15 = 3
    TD_REPORT15EX = 4


_BODY_SIZES: Final = {
    BodyType.SGX_REPORT: SGX_REPORT_BODY_SIZE,
    BodyType.TD_REPORT10: TD_REPORT10_SIZE,
    BodyType.TD_REPORT15: TD_REPORT15_SIZE,
    BodyType.TD_REPORT15EX: TD_REPORT15EX_SIZE,
}


class CertificationType(enum.IntEnum):
    """Certification data types (``sgx_ql_cert_key_type_t``, DCAP ``sgx_quote_3.h``)."""

    PPID_CLEARTEXT = 1
    PPID_RSA2048_ENCRYPTED = 2
    PPID_RSA3072_ENCRYPTED = 3
    PCK_CERT = 4
    PCK_CERT_CHAIN = 5
    QE_REPORT_CERTIFICATION = 6
    PLATFORM_MANIFEST = 7


# Types 1-3 carry a PPID (clear or RSA-OAEP encrypted) then CPUSVN (16), PCESVN (2), PCEID (2).
_PPID_SIZES: Final = {1: 16, 2: 256, 3: 384}
# Certification data allowed next to the QE report (v3) or inside the type-6 wrapper (v4/v5).
_INNER_TYPES: Final = frozenset({1, 2, 3, 4, 5, 7})

_PEM_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_PEM_END: Final = b"-----END CERTIFICATE-----"
_PEM_BODY_CHARACTERS: Final = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"
)
_PEM_SEPARATOR: Final = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    """The 48-byte quote header.

    Attributes:
        version: Quote format version (3, 4 or 5).
        attestation_key_type: 2 for ECDSA-256-with-P-256.
        tee_type: SGX or TDX (always SGX in v3, where the field is reserved).
        qe_svn: QE security version (v4/v5 name these bytes ``reserved``; 0 in TDX quotes).
        pce_svn: PCE security version (same remark as ``qe_svn``).
        qe_vendor_id: Vendor of the Quoting Enclave (16 bytes; Intel's is
            :data:`INTEL_QE_VENDOR_ID`).
        user_data: Custom QE data (20 bytes; the first 16 are the QE ID).
    """

    version: int
    attestation_key_type: int
    tee_type: TeeType
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    def to_bytes(self) -> bytes:
        """Return the 48-byte encoding.

        Raises:
            QuoteFormatError: A field does not fit its layout (``quote.field_size``).
        """
        if len(self.qe_vendor_id) != 16 or len(self.user_data) != 20:
            raise QuoteFormatError(
                "quote header needs a 16-byte QE vendor ID and 20 bytes of user data",
                code="quote.field_size",
            )
        try:
            return _HEADER.pack(
                self.version,
                self.attestation_key_type,
                int(self.tee_type),
                self.qe_svn,
                self.pce_svn,
                self.qe_vendor_id,
                self.user_data,
            )
        except struct.error as error:
            raise QuoteFormatError(
                f"quote header has an integer field out of range: {error}",
                code="quote.field_size",
            ) from None


@dataclass(frozen=True, slots=True)
class PckIdentity:
    """The platform identity certification data types 1-3 carry instead of a PCK chain.

    With these types the PCK certificate chain must come from Intel PCS or a PCCS, looked up by
    (encrypted) PPID, CPUSVN, PCESVN and PCE ID.

    Attributes:
        ppid: The PPID: 16 bytes in clear (type 1), else RSA-OAEP ciphertext (256 or 384 bytes).
        ppid_encrypted: Whether ``ppid`` is encrypted (types 2 and 3).
        cpu_svn: Raw CPUSVN of the platform (16 bytes).
        pce_svn: PCE security version.
        pce_id: PCE identifier (2 bytes).
    """

    ppid: bytes
    ppid_encrypted: bool
    cpu_svn: bytes
    pce_svn: int
    pce_id: bytes


@dataclass(frozen=True, slots=True)
class CertificationData:
    """Certification data: a type and its raw bytes.

    Attributes:
        cert_type: The certification data type (see :class:`CertificationType`).
        data: The raw certification data, exactly as declared by its size field.
    """

    cert_type: int
    data: bytes

    def pck_chain_pem(self) -> list[bytes]:
        """Return the PEM PCK certificate chain of type-5 data, leaf first, one block each.

        The NUL terminator Intel's QE appends is ignored; anything else outside the PEM blocks
        than whitespace is refused.

        Raises:
            QuoteFormatError: The type carries no chain (``quote.pck_chain_missing``: types 1-4
                need a chain from PCS/PCCS) or the PEM text is malformed (``quote.malformed``).
        """
        if self.cert_type != CertificationType.PCK_CERT_CHAIN:
            raise QuoteFormatError(
                f"certification data type {self.cert_type} carries no PCK certificate chain",
                code="quote.pck_chain_missing",
                hint="fetch the PCK certificate chain from Intel PCS or a PCCS and supply it",
            )
        return _split_pem_certificates(self.data)

    def qe_report_certification(self) -> QeReportCertificationData:
        """Return the QE report certification data that type-6 data wraps (v4/v5 quotes).

        :func:`parse_quote` already unwraps it into :attr:`QuoteSignature.qe`; this reads a
        type-6 blob met on its own.

        Raises:
            QuoteFormatError: The type is not 6 (``quote.unsupported_certification_type``) or
                the data is malformed (``quote.malformed``).
        """
        if self.cert_type != CertificationType.QE_REPORT_CERTIFICATION:
            raise QuoteFormatError(
                f"certification data type {self.cert_type} is not QE report certification data",
                code="quote.unsupported_certification_type",
            )
        return _parse_qe_report_certification(self.data, 0, len(self.data))

    def pck_identity(self) -> PckIdentity:
        """Return the PPID, CPUSVN, PCESVN and PCE ID of type 1-3 data.

        Raises:
            QuoteFormatError: The type is not 1-3 (``quote.unsupported_certification_type``) or
                the data has the wrong size (``quote.malformed``).
        """
        ppid_size = _PPID_SIZES.get(self.cert_type)
        if ppid_size is None:
            raise QuoteFormatError(
                f"certification data type {self.cert_type} carries no PPID",
                code="quote.unsupported_certification_type",
            )
        if len(self.data) != ppid_size + _PCK_ID_TAIL.size:
            raise QuoteFormatError(
                f"certification data type {self.cert_type} must be "
                f"{ppid_size + _PCK_ID_TAIL.size} bytes, not {len(self.data)}",
                code="quote.malformed",
            )
        cpu_svn, pce_svn, pce_id = _PCK_ID_TAIL.unpack_from(self.data, ppid_size)
        return PckIdentity(self.data[:ppid_size], self.cert_type != 1, cpu_svn, pce_svn, pce_id)


@dataclass(frozen=True, slots=True)
class QeReportCertificationData:
    """The Quoting Enclave's report, its PCK signature, auth data and certification data.

    Attributes:
        qe_report: The parsed QE report.
        qe_report_bytes: The exact 384 bytes the PCK key signed.
        qe_report_signature: ECDSA P-256 signature of ``qe_report_bytes``, raw ``r‖s`` (64).
        qe_auth_data: QE authentication data; SHA-256(attestation key ‖ this) must equal the
            first 32 bytes of the QE report data.
        certification: How to find the PCK certificate (normally type 5, the PEM chain).
    """

    qe_report: SgxReportBody
    qe_report_bytes: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification: CertificationData


@dataclass(frozen=True, slots=True)
class QuoteSignature:
    """The quote's signature data (v3 ``sgx_ql_ecdsa_sig_data_t``; v4/v5 with its type-6 wrapper).

    Attributes:
        signature: ECDSA P-256 signature of :attr:`Quote.signed_bytes`, raw ``r‖s`` (64 bytes).
        attestation_key: The attestation public key, raw ``x‖y`` (64 bytes).
        qe: The QE report certification data that vouches for ``attestation_key``.
    """

    signature: bytes
    attestation_key: bytes
    qe: QeReportCertificationData


@dataclass(frozen=True, slots=True)
class Quote:
    """A parsed DCAP quote.

    Attributes:
        header: The quote header.
        body: The SGX report (SGX quotes) or the TD report (TDX quotes).
        body_type: The v5 body type, or its equivalent for v3/v4 (1 SGX, 2 TD report 1.0).
        signed_bytes: Exactly the header and body bytes the attestation key signed.
        signature: The signature data.
        length: Bytes of the input the quote occupies; anything after it was ignored.
    """

    header: QuoteHeader
    body: SgxReportBody | TdReportBody
    body_type: int
    signed_bytes: bytes
    signature: QuoteSignature
    length: int

    @property
    def tee(self) -> TeeType:
        """Return the TEE the quote describes."""
        return self.header.tee_type

    @property
    def version(self) -> int:
        """Return the quote format version (3, 4 or 5)."""
        return self.header.version

    @property
    def report_data(self) -> bytes:
        """Return the 64 bytes of report data bound by the enclave or TD."""
        return self.body.report_data

    @property
    def debug(self) -> bool:
        """Return whether the enclave or TD runs in debug mode (its memory is not protected)."""
        return self.body.debug


def _pem_error() -> QuoteFormatError:
    """Return the error for a certification-data PEM chain that is not a list of certificates."""
    return QuoteFormatError(
        "the PCK certificate chain in the quote is not a sequence of PEM certificates",
        code="quote.malformed",
    )


def _split_pem_certificates(data: bytes) -> list[bytes]:
    """Split NUL-terminated PEM text into certificate blocks; only whitespace may separate them.

    This is a plain scan (``bytes.find`` and ``bytes.translate``) rather than a regular
    expression: it runs once per quote on the verification hot path.

    Raises:
        QuoteFormatError: Anything but PEM certificates and whitespace (``quote.malformed``).
    """
    text = data.rstrip(b"\0")
    blocks: list[bytes] = []
    position = 0
    while (start := text.find(_PEM_BEGIN, position)) >= 0:
        if text[position:start].strip(_PEM_SEPARATOR):
            raise _pem_error()
        body_start = start + len(_PEM_BEGIN)
        end = text.find(_PEM_END, body_start)
        if end < 0:
            raise _pem_error()
        body = text[body_start:end]
        if (
            not body.startswith((b"\n", b"\r\n"))
            or not body.strip(_PEM_SEPARATOR)
            or body.translate(None, _PEM_BODY_CHARACTERS)
        ):
            raise _pem_error()
        position = end + len(_PEM_END)
        blocks.append(text[start:position] + b"\n")
    if not blocks or text[position:].strip(_PEM_SEPARATOR):
        raise _pem_error()
    return blocks


def _need(data: bytes, position: int, size: int, limit: int | None, what: str) -> None:
    """Check that ``size`` bytes at ``position`` lie inside the buffer, or before ``limit``.

    Args:
        data: The quote buffer.
        position: Where the field starts.
        size: The field's size.
        limit: End of the enclosing declared structure, or ``None`` for the end of the buffer.
        what: The field, for the error message.

    Raises:
        QuoteFormatError: The field runs past the buffer (``quote.truncated``) or past the
            enclosing declared length (``quote.malformed``).
    """
    if limit is None:
        if position + size > len(data):
            raise QuoteFormatError(
                f"quote is truncated: {what} needs {size} bytes at offset {position}, "
                f"the quote has {len(data)}",
                code="quote.truncated",
            )
    elif position + size > limit:
        raise QuoteFormatError(
            f"{what} ({size} bytes at offset {position}) overruns its enclosing structure, "
            f"which ends at offset {limit}",
            code="quote.malformed",
        )


def _parse_certification(data: bytes, position: int, limit: int) -> tuple[CertificationData, int]:
    """Parse ``uint16 type ‖ uint32 size ‖ data`` of an inner certification data at ``position``.

    Raises:
        QuoteFormatError: The type is not allowed here or the sizes do not fit.
    """
    _need(data, position, _CERT_HEADER.size, limit, "certification data header")
    cert_type, size = _CERT_HEADER.unpack_from(data, position)
    if cert_type not in _INNER_TYPES:
        raise QuoteFormatError(
            f"certification data type {cert_type} is not supported here "
            "(expected 1-5 or 7 next to the QE report)",
            code="quote.unsupported_certification_type",
        )
    position += _CERT_HEADER.size
    _need(data, position, size, limit, f"certification data of type {cert_type}")
    certification = CertificationData(cert_type, data[position : position + size])
    ppid_size = _PPID_SIZES.get(cert_type)
    if ppid_size is not None and size != ppid_size + _PCK_ID_TAIL.size:
        raise QuoteFormatError(
            f"certification data type {cert_type} must be {ppid_size + _PCK_ID_TAIL.size} "
            f"bytes, not {size}",
            code="quote.malformed",
        )
    return certification, position + size


def _parse_qe_report_certification(
    data: bytes, position: int, end: int
) -> QeReportCertificationData:
    """Parse QE report ‖ signature ‖ auth data ‖ certification data filling ``[position, end)``.

    Raises:
        QuoteFormatError: A size does not fit or bytes are left over before ``end``.
    """
    _need(data, position, _QE_FIXED_SIZE, end, "QE report, its signature and auth data size")
    qe_report_end = position + SGX_REPORT_BODY_SIZE
    qe_report_bytes = data[position:qe_report_end]
    qe_report = parse_sgx_report_body(qe_report_bytes)
    qe_report_signature = data[qe_report_end : qe_report_end + _SIGNATURE_SIZE]
    (auth_size,) = _U16.unpack_from(data, qe_report_end + _SIGNATURE_SIZE)
    position += _QE_FIXED_SIZE
    _need(data, position, auth_size, end, "QE auth data")
    qe_auth_data = data[position : position + auth_size]
    certification, position = _parse_certification(data, position + auth_size, end)
    if position != end:
        raise QuoteFormatError(
            f"{end - position} unexpected bytes after the certification data inside the "
            "declared signature data",
            code="quote.malformed",
        )
    return QeReportCertificationData(
        qe_report, qe_report_bytes, qe_report_signature, qe_auth_data, certification
    )


def _parse_signature(data: bytes, version: int, start: int, end: int) -> QuoteSignature:
    """Parse the signature data ``[start, end)`` of a quote of ``version``.

    Raises:
        QuoteFormatError: The signature data does not follow the layout of ``version``.
    """
    fixed = _SIGNATURE_SIZE + _KEY_SIZE
    _need(data, start, fixed, end, "quote signature and attestation key")
    signature = data[start : start + _SIGNATURE_SIZE]
    attestation_key = data[start + _SIGNATURE_SIZE : start + fixed]
    position = start + fixed
    if version != 3:
        # v4/v5: the QE part is certification data of type 6 that must fill the rest exactly.
        _need(data, position, _CERT_HEADER.size, end, "QE report certification data header")
        outer_type, size = _CERT_HEADER.unpack_from(data, position)
        if outer_type != CertificationType.QE_REPORT_CERTIFICATION:
            raise QuoteFormatError(
                f"quote v{version} signature data must hold certification data type 6 "
                f"(QE report), not type {outer_type}",
                code="quote.unsupported_certification_type",
            )
        position += _CERT_HEADER.size
        _need(data, position, size, end, "QE report certification data")
        if position + size != end:
            raise QuoteFormatError(
                f"{end - position - size} unexpected bytes after the QE report certification "
                "data inside the declared signature data",
                code="quote.malformed",
            )
    qe = _parse_qe_report_certification(data, position, end)
    return QuoteSignature(signature, attestation_key, qe)


def parse_quote(data: bytes | bytearray | memoryview) -> Quote:
    """Parse a DCAP ECDSA quote (v3, v4 or v5; SGX or TDX) without verifying anything.

    Args:
        data: The quote. Bytes after the declared signature data are ignored.

    Returns:
        The parsed quote; :attr:`Quote.length` tells how many bytes it occupied.

    Raises:
        QuoteFormatError: The bytes are not a quote Sanctum can verify. Codes:
            ``quote.truncated`` (the data ends inside a declared field),
            ``quote.malformed`` (inconsistent sizes, left-over bytes, body/TEE mismatch),
            ``quote.unsupported_version`` (not 3, 4 or 5),
            ``quote.unsupported_key_type`` (not ECDSA-256-with-P-256),
            ``quote.unsupported_tee`` (not SGX or TDX; TDX in a v3 quote),
            ``quote.unsupported_body_type`` (a v5 body type other than 1-4),
            ``quote.unsupported_certification_type`` (a type not allowed where it appears).
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    if size < QUOTE_HEADER_SIZE:
        raise QuoteFormatError(
            f"quote is truncated: {size} bytes is shorter than the {QUOTE_HEADER_SIZE}-byte header",
            code="quote.truncated",
        )
    version, key_type, tee_raw, qe_svn, pce_svn, vendor_id, user_data = _HEADER.unpack_from(data)
    if version not in (3, 4, 5):
        raise QuoteFormatError(
            f"quote version {version} is not supported (3, 4 and 5 are)",
            code="quote.unsupported_version",
        )
    if key_type != ATTESTATION_KEY_TYPE_ECDSA_P256:
        raise QuoteFormatError(
            f"attestation key type {key_type} is not supported (only 2, ECDSA-256-with-P-256)",
            code="quote.unsupported_key_type",
        )
    if tee_raw == TeeType.SGX:
        tee = TeeType.SGX
    elif tee_raw == TeeType.TDX and version != 3:
        tee = TeeType.TDX
    else:
        raise QuoteFormatError(
            f"TEE type {tee_raw:#010x} is not supported in a v{version} quote "
            "(SGX 0x00000000 everywhere, TDX 0x00000081 from v4)",
            code="quote.unsupported_tee",
        )
    header = QuoteHeader(version, key_type, tee, qe_svn, pce_svn, vendor_id, user_data)

    if version == 5:
        _need(data, QUOTE_HEADER_SIZE, _V5_BODY_DESCRIPTOR.size, None, "v5 body descriptor")
        body_type, body_size = _V5_BODY_DESCRIPTOR.unpack_from(data, QUOTE_HEADER_SIZE)
        expected = _BODY_SIZES.get(body_type)
        if expected is None:
            raise QuoteFormatError(
                f"quote v5 body type {body_type} is not supported (1-4 are)",
                code="quote.unsupported_body_type",
            )
        if (body_type == BodyType.SGX_REPORT) != (tee == TeeType.SGX):
            raise QuoteFormatError(
                f"quote v5 body type {body_type} does not match TEE {tee.name}",
                code="quote.malformed",
            )
        if body_size != expected:
            raise QuoteFormatError(
                f"quote v5 body type {body_type} must be {expected} bytes, not {body_size}",
                code="quote.malformed",
            )
        body_start = QUOTE_HEADER_SIZE + _V5_BODY_DESCRIPTOR.size
    else:
        body_type = BodyType.SGX_REPORT if tee == TeeType.SGX else BodyType.TD_REPORT10
        body_size = _BODY_SIZES[body_type]
        body_start = QUOTE_HEADER_SIZE
    body_end = body_start + body_size
    _need(data, body_start, body_size + _U32.size, None, "report body and signature data size")
    body: SgxReportBody | TdReportBody
    if body_type == BodyType.SGX_REPORT:
        body = parse_sgx_report_body(data, body_start)
    else:
        body = parse_td_report_body(data, body_start, body_size)
    (signature_size,) = _U32.unpack_from(data, body_end)
    signature_start = body_end + _U32.size
    _need(data, signature_start, signature_size, None, "signature data")
    signature_end = signature_start + signature_size
    signature = _parse_signature(data, version, signature_start, signature_end)
    return Quote(header, body, int(body_type), data[:body_end], signature, signature_end)
