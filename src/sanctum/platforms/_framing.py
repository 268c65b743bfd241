"""Minimal framing checks on quotes read from a device, before anything else sees them.

A device read that stops early yields a truncated quote. The full parser and verifier live in
:mod:`sanctum.attestation`; the backends only need to know, cheaply and without trusting the
content, that the bytes hold a complete DCAP quote (header, body and the declared signature data)
and where its report data sits, so that they can refuse a short read and detect a quote made for
somebody else's report data. Offsets follow Intel's ``sgx_quote_3.h``/``_4.h``/``_5.h``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from sanctum.errors import UsageError
from sanctum.platforms.errors import PlatformUnavailableError
from sanctum.platforms.evidence import REPORT_DATA_SIZE

__all__ = ["QuoteFraming", "check_quote_framing", "pad_report_data"]

_HEADER_SIZE: Final = 48
_SGX_BODY: Final = 384
_TD10_BODY: Final = 584
_TEE_SGX: Final = 0x00000000
_TEE_TDX: Final = 0x00000081
_SGX_REPORT_DATA: Final = 320
_TD_REPORT_DATA: Final = 520
_V5_BODY_SIZES: Final = {1: 384, 2: 584, 3: 648, 4: 885}


@dataclass(frozen=True, slots=True)
class QuoteFraming:
    """Where the parts of a well-framed quote are.

    Attributes:
        version: Quote version (3, 4 or 5).
        tee: ``sgx`` or ``tdx``.
        length: Bytes the quote really uses (trailing padding excluded).
        report_data: The 64-byte report-data field of the body.
    """

    version: int
    tee: str
    length: int
    report_data: bytes


def _truncated(source: str, what: str, size: int) -> PlatformUnavailableError:
    return PlatformUnavailableError(
        f"{source} returned a truncated quote ({size} bytes): {what}",
        code="platform.short_read",
        hint="The device stopped early; retry, and check the platform's logs if it persists.",
        details={"bytes": size},
    )


def check_quote_framing(data: bytes, *, source: str) -> QuoteFraming:
    """Check that ``data`` is a complete DCAP quote as far as its framing goes.

    Args:
        data: Bytes read from the device.
        source: Name of the device for messages (for example ``/dev/attestation/quote``).

    Returns:
        The framing facts of the quote.

    Raises:
        PlatformUnavailableError: ``platform.empty_quote`` when nothing was read,
            ``platform.short_read`` when the bytes end before the declared end of the quote,
            ``platform.bad_quote`` when the header is not a DCAP ECDSA quote header.
    """
    size = len(data)
    if size == 0:
        raise PlatformUnavailableError(
            f"{source} returned an empty quote",
            code="platform.empty_quote",
            hint="The quoting enclave produced nothing; check that the platform's quote "
            "provider (for example aesmd or the QGS) is running.",
        )
    if size < _HEADER_SIZE:
        raise _truncated(source, "shorter than the 48-byte header", size)
    version, key_type, tee_type = struct.unpack_from("<HHI", data, 0)
    if version not in (3, 4, 5) or key_type != 2 or tee_type not in (_TEE_SGX, _TEE_TDX):
        raise PlatformUnavailableError(
            f"{source} returned bytes that are not a DCAP ECDSA quote "
            f"(version {version}, key type {key_type}, TEE type {tee_type:#x})",
            code="platform.bad_quote",
        )
    tee = "sgx" if tee_type == _TEE_SGX else "tdx"
    if version == 5:
        if size < _HEADER_SIZE + 6:
            raise _truncated(source, "the v5 body descriptor is missing", size)
        body_type, body_size = struct.unpack_from("<HI", data, _HEADER_SIZE)
        if _V5_BODY_SIZES.get(body_type) != body_size:
            raise PlatformUnavailableError(
                f"{source} returned a v5 quote with body type {body_type} of {body_size} bytes",
                code="platform.bad_quote",
            )
        body_offset = _HEADER_SIZE + 6
        report_data_at = body_offset + (_SGX_REPORT_DATA if body_type == 1 else _TD_REPORT_DATA)
    else:
        body_offset = _HEADER_SIZE
        body_size = _TD10_BODY if tee == "tdx" else _SGX_BODY
        report_data_at = body_offset + (_TD_REPORT_DATA if tee == "tdx" else _SGX_REPORT_DATA)
    length_at = body_offset + body_size
    if size < length_at + 4:
        raise _truncated(source, "the quote body or signature length is missing", size)
    (sig_len,) = struct.unpack_from("<I", data, length_at)
    end = length_at + 4 + sig_len
    if size < end:
        raise _truncated(source, f"the signature data declares {sig_len} bytes", size)
    return QuoteFraming(
        version=version,
        tee=tee,
        length=end,
        report_data=data[report_data_at : report_data_at + 64],
    )


def pad_report_data(report_data: bytes) -> bytes:
    """Return ``report_data`` padded with zero bytes to the 64 bytes every quote carries.

    Raises:
        UsageError: ``platform.report_data_too_long`` when ``report_data`` exceeds 64 bytes.
    """
    if len(report_data) > REPORT_DATA_SIZE:
        raise UsageError(
            f"report data is {len(report_data)} bytes; a quote carries at most {REPORT_DATA_SIZE}",
            code="platform.report_data_too_long",
            hint="Hash longer data (for example with SHA-512) and pass the digest.",
        )
    return report_data.ljust(REPORT_DATA_SIZE, b"\0")
