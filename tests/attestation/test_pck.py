"""The PCK certificate's SGX extension: real Intel certificates and strict DER refusals."""

import datetime as dt
import json
from pathlib import Path

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanctum.attestation.errors import PckExtensionError
from sanctum.attestation.pck import (
    SGX_EXTENSION_OID,
    PckConfiguration,
    PckExtensions,
    PckTcb,
    SgxType,
    parse_pck_extensions,
    parse_sgx_extension,
    pck_ca_type,
)
from sanctum.attestation.quote import parse_quote
from sanctum.errors import EvidenceError, SanctumError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
CASES = {c["case"]: c for c in json.loads((VECTORS / "expected.json").read_text())["cases"]}
ARC = "1.2.840.113741.1.13.1"
KEY = ec.generate_private_key(ec.SECP256R1())


def _chain(case: str) -> list[bytes]:
    quote = parse_quote((VECTORS / CASES[case]["quote_file"]).read_bytes())
    return quote.signature.qe.certification.pck_chain_pem()


LEAVES = {case: _chain(case)[0] for case in CASES}


# A tiny DER encoder, enough to build SGX extensions for tests.
def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def oid(dotted: str) -> bytes:
    arcs = [int(part) for part in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def integer(value: int, tag: int = 0x02) -> bytes:
    return tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def entry(suffix: str, value: bytes) -> bytes:
    return seq(oid(f"{ARC}.{suffix}"), value)


def tcb(components=tuple(range(16)), pce_svn=13, cpu_svn=bytes(range(16)), extra=()) -> bytes:
    items = [entry(f"2.{i}", integer(svn)) for i, svn in enumerate(components, start=1)]
    items += [entry("2.17", integer(pce_svn)), entry("2.18", tlv(0x04, cpu_svn)), *extra]
    return seq(*items)


FMSPC = bytes.fromhex("00906ed50000")


def extension(
    *,
    ppid=b"P" * 16,
    tcb_value=None,
    pce_id=b"\x00\x00",
    fmspc=FMSPC,
    sgx_type=None,
    instance=b"I" * 16,
    configuration=(True, False, True),
    extra=(),
) -> bytes:
    items = [
        entry("1", tlv(0x04, ppid)),
        entry("2", tcb() if tcb_value is None else tcb_value),
        entry("3", tlv(0x04, pce_id)),
        entry("4", tlv(0x04, fmspc)),
        entry("5", integer(1, 0x0A) if sgx_type is None else sgx_type),
    ]
    if instance is not None:
        items.append(entry("6", tlv(0x04, instance)))
    if configuration is not None:
        flags = [
            entry(f"7.{index}", tlv(0x01, b"\xff" if flag else b"\x00"))
            for index, flag in enumerate(configuration, start=1)
            if flag is not None
        ]
        items.append(entry("7", seq(*flags)))
    return seq(*items, *extra)


def certificate(
    issuer_cn: str | None = "Sanctum Simulated SGX PCK Platform CA",
    value: bytes | None = None,
    *,
    extra_cn: str | None = None,
) -> x509.Certificate:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sanctum tests")]
    if issuer_cn is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn))
    if extra_cn is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, extra_cn))
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SGX PCK Certificate")]))
        .issuer_name(x509.Name(attributes))
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if value is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(SGX_EXTENSION_OID, value), critical=False
        )
    return builder.sign(KEY, hashes.SHA256())


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_pck_certificates(case):
    leaf = x509.load_pem_x509_certificate(LEAVES[case])
    extensions = parse_pck_extensions(leaf)
    assert extensions.fmspc.hex().upper() == CASES[case]["fmspc"]
    assert pck_ca_type(leaf) == CASES[case]["pck_ca"]
    assert len(extensions.ppid) == 16
    assert len(extensions.pce_id) == 2
    # In every real certificate the 16 components are the bytes of CPUSVN.
    assert extensions.tcb.cpu_svn_components == tuple(extensions.tcb.cpu_svn)
    if CASES[case]["pck_ca"] == "platform":
        assert extensions.sgx_type == SgxType.Scalable
        assert extensions.platform_instance_id is not None
        assert extensions.configuration is not None
    else:
        assert extensions.sgx_type == SgxType.Standard
        assert extensions.platform_instance_id is None
        assert extensions.configuration is None


