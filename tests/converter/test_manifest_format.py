"""The enclave manifest: validation, canonical encoding, signing and verification."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
import unicodedata
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.converter.keys import generate_signing_key
from sanctum.converter.manifest import (
    SCHEMA,
    CaCertificateSpec,
    CertificateSpec,
    EnclaveManifest,
    EnclaveSpec,
    ManagerSpec,
    ca_pin_from_certificate,
    parse_manifest,
    sign_manifest,
    verify_signed_manifest,
)
from sanctum.converter.manifest_errors import ManifestError, SigstructError
from sanctum.converter.measurement import canonical_json
from sanctum.converter.sigstruct import sign_sigstruct

DATE = dt.date(2026, 11, 28)
PIN = "sha256:" + "ab" * 32


def make_manifest(**overrides: Any) -> EnclaveManifest:
    fields: dict[str, Any] = {
        "target": "simulated",
        "entrypoint": ("/usr/bin/python3", "-m", "app"),
        "args": ("--port", "8443"),
        "workdir": "/srv",
        "user": "1000:1000",
        "env": {"PATH": "/usr/bin:/bin", "GREETING": "grüße"},
        "allow_cmdline_args": False,
        "host_env_passthrough": ("TZ",),
        "encrypted_dirs": ("/data",),
        "rw_dirs": ("/tmp",),
        "enclave": EnclaveSpec(size=2**31, threads=16, debug=False, isvprodid=3, isvsvn=2),
        "trusted_files": {
            "/usr/bin/python3": hashlib.sha256(b"python").hexdigest(),
            "/srv/app.py": hashlib.sha256(b"app").hexdigest(),
        },
        "symlinks": {"/usr/bin/python": "python3"},
        "manager": ManagerSpec(url="https://manager.example:8443", ca_pin=PIN),
        "certificates": (
            CertificateSpec(
                key_path="/run/tls/key.pem",
                cert_path="/run/tls/cert.pem",
                chain_path="/run/tls/chain.pem",
                subject="bank.demo.local",
                alt_names=("DNS:bank.demo.local",),
            ),
        ),
        "ca_certificates": (CaCertificateSpec(ca_path="/run/tls/ca.pem", system=True),),
        "app": "bank",
    }
    fields.update(overrides)
    return EnclaveManifest(**fields)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return generate_signing_key()


def test_canonical_encoding_is_sorted_compact_utf8() -> None:
    data = make_manifest().canonical_bytes()
    text = data.decode("utf-8")
    assert "grüße" in text  # Not \u-escaped.
    assert ", " not in text
    assert ": " not in text
    doc = json.loads(text)
    assert doc["schema"] == SCHEMA
    assert list(doc) == sorted(doc)
    assert list(doc["trustedFiles"]) == sorted(doc["trustedFiles"])
    assert (
        data == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_measurement_is_sha256_of_the_canonical_bytes() -> None:
    manifest = make_manifest()
    assert manifest.measurement() == hashlib.sha256(manifest.canonical_bytes()).digest()


def test_measurement_covers_trusted_file_hashes() -> None:
    a = make_manifest()
    b = make_manifest(trusted_files={**a.trusted_files, "/srv/app.py": "00" * 32})
    assert a.measurement() != b.measurement()


def test_order_of_inputs_does_not_change_the_encoding() -> None:
    a = make_manifest(encrypted_dirs=("/b", "/a"), env={"B": "2", "A": "1"})
    b = make_manifest(encrypted_dirs=("/a", "/b", "/a"), env={"A": "1", "B": "2"})
    assert a.canonical_bytes() == b.canonical_bytes()
    assert a == b


def test_parse_round_trip() -> None:
    manifest = make_manifest()
    assert parse_manifest(manifest.canonical_bytes()) == manifest


def test_parse_refuses_non_canonical_bytes() -> None:
    data = make_manifest().canonical_bytes()
    pretty = json.dumps(json.loads(data), indent=2, sort_keys=True).encode()
    with pytest.raises(ManifestError) as info:
        parse_manifest(pretty)
    assert info.value.code == "manifest.not_canonical"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d.update(extra=1), "manifest.schema"),
        (lambda d: d.pop("rwDirs"), "manifest.schema"),
        (lambda d: d.update(schema="sanctum.enclave-manifest/v9"), "manifest.schema"),
        (lambda d: d["enclave"].update(threads="16"), "manifest.schema"),
        (lambda d: d["enclave"].update(debug=1), "manifest.schema"),
        (lambda d: d["enclave"].update(isvsvn=True), "manifest.schema"),
        (lambda d: d["enclave"].update(size=3 * 2**20), "manifest.schema"),
        (lambda d: d.update(target="tdx"), "manifest.schema"),
        (lambda d: d["trustedFiles"].update({"relative/path": "00" * 32}), "manifest.schema"),
        (lambda d: d["trustedFiles"].update({"/x": "XYZ"}), "manifest.schema"),
        (lambda d: d["manager"].update(url="http://plain.example"), "manifest.schema"),
        (lambda d: d["manager"].update(caPin="md5:00"), "manifest.schema"),
        (lambda d: d.update(encryptedDirs=["/tmp"]), "manifest.schema"),
        (lambda d: d.update(rwDirs=["/"]), "manifest.schema"),
        (lambda d: d.update(entrypoint=[]), "manifest.schema"),
        (lambda d: d["env"].update({"A=B": "x"}), "manifest.schema"),
        (lambda d: d.update(workdir="/srv/../etc"), "manifest.schema"),
    ],
)
def test_parse_refuses_schema_violations(mutate: Any, code: str) -> None:
    doc = json.loads(make_manifest().canonical_bytes())
    mutate(doc)
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    assert info.value.code == code


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe", "manifest.malformed"),
        (b"[]", "manifest.malformed"),
        (b'{"a":1,"a":2}', "manifest.malformed"),
        (b'{"a":1.5}', "manifest.malformed"),
        (b"{", "manifest.malformed"),
    ],
)
def test_parse_refuses_malformed_json(data: bytes, code: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data)
    assert info.value.code == code


def test_canonical_json_refuses_floats_and_non_nfc() -> None:
    with pytest.raises(ManifestError):
        canonical_json({"a": 1.0})
    with pytest.raises(ManifestError):
        canonical_json({"a": "e\u0301"})  # Decomposed é.
    with pytest.raises(ManifestError):
        canonical_json({"a": 2**64})
    with pytest.raises(ManifestError):
        canonical_json({1: "a"})
    with pytest.raises(ManifestError):
        canonical_json({"a": "\udc80"})
    assert (
        canonical_json({"b": [1, None, True], "a": "\u00e9"})
        == '{"a":"é","b":[1,null,true]}'.encode()
    )


def test_sign_and_verify(key: rsa.RSAPrivateKey) -> None:
    signed = sign_manifest(make_manifest(), key=key, date=DATE)
    assert signed.mrenclave == make_manifest().measurement()
    verified = verify_signed_manifest(
        signed.manifest_bytes, signed.sigstruct.to_bytes(), expected_mrsigner=signed.mrsigner
    )
    assert verified == make_manifest()


def test_verify_refuses_a_changed_manifest(key: rsa.RSAPrivateKey) -> None:
    signed = sign_manifest(make_manifest(), key=key, date=DATE)
    other = make_manifest(args=("--port", "80")).canonical_bytes()
    with pytest.raises(ManifestError) as info:
        verify_signed_manifest(other, signed.sigstruct.to_bytes())
    assert info.value.code == "manifest.measurement_mismatch"


def test_verify_refuses_another_signer(key: rsa.RSAPrivateKey) -> None:
    signed = sign_manifest(make_manifest(), key=key, date=DATE)
    with pytest.raises(ManifestError) as info:
        verify_signed_manifest(
            signed.manifest_bytes, signed.sigstruct.to_bytes(), expected_mrsigner=b"\x00" * 32
        )
    assert info.value.code == "manifest.signer_mismatch"


def test_verify_refuses_a_tampered_sigstruct(key: rsa.RSAPrivateKey) -> None:
    signed = sign_manifest(make_manifest(), key=key, date=DATE)
    raw = bytearray(signed.sigstruct.to_bytes())
    raw[1024] ^= 1  # isvprodid
    with pytest.raises(SigstructError):
        verify_signed_manifest(signed.manifest_bytes, bytes(raw))


def test_verify_refuses_identity_mismatch(key: rsa.RSAPrivateKey) -> None:
    manifest = make_manifest()
    sig = sign_sigstruct(
        key=key, enclavehash=manifest.measurement(), isvprodid=3, isvsvn=2, debug=True, date=DATE
    )
    with pytest.raises(ManifestError) as info:
        verify_signed_manifest(manifest.canonical_bytes(), sig.to_bytes())
    assert info.value.code == "manifest.identity_mismatch"


def test_gramine_manifests_are_not_signed_directly(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ManifestError):
        sign_manifest(make_manifest(target="gramine-sgx"), key=key, date=DATE)


def test_gramine_target_verifies_signature_and_identity(key: rsa.RSAPrivateKey) -> None:
    manifest = make_manifest(target="gramine-sgx")
    # On Gramine the MRENCLAVE is the page measurement, not the manifest hash.
    sig = sign_sigstruct(
        key=key, enclavehash=b"\x11" * 32, isvprodid=3, isvsvn=2, debug=False, date=DATE
    )
    assert verify_signed_manifest(manifest.canonical_bytes(), sig.to_bytes()) == manifest


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ManifestError):
        CertificateSpec(key_path="key.pem", cert_path="/c.pem")
    with pytest.raises(ManifestError):
        CertificateSpec(key_path="/k.pem", cert_path="/c.pem", key_type="rsa", key_size=1024)
    with pytest.raises(ManifestError):
        CaCertificateSpec(ca_path="ca.pem")
    with pytest.raises(ManifestError):
        EnclaveSpec(size=2**30, threads=0, debug=False, isvprodid=0, isvsvn=0)
    with pytest.raises(ManifestError):
        EnclaveSpec(size=2**30, threads=1, debug=False, isvprodid=70000, isvsvn=0)


def test_manifest_is_immutable() -> None:
    manifest = make_manifest()
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.args = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        manifest.env["X"] = "y"  # type: ignore[index]


_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
).map(lambda s: unicodedata.normalize("NFC", s))


@settings(max_examples=60, deadline=None)
@given(
    args=st.lists(_text, max_size=4),
    env=st.dictionaries(_text.filter(lambda s: s and "=" not in s), _text, max_size=4),
    files=st.dictionaries(
        st.from_regex(r"/[a-z]{1,8}(/[a-z0-9._-]{1,8}){0,3}", fullmatch=True).filter(
            lambda p: "/./" not in p and not p.endswith(("/.", "/..")) and "/../" not in p
        ),
        st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest()),
        max_size=6,
    ),
)
def test_round_trip_property(args: list[str], env: dict[str, str], files: dict[str, str]) -> None:
    manifest = make_manifest(args=tuple(args), env=env, trusted_files=files)
    data = manifest.canonical_bytes()
    assert parse_manifest(data) == manifest
    assert canonical_json(json.loads(data)) == data


def _self_signed_ca() -> tuple[bytes, bytes]:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2036, 1, 1, tzinfo=dt.UTC))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(
        serialization.Encoding.DER
    )


def test_ca_pin_is_sha256_of_the_spki(tmp_path: Any, require_tool: Any) -> None:
    openssl = require_tool("openssl")
    pem, der = _self_signed_ca()
    pin = ca_pin_from_certificate(pem)
    assert pin == ca_pin_from_certificate(der)
    assert ManagerSpec(url=None, ca_pin=pin).ca_pin == pin
    (tmp_path / "ca.pem").write_bytes(pem)
    spki = subprocess.run(
        [openssl, "x509", "-in", str(tmp_path / "ca.pem"), "-pubkey", "-noout"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    der_spki = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "DER"], input=spki, check=True, capture_output=True
    ).stdout
    assert pin == "sha256:" + hashlib.sha256(der_spki).hexdigest()
    with pytest.raises(ManifestError):
        ca_pin_from_certificate(b"not a certificate")


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=200))
def test_random_bytes_are_refused_cleanly(blob: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(blob)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_mutated_manifests_are_refused_or_identical(data: st.DataObject) -> None:
    raw = bytearray(make_manifest().canonical_bytes())
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] = data.draw(st.integers(0, 255))
    try:
        parsed = parse_manifest(bytes(raw))
    except ManifestError:
        return
    # A mutation that still parses must still be canonical, hence a different, valid manifest.
    assert parsed.canonical_bytes() == bytes(raw)
