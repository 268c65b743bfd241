"""Property tests: whatever bytes arrive, the quote parser returns a Quote or a SanctumError."""

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanctum.attestation.errors import QuoteFormatError
from sanctum.attestation.quote import CertificationData, Quote, QuoteHeader, TeeType, parse_quote
from sanctum.attestation.report import parse_sgx_report_body, parse_td_report_body

CASES = Path(__file__).resolve().parents[1] / "vectors" / "dcap" / "cases"
QUOTES = [
    (CASES / name).read_bytes()
    for name in (
        "sgx-v3-phala.quote.bin",
        "tdx-v4-phala.quote.bin",
        "tdx-v5-alibaba-servicetd.quote.bin",
    )
]
EPPID = (
    Path(__file__).resolve().parents[1]
    / "vectors/dcap/sources/oasis-core/quote_v3_ecdsa_p256_eppid.bin"
).read_bytes()
QUOTES.append(EPPID)


def _sgx_v5(v3: bytes) -> bytes:
    """Re-frame an SGX v3 quote as v5 (body descriptor, type-6 wrapper)."""
    v3 = v3[: parse_quote(v3).length]
    signature = v3[436:]
    wrapped = signature[:128] + struct.pack("<HI", 6, len(signature) - 128) + signature[128:]
    header = struct.pack("<H", 5) + v3[2:48]
    body = struct.pack("<HI", 1, 384) + v3[48:432]
    return header + body + struct.pack("<I", len(wrapped)) + wrapped


def _td15_ex(v5: bytes) -> bytes:
    """Turn a TD report 1.5 quote into a 1.5 Ex one (body type 4, 237 more body bytes)."""
    v5 = v5[: parse_quote(v5).length]
    return v5[:48] + struct.pack("<HI", 4, 885) + v5[54:702] + bytes(range(237)) + v5[702:]


QUOTES += [_sgx_v5(QUOTES[0]), _td15_ex(QUOTES[2])]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _structural_offsets(data: bytes) -> list[int]:
    """Offsets of every length, type and version field of a real quote."""
    quote = parse_quote(data)
    size_at = len(quote.signed_bytes)
    qe_start = size_at + 4 + 128 + (0 if quote.version == 3 else 6)
    auth_at = qe_start + 384 + 64
    cert_at = auth_at + 2 + len(quote.signature.qe.qe_auth_data)
    fields = [0, 1, 2, 3, 4, 5, 6, 7, size_at, size_at + 1, size_at + 2, size_at + 3]
    fields += [auth_at, auth_at + 1, *range(cert_at, cert_at + 6)]
    if quote.version != 3:
        fields += list(range(size_at + 4 + 128, size_at + 4 + 134))
    if quote.version == 5:
        fields += list(range(48, 54))
    return fields


OFFSETS = [_structural_offsets(data) for data in QUOTES]
KNOWN_CODES = {
    "quote.malformed",
    "quote.truncated",
    "quote.unsupported_version",
    "quote.unsupported_key_type",
    "quote.unsupported_tee",
    "quote.unsupported_body_type",
    "quote.unsupported_certification_type",
}


def _check(data: bytes) -> None:
    """Parse ``data``; a success must be self-consistent, a failure a documented typed error."""
    try:
        quote = parse_quote(data)
    except QuoteFormatError as error:
        code = error.code
    else:
        assert isinstance(quote, Quote)
        assert quote.length <= len(data)
        assert data.startswith(quote.signed_bytes)
        assert parse_quote(data[: quote.length]) == quote
        return
    assert code in KNOWN_CODES


@st.composite
def mutated_quotes(draw: st.DrawFn) -> bytes:
    index = draw(st.integers(0, len(QUOTES) - 1))
    data = bytearray(QUOTES[index])
    positions = st.one_of(st.integers(0, len(data) - 1), st.sampled_from(OFFSETS[index]))
    for _ in range(draw(st.integers(1, 6))):
        data[draw(positions)] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data):
    _check(data)