@pytest.mark.parametrize("case", sorted(CASES))
def test_agrees_with_dcap_qvl(case):
    theirs = dcap_qvl.parse_pck_extension_from_pem(LEAVES[case])
    ours = parse_pck_extensions(x509.load_pem_x509_certificate(LEAVES[case]))
    assert ours.ppid == theirs.ppid
    assert ours.tcb.cpu_svn == theirs.cpu_svn
    assert ours.tcb.pce_svn == theirs.pce_svn
    assert ours.pce_id == theirs.pce_id
    assert ours.fmspc == theirs.fmspc
    assert int(ours.sgx_type) == theirs.sgx_type
    assert ours.platform_instance_id == theirs.platform_instance_id


def test_phala_sgx_values():
    leaf = x509.load_pem_x509_certificate(LEAVES["sgx-v3-phala"])
    extensions = parse_pck_extensions(leaf)
    assert extensions.tcb == PckTcb(
        (11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        13,
        bytes.fromhex("0b0b0202ff0100000000000000000000"),
    )
    assert extensions.fmspc == bytes.fromhex("00a067110000")


def test_intermediate_certificates_have_no_sgx_extension():
    intermediate = x509.load_pem_x509_certificate(_chain("sgx-v3-phala")[1])
    with pytest.raises(PckExtensionError) as caught:
        parse_pck_extensions(intermediate)
    assert caught.value.code == "pck.extension_invalid"
    assert isinstance(caught.value, EvidenceError)


def test_duplicate_sgx_extensions_are_refused():
    twin = x509.ObjectIdentifier(f"{ARC[:-1]}2")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX PCK Platform CA")])
        )
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
        .add_extension(x509.UnrecognizedExtension(SGX_EXTENSION_OID, extension()), critical=False)
        .add_extension(x509.UnrecognizedExtension(twin, extension()), critical=False)
        .sign(KEY, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    # Rename the twin to the SGX OID; the signature breaks, which parsing does not look at.
    patched = der.replace(oid(str(twin.dotted_string)), oid(ARC))
    assert patched != der
    with pytest.raises(PckExtensionError) as caught:
        parse_pck_extensions(x509.load_der_x509_certificate(patched))
    assert caught.value.code == "pck.extension_invalid"


def test_built_extension_round_trip():
    parsed = parse_pck_extensions(certificate(value=extension()))
    assert parsed == PckExtensions(
        ppid=b"P" * 16,
        tcb=PckTcb(tuple(range(16)), 13, bytes(range(16))),
        pce_id=b"\x00\x00",
        fmspc=bytes.fromhex("00906ed50000"),
        sgx_type=SgxType.Scalable,
        platform_instance_id=b"I" * 16,
        configuration=PckConfiguration(True, False, True),
    )


def test_large_svn_values_and_long_form_lengths():
    value = extension(tcb_value=tcb(components=(255,) * 16, pce_svn=65535))
    assert len(value) > 0x80
    parsed = parse_sgx_extension(value)
    assert parsed.tcb.cpu_svn_components == (255,) * 16
    assert parsed.tcb.pce_svn == 65535


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("Intel SGX PCK Processor CA", "processor"),
        ("Intel SGX PCK Platform CA", "platform"),
        ("Sanctum Simulated SGX PCK Processor CA", "processor"),
        ("Sanctum Simulated SGX PCK Platform CA", "platform"),
    ],
)
def test_pck_ca_type(issuer, expected):
    assert pck_ca_type(certificate(issuer, extension())) == expected


@pytest.mark.parametrize(
    ("issuer", "extra"),
    [("Intel SGX Root CA", None), ("intel sgx pck platform ca", None), (None, None), ("A", "B")],
)
def test_unknown_pck_issuers(issuer, extra):
    with pytest.raises(EvidenceError) as caught:
        pck_ca_type(certificate(issuer, extension(), extra_cn=extra))
    assert caught.value.code == "pck.issuer_unknown"


def test_platform_certificates_need_instance_id_and_configuration():
    for value in (extension(instance=None), extension(configuration=None)):
        with pytest.raises(PckExtensionError):
            parse_pck_extensions(certificate("Intel SGX PCK Platform CA", value))
        processor = parse_pck_extensions(certificate("Intel SGX PCK Processor CA", value))
        assert processor.fmspc == bytes.fromhex("00906ed50000")
        # An unknown issuer is judged by chain verification; the extension still parses.
        assert parse_pck_extensions(certificate("Someone Else", value)).ppid == b"P" * 16


def test_configuration_flags_are_optional_and_unknown_entries_ignored():
    parsed = parse_sgx_extension(extension(configuration=(None, True, None)))
    assert parsed.configuration == PckConfiguration(None, True, None)
    unknown = entry("99", tlv(0x04, b"future"))
    assert parse_sgx_extension(extension(extra=(unknown,))).ppid == b"P" * 16


