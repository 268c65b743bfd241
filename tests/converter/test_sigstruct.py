"""SIGSTRUCT building, signing, parsing and verification."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.converter.keys import generate_signing_key, load_signing_key, signing_key_mrsigner
from sanctum.converter.manifest_errors import SigningKeyError, SigstructError
from sanctum.converter.sigstruct import (
    HEADER,
    HEADER2,
    SIGSTRUCT_SIZE,
    Sigstruct,
    mrsigner_of_modulus,
    parse_sigstruct,
    sign_sigstruct,
)

# Public key of the Intel SGX SDK's sample enclave signing key (SampleCode/*/Enclave_private*.pem),
# as quoted in public test suites. Its MRSIGNER, 83d719e7...ce9e, is the value SGX hardware reports
# for every enclave signed with it and appears in many public attestation policies and tests.
INTEL_SDK_SAMPLE_PUBLIC_KEY = b"""-----BEGIN RSA PUBLIC KEY-----
MIIBiAKCAYEAroOogvsj/fZDZY8XFdkl6dJmky0lRvnWMmpeH41Bla6U1qLZAmZu
yIF+mQC/cgojIsrBMzBxb1kKqzATF4+XwPwgKz7fmiddmHyYz2WDJfAjIveJZjdM
jM4+EytGlkkJ52T8V8ds0/L2qKexJ+NBLxkeQLfV8n1mIk7zX7jguwbCG1PrnEMd
J3Sew20vnje+RsngAzdPChoJpVsWi/K7cettX/tbnre1DL02GXc5qJoQYk7b3zkm
hz31TgFrd9VVtmUGyFXAysuSAb3EN+5VnHGr0xKkeg8utErea2FNtNIgua8HONfm
9Eiyaav1SVKzPHlyqLtcdxH3I8Wg7yqMsaprZ1n5A1v/levxnL8+It02KseD5HqV
4rf/cImSlCt3lpRg8U5E1pyFQ2IVEC/XTDMiI3c+AR+w2jSRB3Bwn9zJtFlWKHG3
m1xGI4ck+Lci1JvWWLXQagQSPtZTsubxTQNx1gsgZhgv1JHVZMdbVlAbbRMC1nSu
JNl7KPAS/VfzAgED
-----END RSA PUBLIC KEY-----
"""
INTEL_SDK_SAMPLE_MRSIGNER = "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"

DATE = dt.date(2026, 11, 28)
HASH = bytes(range(32))


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return generate_signing_key()


@pytest.fixture(scope="module")
def signed(key: rsa.RSAPrivateKey) -> Sigstruct:
    return sign_sigstruct(key=key, enclavehash=HASH, isvprodid=7, isvsvn=3, debug=False, date=DATE)


def test_known_answer_mrsigner_of_the_intel_sdk_sample_key() -> None:
    public = serialization.load_pem_public_key(INTEL_SDK_SAMPLE_PUBLIC_KEY)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers().e == 3
    assert mrsigner_of_modulus(public.public_numbers().n).hex() == INTEL_SDK_SAMPLE_MRSIGNER
    assert signing_key_mrsigner(public).hex() == INTEL_SDK_SAMPLE_MRSIGNER


def test_round_trip(signed: Sigstruct, key: rsa.RSAPrivateKey) -> None:
    data = signed.to_bytes()
    assert len(data) == SIGSTRUCT_SIZE
    parsed = parse_sigstruct(data)
    assert parsed == signed
    assert parsed.to_bytes() == data
    assert parsed.mrenclave == HASH
    assert parsed.isvprodid == 7
    assert parsed.isvsvn == 3
    assert not parsed.debug
    assert parsed.date == DATE
    assert parsed.date_raw == 0x20261128
    modulus_le = key.public_key().public_numbers().n.to_bytes(384, "little")
    assert parsed.mrsigner == hashlib.sha256(modulus_le).digest()
    assert data[128:512] == modulus_le


def test_layout_offsets(signed: Sigstruct) -> None:
    data = signed.to_bytes()
    assert data[0:16] == HEADER
    assert data[24:40] == HEADER2
    assert struct.unpack_from("<I", data, 512) == (3,)
    assert data[960:992] == HASH
    assert struct.unpack_from("<HH", data, 1024) == (7, 3)
    # DATE is BCD 0x20261128, little-endian.
    assert data[20:24] == bytes.fromhex("28112620")
    # ATTRIBUTES.FLAGS = MODE64BIT only; XFRM = x87|SSE.
    assert struct.unpack_from("<QQ", data, 928) == (0x4, 0x3)


def test_debug_sets_the_debug_attribute(key: rsa.RSAPrivateKey) -> None:
    sig = sign_sigstruct(key=key, enclavehash=HASH, isvprodid=0, isvsvn=0, debug=True, date=DATE)
    parsed = parse_sigstruct(sig.to_bytes())
    assert parsed.debug
    assert parsed.attributes_flags == 0x6


def test_signature_is_pkcs1v15_sha256_over_the_two_regions(signed: Sigstruct) -> None:
    data = signed.to_bytes()
    message = data[0:128] + data[900:1028]
    assert signed.signed_data() == message
    public = rsa.RSAPublicNumbers(3, signed.modulus).public_key()
    public.verify(
        signed.signature.to_bytes(384, "big"), message, padding.PKCS1v15(), hashes.SHA256()
    )


def test_q1_q2_match_the_einit_definitions(signed: Sigstruct) -> None:
    s, n = signed.signature, signed.modulus
    assert signed.q1 == s * s // n
    assert signed.q2 == (s**3 - signed.q1 * s * n) // n


@pytest.mark.parametrize("offset", [0, 17, 20, 30, 41, 900, 904, 930, 960, 991, 1024, 1027])
def test_tampering_a_signed_byte_is_refused(signed: Sigstruct, offset: int) -> None:
    data = bytearray(signed.to_bytes())
    data[offset] ^= 0x01
    with pytest.raises(SigstructError) as info:
        parse_sigstruct(bytes(data))
    assert info.value.code in {"sigstruct.signature_invalid", "sigstruct.header"}


def test_tampering_the_modulus_is_refused(signed: Sigstruct) -> None:
    data = bytearray(signed.to_bytes())
    data[130] ^= 0x10
    with pytest.raises(SigstructError, match="signature"):
        parse_sigstruct(bytes(data))


@pytest.mark.parametrize(
    ("offset", "code"), [(1040, "sigstruct.q1_invalid"), (1500, "sigstruct.q2_invalid")]
)
def test_tampering_q1_or_q2_is_refused(signed: Sigstruct, offset: int, code: str) -> None:
    data = bytearray(signed.to_bytes())
    data[offset] ^= 0x01
    with pytest.raises(SigstructError) as info:
        parse_sigstruct(bytes(data))
    assert info.value.code == code


@pytest.mark.parametrize("offset", [50, 910, 1000, 1030])
def test_nonzero_reserved_bytes_are_refused(signed: Sigstruct, offset: int) -> None:
    data = bytearray(signed.to_bytes())
    data[offset] = 1
    with pytest.raises(SigstructError) as info:
        parse_sigstruct(bytes(data))
    assert info.value.code == "sigstruct.reserved_nonzero"


@pytest.mark.parametrize("size", [0, 1807, 1809, 4096])
def test_wrong_size_is_refused(signed: Sigstruct, size: int) -> None:
    data = (signed.to_bytes() * 3)[:size]
    with pytest.raises(SigstructError) as info:
        parse_sigstruct(data)
    assert info.value.code == "sigstruct.size"


def test_exponent_other_than_3_is_refused() -> None:
    key65537 = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    n = key65537.public_key().public_numbers().n
    template = Sigstruct(
        vendor=0, date_raw=0x20261128, swdefined=0, modulus=n, exponent=65537, signature=0,
        miscselect=0, miscmask=0xFFFFFFFF, cet_attributes=0, cet_attributes_mask=0,
        isvfamilyid=bytes(16), attributes_flags=4, attributes_xfrm=3,
        attributemask_flags=2**64 - 1, attributemask_xfrm=0xFFFFFFFFFFF9FF1B,
        enclavehash=HASH, isvextprodid=bytes(16), isvprodid=1, isvsvn=1, q1=0, q2=0,
    )  # fmt: skip
    signature = int.from_bytes(
        key65537.sign(template.signed_data(), padding.PKCS1v15(), hashes.SHA256()), "big"
    )
    forged = dataclasses.replace(template, signature=signature)
    with pytest.raises(SigstructError) as info:
        parse_sigstruct(forged.to_bytes())
    assert info.value.code == "sigstruct.exponent"


def test_sign_refuses_keys_sgx_cannot_use() -> None:
    wrong_exponent = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    with pytest.raises(SigningKeyError) as info:
        sign_sigstruct(
            key=wrong_exponent, enclavehash=HASH, isvprodid=0, isvsvn=0, debug=False, date=DATE
        )
    assert info.value.code == "signing_key.exponent"
    wrong_size = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(SigningKeyError) as info:
        sign_sigstruct(
            key=wrong_size, enclavehash=HASH, isvprodid=0, isvsvn=0, debug=False, date=DATE
        )
    assert info.value.code == "signing_key.size"


@pytest.mark.parametrize(("field", "value"), [("isvprodid", 65536), ("isvsvn", -1)])
def test_sign_refuses_out_of_range_ids(key: rsa.RSAPrivateKey, field: str, value: int) -> None:
    kwargs = {"isvprodid": 0, "isvsvn": 0, field: value}
    with pytest.raises(SigstructError) as info:
        sign_sigstruct(key=key, enclavehash=HASH, debug=False, date=DATE, **kwargs)
    assert info.value.code == "sigstruct.field_range"


def test_sign_refuses_a_short_enclavehash(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SigstructError):
        sign_sigstruct(key=key, enclavehash=b"short", isvprodid=0, isvsvn=0, debug=False, date=DATE)


def _gramine_style_sig(key: rsa.RSAPrivateKey, mrenclave: bytes) -> bytes:
    """Lay out a .sig the way gramine-sgx-sign does, independently of our builder."""
    buf = bytearray(1808)
    buf[0:16] = bytes.fromhex("06000000E10000000000010000000000")
    struct.pack_into("<L", buf, 16, 0)  # module_vendor
    struct.pack_into("<HBB", buf, 20, 2024, 2, 29)  # Gramine writes a binary date.
    buf[24:40] = bytes.fromhex("01010000600000006000000001000000")
    struct.pack_into("<L", buf, 40, 0)  # hw_version
    struct.pack_into("<LL", buf, 900, 0, 0xFFFFFFFF)
    struct.pack_into("<QQQQ", buf, 928, 0x6, 0x3, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFF9FF1B)
    buf[960:992] = mrenclave
    struct.pack_into("<HH", buf, 1024, 5, 9)
    data = bytes(buf[:128] + buf[900:1028])
    s = int.from_bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()), "big")
    n = key.public_key().public_numbers().n
    tmp1 = s * s
    q1 = tmp1 // n
    q2 = (tmp1 % n) * s // n
    buf[128:512] = n.to_bytes(384, "little")
    struct.pack_into("<L", buf, 512, 3)
    buf[516:900] = s.to_bytes(384, "little")
    buf[1040:1424] = q1.to_bytes(384, "little")
    buf[1424:1808] = q2.to_bytes(384, "little")
    return bytes(buf)


def test_parses_a_gramine_style_sig(key: rsa.RSAPrivateKey) -> None:
    mrenclave = hashlib.sha256(b"gramine").digest()
    parsed = parse_sigstruct(_gramine_style_sig(key, mrenclave))
    assert parsed.mrenclave == mrenclave
    assert parsed.mrsigner == signing_key_mrsigner(key)
    assert parsed.debug
    assert (parsed.isvprodid, parsed.isvsvn) == (5, 9)
    assert parsed.date == dt.date(2024, 2, 29)
    assert parsed.to_dict()["date"] == "2024-02-29"


def test_to_dict_describes_the_identity(signed: Sigstruct) -> None:
    described = signed.to_dict()
    assert described["mrenclave"] == HASH.hex()
    assert described["mrsigner"] == signed.mrsigner.hex()
    assert described["isvprodid"] == 7
    assert described["date"] == "2026-11-28"
    assert described["modulusBits"] == 3072


@settings(max_examples=25, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {
            "enclavehash": st.binary(min_size=32, max_size=32),
            "isvprodid": st.integers(0, 0xFFFF),
            "isvsvn": st.integers(0, 0xFFFF),
            "debug": st.booleans(),
            "swdefined": st.integers(0, 0xFFFFFFFF),
        }
    )
)
def test_round_trip_property(key: rsa.RSAPrivateKey, fields: dict[str, Any]) -> None:
    sig = sign_sigstruct(key=key, date=DATE, **fields)
    assert parse_sigstruct(sig.to_bytes()) == sig


def test_openssl_cross_check(tmp_path: Path, require_tool) -> None:
    openssl = require_tool("openssl")
    key_path = tmp_path / "key.pem"
    subprocess.run(
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072",
         "-pkeyopt", "rsa_keygen_pubexp:3", "-out", str(key_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    key = load_signing_key(key_path.read_bytes())
    sig = sign_sigstruct(key=key, enclavehash=HASH, isvprodid=1, isvsvn=2, debug=False, date=DATE)
    data = parse_sigstruct(sig.to_bytes()).to_bytes()

    # openssl verifies the signature (reversed to big-endian) over the two signed regions.
    (tmp_path / "msg").write_bytes(data[0:128] + data[900:1028])
    (tmp_path / "sig").write_bytes(data[516:900][::-1])
    subprocess.run(
        [openssl, "rsa", "-in", str(key_path), "-pubout", "-out", str(tmp_path / "pub.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    verified = subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
         str(tmp_path / "sig"), str(tmp_path / "msg")],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Verified OK" in verified.stdout

    # MRSIGNER = SHA-256 of openssl's modulus, little-endian.
    modulus_out = subprocess.run(
        [openssl, "rsa", "-in", str(key_path), "-noout", "-modulus"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    modulus = int(modulus_out.strip().split("=", 1)[1], 16)
    assert sig.mrsigner == hashlib.sha256(modulus.to_bytes(384, "little")).digest()
    assert data[128:512] == modulus.to_bytes(384, "little")


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutations_only_ever_raise_sigstruct_errors(signed: Sigstruct, data: st.DataObject) -> None:
    raw = bytearray(signed.to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, SIGSTRUCT_SIZE - 1))] ^= data.draw(st.integers(1, 255))
    try:
        parsed = parse_sigstruct(bytes(raw))
    except SigstructError:
        return
    # Only a mutation that left the bytes unchanged (two flips cancelling) may verify.
    assert parsed.to_bytes() == signed.to_bytes()


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(min_size=SIGSTRUCT_SIZE, max_size=SIGSTRUCT_SIZE))
def test_random_bytes_are_refused_cleanly(blob: bytes) -> None:
    with pytest.raises(SigstructError):
        parse_sigstruct(blob)
