"""Every refusal of the quote parser has its own code; synthetic variants of real quotes parse."""

import struct
from pathlib import Path

import pytest

from sanctum.attestation.errors import QuoteFormatError
from sanctum.attestation.quote import (
    QuoteHeader,
    SgxReportBody,
    TdReportBody,
    TdReportExtension,
    TeeType,
    parse_quote,
)
from sanctum.attestation.report import parse_sgx_report_body, parse_td_report_body

CASES = Path(__file__).resolve().parents[1] / "vectors" / "dcap" / "cases"
SGX_V3 = (CASES / "sgx-v3-phala.quote.bin").read_bytes()
TDX_V4 = (CASES / "tdx-v4-phala.quote.bin").read_bytes()
TDX_V5 = (CASES / "tdx-v5-gotdxguest.quote.bin").read_bytes()
EPPID_V3 = (
    Path(__file__).resolve().parents[1]
    / "vectors/dcap/sources/oasis-core/quote_v3_ecdsa_p256_eppid.bin"
).read_bytes()


def _put(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _trim(data: bytes) -> bytes:
    return data[: parse_quote(data).length]


def _v3_to_wrapped(v3: bytes, version: int) -> bytes:
    """Re-frame an SGX v3 quote as v4 or v5 (type-6 wrapper, v5 body descriptor)."""
    v3 = _trim(v3)
    header, body, sig = v3[:48], v3[48:432], v3[436:]
    inner = sig[128:]
    wrapped = sig[:128] + struct.pack("<HI", 6, len(inner)) + inner
    header = _put(header, 0, "<H", version)
    descriptor = struct.pack("<HI", 1, 384) if version == 5 else b""
    return header + descriptor + body + struct.pack("<I", len(wrapped)) + wrapped


def _td15_to_ex(v5: bytes, extension: bytes) -> bytes:
    v5 = _trim(v5)
    assert len(extension) == 237
    head = _put(v5[:54], 48, "<HI", 4, 885)
    return head + v5[54 : 54 + 648] + extension + v5[54 + 648 :]


def _signature_size_offset(data: bytes) -> int:
    quote = parse_quote(data)
    return len(quote.signed_bytes)


def _code(data: bytes) -> str:
    with pytest.raises(QuoteFormatError) as caught:
        parse_quote(data)
    return caught.value.code


@pytest.mark.parametrize("version", [0, 1, 2, 6, 0xFFFF])
def test_unsupported_versions(version):
    assert _code(_put(SGX_V3, 0, "<H", version)) == "quote.unsupported_version"


@pytest.mark.parametrize("key_type", [0, 1, 3, 4])
def test_only_p256_attestation_keys(key_type):
    assert _code(_put(TDX_V4, 2, "<H", key_type)) == "quote.unsupported_key_type"


@pytest.mark.parametrize(
    ("data", "tee"),
    [(SGX_V3, 0x81), (SGX_V3, 1), (TDX_V4, 0x80), (TDX_V5, 0x82), (TDX_V4, 0x81000000)],
)
def test_unsupported_tee_types(data, tee):
    assert _code(_put(data, 4, "<I", tee)) == "quote.unsupported_tee"


def test_header_shorter_than_48_bytes_is_truncated():
    assert _code(b"") == "quote.truncated"
    assert _code(SGX_V3[:47]) == "quote.truncated"


@pytest.mark.parametrize("body_type", [0, 5, 0xFFFF])
def test_unknown_v5_body_types(body_type):
    assert _code(_put(TDX_V5, 48, "<H", body_type)) == "quote.unsupported_body_type"


def test_v5_body_type_must_match_the_tee():
    assert _code(_put(TDX_V5, 48, "<H", 1)) == "quote.malformed"
    assert _code(_put(_v3_to_wrapped(SGX_V3, 5), 48, "<HI", 2, 584)) == "quote.malformed"


@pytest.mark.parametrize("size", [0, 584, 647, 649, 885, 0xFFFFFFFF])
def test_v5_body_size_must_equal_the_type_size(size):
    assert _code(_put(TDX_V5, 50, "<I", size)) == "quote.malformed"


def test_signature_data_longer_than_the_quote_is_truncated():
    data = _trim(SGX_V3)
    offset = _signature_size_offset(data)
    (size,) = struct.unpack_from("<I", data, offset)
    assert _code(_put(data, offset, "<I", size + 1)) == "quote.truncated"
    assert _code(_put(data, offset, "<I", 0xFFFFFFFF)) == "quote.truncated"


@pytest.mark.parametrize("data", [SGX_V3, TDX_V4, TDX_V5, EPPID_V3])
def test_signature_data_must_be_filled_exactly(data):
    data = _trim(data) + bytes(16)
    offset = _signature_size_offset(data)
    (size,) = struct.unpack_from("<I", data, offset)
    # Declared longer than its content: left-over bytes inside the signature data.
    assert _code(_put(data, offset, "<I", size + 1)) == "quote.malformed"
    # Declared shorter than its content: the content overruns it.
    assert _code(_put(data, offset, "<I", size - 1)) == "quote.malformed"
    assert _code(_put(data, offset, "<I", 100)) == "quote.malformed"


def _qe_cert_offset(data: bytes) -> int:
    """Offset of the QE report inside the signature data."""
    quote = parse_quote(data)
    start = len(quote.signed_bytes) + 4 + 128
    return start if quote.version == 3 else start + 6


@pytest.mark.parametrize("data", [SGX_V3, TDX_V4, TDX_V5])
def test_auth_data_size_overrun(data):
    offset = _qe_cert_offset(data) + 384 + 64
    assert _code(_put(data, offset, "<H", 0xFFFF)) == "quote.malformed"
    # Shrinking the auth data shifts the certification header onto auth bytes.
    assert _code(_put(data, offset, "<H", 31)) in {
        "quote.unsupported_certification_type",
        "quote.malformed",
    }


@pytest.mark.parametrize("data", [SGX_V3, TDX_V4, TDX_V5])
@pytest.mark.parametrize("cert_type", [0, 6, 8, 0xFFFF])
def test_inner_certification_types(data, cert_type):
    offset = _qe_cert_offset(data) + 384 + 64 + 2 + 32
    assert _code(_put(data, offset, "<H", cert_type)) == "quote.unsupported_certification_type"


@pytest.mark.parametrize("data", [SGX_V3, TDX_V4, TDX_V5])
def test_inner_certification_size_overrun(data):
    offset = _qe_cert_offset(data) + 384 + 64 + 2 + 32 + 2
    (size,) = struct.unpack_from("<I", data, offset)
    assert _code(_put(data, offset, "<I", size + 1)) == "quote.malformed"
    assert _code(_put(data, offset, "<I", size - 1)) == "quote.malformed"


@pytest.mark.parametrize("cert_type", [1, 2, 4, 5, 7, 0])
def test_v4_outer_certification_must_be_type_6(cert_type):
    offset = _signature_size_offset(TDX_V4) + 4 + 128
    assert _code(_put(TDX_V4, offset, "<H", cert_type)) == "quote.unsupported_certification_type"


@pytest.mark.parametrize("delta", [1, -1])
def test_v4_outer_certification_size_must_fill_the_signature_data(delta):
    data = _trim(TDX_V4)
    offset = _signature_size_offset(data) + 4 + 128 + 2
    (size,) = struct.unpack_from("<I", data, offset)
    assert _code(_put(data, offset, "<I", size + delta)) == "quote.malformed"


def test_ppid_certification_data_sizes_are_checked():
    data = _trim(EPPID_V3)
    offset = _qe_cert_offset(data) + 384 + 64 + 2 + 32
    # Type 3 data is 404 bytes; relabelled as type 1 or 2 its size is wrong.
    assert _code(_put(data, offset, "<H", 1)) == "quote.malformed"
    assert _code(_put(data, offset, "<H", 2)) == "quote.malformed"
    # As type 4 or 7 the bytes are opaque and the quote parses.
    assert parse_quote(_put(data, offset, "<H", 4)).signature.qe.certification.cert_type == 4
    assert parse_quote(_put(data, offset, "<H", 7)).signature.qe.certification.cert_type == 7


def test_sgx_v4_and_v5_quotes_parse():
    v3 = parse_quote(SGX_V3)
    for version in (4, 5):
        quote = parse_quote(_v3_to_wrapped(SGX_V3, version))
        assert quote.version == version
        assert quote.tee == TeeType.SGX
        assert quote.body_type == 1
        assert quote.body == v3.body
        assert quote.signature == v3.signature
        assert len(quote.signed_bytes) == (432 if version == 4 else 438)


def test_td_report_15_ex():
    extension = bytes(range(237))
    data = _td15_to_ex(TDX_V5, extension)
    quote = parse_quote(data)
    assert quote.body_type == 4
    assert len(quote.signed_bytes) == 54 + 885
    body = quote.body
    assert isinstance(body, TdReportBody)
    base = parse_quote(TDX_V5).body
    assert isinstance(base, TdReportBody)
    assert body.mr_servicetd == base.mr_servicetd
    assert body.extension == TdReportExtension(
        vmid=0,
        td_id=extension[1:33],
        dev_info=extension[33:81],
        init_servtd_hash=extension[81:129],
        init_servtd_attributes=extension[129:137],
        init_cpu_svn=extension[137:153],
        init_tee_tcb_svn=extension[153:169],
        init_tee_fmspc=extension[169:181],
        cur_servtd_hash=extension[181:229],
        cur_servtd_attributes=extension[229:237],
    )
    assert body.size == 885
    assert body.to_bytes() == data[54 : 54 + 885]


def test_parse_td_report_body_refuses_other_sizes():
    with pytest.raises(QuoteFormatError) as caught:
        parse_td_report_body(bytes(700), 0, 700)
    assert caught.value.code == "quote.unsupported_body_type"
    with pytest.raises(QuoteFormatError) as caught:
        parse_td_report_body(bytes(600), 0, 648)
    assert caught.value.code == "quote.truncated"
    with pytest.raises(QuoteFormatError) as caught:
        parse_sgx_report_body(bytes(384), 1)
    assert caught.value.code == "quote.truncated"
    with pytest.raises(QuoteFormatError):
        parse_sgx_report_body(bytes(384), -1)


def test_encoders_refuse_fields_of_the_wrong_size():
    sgx = parse_quote(SGX_V3).body
    assert isinstance(sgx, SgxReportBody)
    td = parse_quote(TDX_V5).body
    assert isinstance(td, TdReportBody)
    header = parse_quote(SGX_V3).header
    bad = [
        lambda: SgxReportBody(**{**_fields(sgx), "mr_enclave": bytes(31)}).to_bytes(),
        lambda: SgxReportBody(**{**_fields(sgx), "isv_svn": 1 << 16}).to_bytes(),
        lambda: TdReportBody(**{**_fields(td), "rtmr3": bytes(47)}).to_bytes(),
        lambda: TdReportBody(**{**_fields(td), "mr_servicetd": None}).to_bytes(),
        lambda: QuoteHeader(**{**_fields(header), "user_data": bytes(19)}).to_bytes(),
        lambda: QuoteHeader(**{**_fields(header), "qe_svn": -1}).to_bytes(),
    ]
    for encode in bad:
        with pytest.raises(QuoteFormatError) as caught:
            encode()
        assert caught.value.code == "quote.field_size"


def _fields(obj):
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}