GOOD_TCB_ITEMS = [entry(f"2.{i}", integer(i)) for i in range(1, 17)]
INVALID = {
    "not a sequence": tlv(0x31, b""),
    "trailing byte": extension() + b"\x00",
    "duplicate entry": extension(extra=(entry("4", tlv(0x04, bytes(6))),)),
    "entry of three": seq(seq(oid(f"{ARC}.1"), tlv(0x04, bytes(16)), tlv(0x05, b""))),
    "entry of one": seq(seq(oid(f"{ARC}.1"))),
    "missing ppid": seq(entry("3", tlv(0x04, bytes(2)))),
    "ppid size": extension(ppid=bytes(15)),
    "pce id size": extension(pce_id=bytes(3)),
    "fmspc size": extension(fmspc=bytes(5)),
    "instance id size": extension(instance=bytes(17)),
    "sgx type value": extension(sgx_type=integer(3, 0x0A)),
    "sgx type negative": extension(sgx_type=integer(-1, 0x0A)),
    "sgx type tag": extension(sgx_type=integer(1)),
    "component 256": extension(tcb_value=tcb(components=(256,) + (0,) * 15)),
    "component -1": extension(tcb_value=tcb(components=(-1,) + (0,) * 15)),
    "pcesvn 65536": extension(tcb_value=tcb(pce_svn=65536)),
    "cpusvn size": extension(tcb_value=tcb(cpu_svn=bytes(15))),
    "tcb component missing": extension(tcb_value=seq(*GOOD_TCB_ITEMS[:15])),
    "tcb unknown entry": extension(tcb_value=tcb(extra=(entry("2.19", integer(0)),))),
    "tcb duplicate": extension(tcb_value=tcb(extra=(entry("2.1", integer(0)),))),
    "non-minimal integer": extension(
        tcb_value=seq(
            tlv(0x30, oid(f"{ARC}.2.1") + tlv(0x02, b"\x00\x05")),
            *GOOD_TCB_ITEMS[1:],
            entry("2.17", integer(1)),
            entry("2.18", tlv(0x04, bytes(16))),
        )
    ),
    "boolean 0x01": extension(
        configuration=None, extra=(entry("7", seq(entry("7.1", tlv(0x01, b"\x01")))),)
    ),
    "boolean two bytes": extension(
        configuration=None, extra=(entry("7", seq(entry("7.1", tlv(0x01, b"\xff\xff")))),)
    ),
    "configuration duplicate": extension(
        configuration=None,
        extra=(entry("7", seq(entry("7.1", tlv(0x01, b"\xff")), entry("7.1", tlv(0x01, b"\0")))),),
    ),
    "indefinite length": b"\x30\x80" + extension()[2:] + b"\x00\x00",
    "non-minimal length": b"\x30\x81" + seq(entry("1", tlv(0x04, bytes(16))))[1:],
    "oid tag": seq(seq(tlv(0x04, b"\x2a"), tlv(0x04, bytes(16)))),
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_extensions_are_refused(name):
    with pytest.raises(PckExtensionError) as caught:
        parse_sgx_extension(INVALID[name])
    assert caught.value.code == "pck.extension_invalid"
    with pytest.raises(PckExtensionError):
        parse_pck_extensions(certificate("Intel SGX PCK Processor CA", INVALID[name]))


REAL_VALUES = [
    x509.load_pem_x509_certificate(LEAVES[case])
    .extensions.get_extension_for_oid(SGX_EXTENSION_OID)
    .value.value
    for case in ("sgx-v3-phala", "tdx-v5-gotdxguest")
]


@st.composite
def mutated_der(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL_VALUES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "delete", "insert"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        if not data:
            break
    return bytes(data)


def _parse_or_refuse(value: bytes, *, platform_ca: bool = False) -> None:
    try:
        parsed = parse_sgx_extension(value, platform_ca=platform_ca)
    except PckExtensionError as error:
        code = error.code
    else:
        assert len(parsed.ppid) == 16
        assert len(parsed.tcb.cpu_svn_components) == 16
        assert all(0 <= svn <= 255 for svn in parsed.tcb.cpu_svn_components)
        return
    assert code == "pck.extension_invalid"


@settings(max_examples=300, deadline=None)
@given(mutated_der(), st.booleans())
def test_mutated_real_extensions(value, platform_ca):
    _parse_or_refuse(value, platform_ca=platform_ca)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_extension_bytes(value):
    _parse_or_refuse(value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_der())
def test_mutated_extensions_inside_certificates(value):
    cert = certificate("Intel SGX PCK Platform CA", value)
    try:
        parse_pck_extensions(cert)
    except SanctumError as error:
        code = error.code
    else:
        return
    assert code == "pck.extension_invalid"