@SETTINGS
@given(
    st.sampled_from([3, 4, 5]),
    st.sampled_from([0, 0x81]),
    st.binary(min_size=0, max_size=6000),
)
def test_arbitrary_bytes_behind_a_valid_header(version, tee, rest):
    header = struct.pack("<HHI", version, 2, tee) + bytes(40)
    _check(header + rest)


@SETTINGS
@given(mutated_quotes())
def test_mutated_real_quotes(data):
    _check(data)


@SETTINGS
@given(st.sampled_from(QUOTES), st.data())
def test_declared_lengths_anywhere(data, draw):
    # Any 16- or 32-bit value written over a length field gives a quote or a typed refusal.
    index = QUOTES.index(data)
    offset = draw.draw(st.sampled_from(OFFSETS[index]))
    buffer = bytearray(data)
    width = draw.draw(st.sampled_from([2, 4]))
    value = draw.draw(st.integers(0, (1 << (8 * width)) - 1))
    buffer[offset : offset + width] = value.to_bytes(width, "little")[: len(buffer) - offset]
    _check(bytes(buffer))


@SETTINGS
@given(st.binary(min_size=384, max_size=384))
def test_sgx_report_body_round_trip(raw):
    assert parse_sgx_report_body(raw).to_bytes() == raw


@SETTINGS
@given(st.sampled_from([584, 648, 885]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_td_report_body_round_trip(raw):
    body = parse_td_report_body(raw, 0, len(raw))
    assert body.size == len(raw)
    assert body.to_bytes() == raw


PEM_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
BEGIN = b"-----BEGIN CERTIFICATE-----"
END = b"-----END CERTIFICATE-----"


@st.composite
def pem_blocks(draw: st.DrawFn) -> bytes:
    lines = draw(
        st.lists(
            st.binary(min_size=1, max_size=64).map(
                lambda raw: bytes(PEM_ALPHABET[b % len(PEM_ALPHABET)] for b in raw)
            ),
            min_size=1,
            max_size=4,
        )
    )
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    return BEGIN + newline + newline.join(lines) + newline + END


@SETTINGS
@given(
    st.lists(pem_blocks(), min_size=1, max_size=4),
    st.lists(st.sampled_from([b"\n", b" ", b"\r\n", b"\t", b""]), min_size=5, max_size=5),
    st.integers(0, 3),
)
def test_pem_chains_split_into_their_blocks(blocks, separators, nuls):
    text = separators[0] + b"".join(
        block + separator for block, separator in zip(blocks, separators[1:], strict=False)
    )
    assert CertificationData(5, text + b"\0" * nuls).pck_chain_pem() == [
        block + b"\n" for block in blocks
    ]


@SETTINGS
@given(st.binary(max_size=300), st.lists(pem_blocks(), max_size=2), st.binary(max_size=20))
def test_arbitrary_pem_text_gives_blocks_or_a_typed_error(prefix, blocks, suffix):
    text = prefix + b"\n".join(blocks) + suffix
    try:
        result = CertificationData(5, text).pck_chain_pem()
    except QuoteFormatError as error:
        code = error.code
    else:
        assert all(block.startswith(BEGIN) and block.endswith(END + b"\n") for block in result)
        return
    assert code == "quote.malformed"


@SETTINGS
@given(
    st.builds(
        QuoteHeader,
        version=st.sampled_from([3, 4, 5]),
        attestation_key_type=st.just(2),
        tee_type=st.sampled_from(list(TeeType)),
        qe_svn=st.integers(0, 0xFFFF),
        pce_svn=st.integers(0, 0xFFFF),
        qe_vendor_id=st.binary(min_size=16, max_size=16),
        user_data=st.binary(min_size=20, max_size=20),
    )
)
def test_header_round_trip(header):
    encoded = header.to_bytes()
    assert len(encoded) == 48
    version, key_type, tee, qe_svn, pce_svn = struct.unpack_from("<HHIHH", encoded)
    assert (version, key_type, tee, qe_svn, pce_svn) == (
        header.version,
        2,
        int(header.tee_type),
        header.qe_svn,
        header.pce_svn,
    )
    assert encoded[12:28] == header.qe_vendor_id
    assert encoded[28:] == header.user_data
