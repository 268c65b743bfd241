"""Sealing: RFC 9180 conformance, round trips, and refusal of anything altered.

Conformance is shown three ways:

1. A small test-only RFC 9180 base-mode reference (written from the RFC's pseudocode in
   sections 4, 5.1 and 7) reproduces the published test vectors byte for byte: RFC 9180
   appendix A.3.1 (P-256, AES-128-GCM) and the CFRG ``test-vectors.json`` entry for the suite we
   use (P-256, HKDF-SHA256, AES-256-GCM).
2. The library HPKE that production code uses decrypts the same published ciphertexts.
3. Boxes made by ``seal`` open with the reference, and boxes made by the reference open with
   ``open_sealed``: the wire format is plain RFC 9180, so any other implementation interoperates.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.protocol.errors import SealingError
from sanctum.protocol.sealing import (
    HPKE_P256_SUITE,
    RSA_OAEP_SUITE,
    SealedBox,
    hpke_info,
    open_sealed,
    seal,
    sealing_info,
    secret_aad,
)

# ---------------------------------------------------------------------------------------------
# Test-only RFC 9180 reference: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, base mode, AES-GCM.
# ---------------------------------------------------------------------------------------------

KEM_P256 = 0x0010
KDF_SHA256 = 0x0001
AEAD_AES128 = 0x0001
AEAD_AES256 = 0x0002


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info, length)


def _uncompressed(key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = key.public_numbers()
    return b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def _kem_shared_secret(dh: bytes, enc: bytes, pk_rm: bytes) -> bytes:
    kem_id = b"KEM" + struct.pack(">H", KEM_P256)
    eae_prk = _labeled_extract(kem_id, b"", b"eae_prk", dh)
    return _labeled_expand(kem_id, eae_prk, b"shared_secret", enc + pk_rm, 32)


def _key_schedule(shared_secret: bytes, info: bytes, aead_id: int) -> tuple[bytes, bytes]:
    suite_id = b"HPKE" + struct.pack(">HHH", KEM_P256, KDF_SHA256, aead_id)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    key_size = 16 if aead_id == AEAD_AES128 else 32
    key = _labeled_expand(suite_id, secret, b"key", context, key_size)
    base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return key, base_nonce


def reference_seal(
    sk_e: ec.EllipticCurvePrivateKey,
    pk_r: ec.EllipticCurvePublicKey,
    *,
    info: bytes,
    aad: bytes,
    plaintext: bytes,
    aead_id: int,
) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """Return (enc, shared_secret, key, base_nonce, ciphertext) of the first message."""
    dh = sk_e.exchange(ec.ECDH(), pk_r)
    enc = _uncompressed(sk_e.public_key())
    shared_secret = _kem_shared_secret(dh, enc, _uncompressed(pk_r))
    key, base_nonce = _key_schedule(shared_secret, info, aead_id)
    return enc, shared_secret, key, base_nonce, AESGCM(key).encrypt(base_nonce, plaintext, aad)


def reference_open(
    sk_r: ec.EllipticCurvePrivateKey,
    enc: bytes,
    *,
    info: bytes,
    aad: bytes,
    ct: bytes,
    aead_id: int,
) -> bytes:
    pk_e = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), enc)
    dh = sk_r.exchange(ec.ECDH(), pk_e)
    shared_secret = _kem_shared_secret(dh, enc, _uncompressed(sk_r.public_key()))
    key, base_nonce = _key_schedule(shared_secret, info, aead_id)
    return AESGCM(key).decrypt(base_nonce, ct, aad)


def _p256_private(hex_scalar: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(hex_scalar, 16), ec.SECP256R1())


# RFC 9180 appendix A: every base-mode vector uses this info, plaintext and first AAD.
VECTOR_INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")  # "Ode on a Grecian Urn"
VECTOR_PT = bytes.fromhex("4265617574792069732074727574682c20747275746820626561757479")
VECTOR_AAD0 = b"Count-0"

VECTORS: dict[str, dict[str, str | int]] = {
    # RFC 9180 A.3.1: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM.
    "rfc9180-A.3.1-aes128gcm": {
        "aead_id": AEAD_AES128,
        "skEm": "4995788ef4b9d6132b249ce59a77281493eb39af373d236a1fe415cb0c2d7beb",
        "skRm": "f3ce7fdae57e1a310d87f1ebbde6f328be0a99cdbcadf4d6589cf29de4b8ffd2",
        "pkRm": "04fe8c19ce0905191ebc298a9245792531f26f0cece2460639e8bc39cb7f706a"
        "826a779b4cf969b8a0e539c7f62fb3d30ad6aa8f80e30f1d128aafd68a2ce72ea0",
        "enc": "04a92719c6195d5085104f469a8b9814d5838ff72b60501e2c4466e5e67b325a"
        "c98536d7b61a1af4b78e5b7f951c0900be863c403ce65c9bfcb9382657222d18c4",
        "shared_secret": "c0d26aeab536609a572b07695d933b589dcf363ff9d93c93adea537aeabb8cb8",
        "key": "868c066ef58aae6dc589b6cfdd18f97e",
        "base_nonce": "4e0bc5018beba4bf004cca59",
        "ct0": "5ad590bb8baa577f8619db35a36311226a896e7342a6d836d8b7bcd2f20b6c7f"
        "9076ac232e3ab2523f39513434",
    },
    # CFRG test-vectors.json, mode 0: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
    "cfrg-p256-sha256-aes256gcm": {
        "aead_id": AEAD_AES256,
        "skEm": "90345e3a1d116c1dd39ae76d95ab858c142223a63e44f8f85318cfa91a84858e",
        "skRm": "317f915db7bc629c48fe765587897e01e282d3e8445f79f27f65d031a88082b2",
        "pkRm": "04abc7e49a4c6b3566d77d0304addc6ed0e98512ffccf505e6a8e3eb25c685136f"
        "853148544876de76c0f2ef99cdc3a05ccf5ded7860c7c021238f9e2073d2356c",
        "enc": "04c06b4f6bebc7bb495cb797ab753f911aff80aefb86fd8b6fcc35525f3ab5f03e"
        "0b21bd31a86c6048af3cb2d98e0d3bf01da5cc4c39ff5370d331a4f1f7d5a4e0",
        "shared_secret": "48893fecd82f7c3456af6a42d8f56325d21e08c10fa81299986aaff54cde7b49",
        "key": "ee16802a936d5f544771131900ee6973d0551de9e852ece2ef34bf0d5f9e1d1d",
        "base_nonce": "9bc50980832a7b4b58c40161",
        "ct0": "58c61a45059d0c5704560e9d88b564a8b63f1364b8d1fcb3c4c6ddc1d2917424"
        "65e902cd216f8908da49f8f96f",
    },
}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_reference_reproduces_published_vectors(name: str) -> None:
    v = VECTORS[name]
    sk_e = _p256_private(str(v["skEm"]))
    sk_r = _p256_private(str(v["skRm"]))
    assert _uncompressed(sk_r.public_key()).hex() == v["pkRm"]
    aead_id = v["aead_id"]
    assert isinstance(aead_id, int)
    enc, shared, key, nonce, ct = reference_seal(
        sk_e,
        sk_r.public_key(),
        info=VECTOR_INFO,
        aad=VECTOR_AAD0,
        plaintext=VECTOR_PT,
        aead_id=aead_id,
    )
    assert (enc.hex(), shared.hex(), key.hex(), nonce.hex(), ct.hex()) == (
        v["enc"],
        v["shared_secret"],
        v["key"],
        v["base_nonce"],
        v["ct0"],
    )
    assert (
        reference_open(sk_r, enc, info=VECTOR_INFO, aad=VECTOR_AAD0, ct=ct, aead_id=aead_id)
        == VECTOR_PT
    )


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_library_hpke_decrypts_published_vectors(name: str) -> None:
    v = VECTORS[name]
    aead = hpke.AEAD.AES_128_GCM if v["aead_id"] == AEAD_AES128 else hpke.AEAD.AES_256_GCM
    suite = hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, aead)
    sealed = bytes.fromhex(str(v["enc"])) + bytes.fromhex(str(v["ct0"]))
    # The library's single-shot API takes no AAD; its test hook does, which the vectors need.
    opened = rust_openssl.hpke._decrypt_with_aad(
        suite, sealed, _p256_private(str(v["skRm"])), info=VECTOR_INFO, aad=VECTOR_AAD0
    )
    assert opened == VECTOR_PT


def test_seal_output_opens_with_the_rfc_reference() -> None:
    recipient = ec.generate_private_key(ec.SECP256R1())
    info, aad = b"context", b"secret-aad"
    box = seal(recipient.public_key(), b"db-password", info=info, aad=aad)
    assert box.suite == HPKE_P256_SUITE
    assert len(box.enc) == 65
    assert box.enc[0] == 4
    opened = reference_open(
        recipient,
        box.enc,
        info=hpke_info(info, aad),
        aad=b"",
        ct=box.ciphertext,
        aead_id=AEAD_AES256,
    )
    assert opened == b"db-password"


def test_reference_boxes_open_with_open_sealed() -> None:
    recipient = ec.generate_private_key(ec.SECP256R1())
    ephemeral = _p256_private(str(VECTORS["cfrg-p256-sha256-aes256gcm"]["skEm"]))
    info, aad = b"ctx", b"aad"
    enc, _, _, _, ct = reference_seal(
        ephemeral,
        recipient.public_key(),
        info=hpke_info(info, aad),
        aad=b"",
        plaintext=b"s3cret",
        aead_id=AEAD_AES256,
    )
    box = SealedBox(HPKE_P256_SUITE, enc, ct)
    assert open_sealed(recipient, box, info=info, aad=aad) == b"s3cret"


# ---------------------------------------------------------------------------------------------
# Behaviour of seal / open_sealed.
# ---------------------------------------------------------------------------------------------

INFO = sealing_info(manager_id="mgr-1", app="bank", build="b-42", nonce=b"\x01" * 32)
AAD = secret_aad(name="DB_PASSWORD", delivery="env", target="DB_PASSWORD")


@pytest.fixture(scope="module")
def p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_round_trip_p256(p256_key: ec.EllipticCurvePrivateKey) -> None:
    box = seal(p256_key.public_key(), b"hunter2", info=INFO, aad=AAD)
    assert b"hunter2" not in box.ciphertext
    assert open_sealed(p256_key, box, info=INFO, aad=AAD) == b"hunter2"


def test_each_seal_uses_a_fresh_ephemeral_key(p256_key: ec.EllipticCurvePrivateKey) -> None:
    first = seal(p256_key.public_key(), b"x", info=INFO, aad=AAD)
    second = seal(p256_key.public_key(), b"x", info=INFO, aad=AAD)
    assert first.enc != second.enc
    assert first.ciphertext != second.ciphertext


def test_round_trip_rsa(rsa_key: rsa.RSAPrivateKey) -> None:
    box = seal(rsa_key.public_key(), b"hunter2", info=INFO, aad=AAD)
    assert box.suite == RSA_OAEP_SUITE
    assert len(box.enc) == 256
    assert open_sealed(rsa_key, box, info=INFO, aad=AAD) == b"hunter2"


def test_rsa_content_key_comes_from_the_injected_source(rsa_key: rsa.RSAPrivateKey) -> None:
    key = bytes(range(32))
    box = seal(rsa_key.public_key(), b"abc", info=INFO, aad=AAD, random_bytes=lambda n: key[:n])
    context = hpke_info(INFO, AAD)
    assert AESGCM(key).decrypt(bytes(12), box.ciphertext, context) == b"abc"


def test_rsa_source_of_wrong_size_is_a_programming_error(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="random source"):
        seal(rsa_key.public_key(), b"abc", info=INFO, aad=AAD, random_bytes=lambda _n: b"short")


@pytest.mark.parametrize(
    ("info", "aad"),
    [
        (sealing_info(manager_id="mgr-2", app="bank", build="b-42", nonce=b"\x01" * 32), AAD),
        (sealing_info(manager_id="mgr-1", app="shop", build="b-42", nonce=b"\x01" * 32), AAD),
        (sealing_info(manager_id="mgr-1", app="bank", build="b-43", nonce=b"\x01" * 32), AAD),
        (sealing_info(manager_id="mgr-1", app="bank", build="b-42", nonce=b"\x02" * 32), AAD),
        (INFO, secret_aad(name="DB_PASSWORD", delivery="file", target="DB_PASSWORD")),
        (INFO, secret_aad(name="DB_PASSWORD", delivery="env", target="OTHER")),
        (INFO, secret_aad(name="API_KEY", delivery="env", target="DB_PASSWORD")),
    ],
)
@pytest.mark.parametrize("key_fixture", ["p256_key", "rsa_key"])
def test_another_context_does_not_open(
    request: pytest.FixtureRequest, key_fixture: str, info: bytes, aad: bytes
) -> None:
    key = request.getfixturevalue(key_fixture)
    box = seal(key.public_key(), b"v", info=INFO, aad=AAD)
    with pytest.raises(SealingError) as caught:
        open_sealed(key, box, info=info, aad=aad)
    assert caught.value.code == "sealing.invalid"


@pytest.mark.parametrize("key_fixture", ["p256_key", "rsa_key"])
def test_another_key_does_not_open(request: pytest.FixtureRequest, key_fixture: str) -> None:
    key = request.getfixturevalue(key_fixture)
    other = (
        ec.generate_private_key(ec.SECP256R1())
        if key_fixture == "p256_key"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    box = seal(key.public_key(), b"v", info=INFO, aad=AAD)
    with pytest.raises(SealingError) as caught:
        open_sealed(other, box, info=INFO, aad=AAD)
    assert caught.value.code == "sealing.invalid"


@pytest.mark.parametrize("key_fixture", ["p256_key", "rsa_key"])
@pytest.mark.parametrize("part", ["enc", "ciphertext"])
def test_every_flipped_byte_is_detected(
    request: pytest.FixtureRequest, key_fixture: str, part: str
) -> None:
    key = request.getfixturevalue(key_fixture)
    box = seal(key.public_key(), b"0123456789", info=INFO, aad=AAD)
    data = getattr(box, part)
    # Flip one bit in a spread of positions, including first and last bytes.
    for index in sorted({0, 1, len(data) // 2, len(data) - 1}):
        altered = bytearray(data)
        altered[index] ^= 0x01
        tampered = SealedBox(
            box.suite,
            bytes(altered) if part == "enc" else box.enc,
            bytes(altered) if part == "ciphertext" else box.ciphertext,
        )
        with pytest.raises(SealingError) as caught:
            open_sealed(key, tampered, info=INFO, aad=AAD)
        assert caught.value.code == "sealing.invalid"


def test_truncated_and_malformed_boxes_are_invalid(p256_key: ec.EllipticCurvePrivateKey) -> None:
    box = seal(p256_key.public_key(), b"v", info=INFO, aad=AAD)
    for bad in (
        SealedBox(box.suite, box.enc, box.ciphertext[:10]),
        SealedBox(box.suite, box.enc[:33], box.ciphertext),
        SealedBox(box.suite, b"\x04" + bytes(64), box.ciphertext),
        SealedBox(RSA_OAEP_SUITE, box.enc, box.ciphertext),
    ):
        with pytest.raises(SealingError) as caught:
            open_sealed(p256_key, bad, info=INFO, aad=AAD)
        assert caught.value.code == "sealing.invalid"


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
    ],
    ids=["p384", "rsa1024"],
)
def test_unsupported_keys_are_refused(make_key) -> None:  # type: ignore[no-untyped-def]
    key = make_key()
    with pytest.raises(SealingError) as caught:
        seal(key.public_key(), b"v", info=INFO, aad=AAD)
    assert caught.value.code == "sealing.unsupported_key"
    box = SealedBox(HPKE_P256_SUITE, b"\x04" + bytes(64), bytes(32))
    with pytest.raises(SealingError) as caught:
        open_sealed(key, box, info=INFO, aad=AAD)
    assert caught.value.code == "sealing.unsupported_key"


def test_context_encodings_are_unambiguous() -> None:
    assert hpke_info(b"ab", b"c") != hpke_info(b"a", b"bc")
    assert sealing_info(manager_id="a", app="bc", build="d", nonce=b"n") != sealing_info(
        manager_id="ab", app="c", build="d", nonce=b"n"
    )
    assert secret_aad(name="a", delivery="env", target="b") != secret_aad(
        name="a", delivery="envb", target=""
    )


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=512), info=st.binary(max_size=64), aad=st.binary(max_size=64))
def test_round_trip_property(plaintext: bytes, info: bytes, aad: bytes) -> None:
    key = _p256_private("317f915db7bc629c48fe765587897e01e282d3e8445f79f27f65d031a88082b2")
    box = seal(key.public_key(), plaintext, info=info, aad=aad)
    assert len(box.ciphertext) == len(plaintext) + 16
    assert open_sealed(key, box, info=info, aad=aad) == plaintext
    with pytest.raises(SealingError):
        open_sealed(key, box, info=info + b"x", aad=aad)


@settings(max_examples=60, deadline=None)
@given(
    enc=st.binary(max_size=80),
    ciphertext=st.binary(max_size=80),
    suite=st.sampled_from([HPKE_P256_SUITE, RSA_OAEP_SUITE]),
)
def test_garbage_boxes_only_raise_sealing_errors(enc: bytes, ciphertext: bytes, suite: str) -> None:
    key = _p256_private("317f915db7bc629c48fe765587897e01e282d3e8445f79f27f65d031a88082b2")
    box = SealedBox(suite, enc, ciphertext)  # type: ignore[arg-type]
    with pytest.raises(SealingError) as caught:
        open_sealed(key, box, info=INFO, aad=AAD)
    assert caught.value.code == "sealing.invalid"
