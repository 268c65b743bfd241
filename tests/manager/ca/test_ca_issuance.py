from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from datetime import timedelta

import pytest
from ca_helpers import (  # noqa: F401 (importing these registers the fixtures)
    NOW,
    account_ca_fixture,
    make_csr,
    p256_key_fixture,
    rsa2048_key_fixture,
    sgx_claims,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sanctum.errors import EvidenceError, UsageError
from sanctum.manager.ca import (
    ATTESTATION_EXTENSION_OID,
    AccountCa,
    CsrError,
    StoredAccountCa,
    certificate_facts,
    create_account_ca,
    issue_node_certificate,
    issue_server_certificate,
    issue_workload_certificate,
    load_account_ca,
    load_csr,
    new_serial,
    read_attestation_extension,
    store_account_ca,
)

CsrFactory = Callable[..., x509.CertificateSigningRequest]


def _issue(ca: AccountCa, csr: object, **overrides: object) -> x509.Certificate:
    fields: dict[str, object] = {
        "subject": "bank.demo.local",
        "sans": ["bank.demo.local", "10.0.0.7", "::1"],
        "validity": timedelta(days=7),
        "serial": 4242,
        "attestation": sgx_claims(),
        "now": NOW,
    }
    fields.update(overrides)
    return issue_workload_certificate(ca, csr, **fields)  # type: ignore[arg-type]


def test_workload_certificate_contents(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey
) -> None:
    cert = _issue(account_ca, make_csr(p256_key, common_name="ignored-by-the-ca"))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "bank.demo.local"
    assert cert.issuer == account_ca.issuing_certificate.subject
    assert cert.serial_number == 4242
    assert cert.public_key() == p256_key.public_key()
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=7)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["bank.demo.local"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_encipherment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ext = cert.extensions.get_extension_for_oid(ATTESTATION_EXTENSION_OID)
    assert not ext.critical
    assert read_attestation_extension(cert) == sgx_claims()
    cert.verify_directly_issued_by(account_ca.issuing_certificate)


def test_rsa_leaf_allows_key_encipherment(
    account_ca: AccountCa, rsa2048_key: rsa.RSAPrivateKey
) -> None:
    cert = _issue(account_ca, make_csr(rsa2048_key))
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_csr_may_ask_for_a_subset_of_granted_names(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey
) -> None:
    csr = make_csr(p256_key, sans=["BANK.demo.local", "10.0.0.7"])
    cert = _issue(account_ca, csr.public_bytes(serialization.Encoding.PEM))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # The certificate carries exactly the granted names, not the CSR's.
    assert len(list(san)) == 3


@pytest.mark.parametrize("requested", [["evil.example"], ["bank.demo.local", "10.0.0.8"]])
def test_csr_asking_for_ungranted_names_is_refused(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey, requested: list[str]
) -> None:
    with pytest.raises(CsrError) as caught:
        _issue(account_ca, make_csr(p256_key, sans=requested))
    assert caught.value.code == "ca.san_not_allowed"


def test_csr_with_bad_signature_is_refused(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey
) -> None:
    der = make_csr(p256_key, common_name="workload").public_bytes(serialization.Encoding.DER)
    assert der.count(b"workload") == 1
    tampered = der.replace(b"workload", b"workloae")
    with pytest.raises(CsrError) as caught:
        _issue(account_ca, tampered)
    assert caught.value.code == "ca.csr_signature_invalid"
    with pytest.raises(CsrError) as caught:
        load_csr(tampered)
    assert caught.value.code == "ca.csr_signature_invalid"


def test_only_checked_parsed_csrs_skip_a_second_signature_check(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey
) -> None:
    der = make_csr(p256_key, common_name="workload").public_bytes(serialization.Encoding.DER)
    parsed_bad = x509.load_der_x509_csr(der.replace(b"workload", b"workloae"))
    for _ in range(2):  # A refused request is never remembered as checked.
        with pytest.raises(CsrError) as caught:
            load_csr(parsed_bad)
        assert caught.value.code == "ca.csr_signature_invalid"
        with pytest.raises(CsrError):
            _issue(account_ca, parsed_bad)
    good = load_csr(der)
    assert load_csr(good) is good
    assert _issue(account_ca, good).public_key() == p256_key.public_key()
    # An equal but distinct object is checked on its own.
    twin = x509.load_der_x509_csr(der)
    assert load_csr(twin) is twin


def test_garbage_csr_is_malformed(account_ca: AccountCa) -> None:
    for garbage in (b"\x30\x03\x02\x01\x01", "-----BEGIN CERTIFICATE REQUEST-----\nAA==\n"):
        with pytest.raises(CsrError) as caught:
            _issue(account_ca, garbage)
        assert caught.value.code == "ca.csr_malformed"


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=4096),
        ed25519.Ed25519PrivateKey.generate,
    ],
    ids=["p384", "rsa1024", "rsa4096", "ed25519"],
)
def test_wrong_key_types_are_refused(account_ca: AccountCa, make_key) -> None:  # type: ignore[no-untyped-def]
    key = make_key()
    csr = make_csr(key)
    with pytest.raises(CsrError) as caught:
        _issue(account_ca, csr)
    assert caught.value.code == "ca.key_type_unsupported"
    with pytest.raises(CsrError):
        issue_server_certificate(
            account_ca,
            key.public_key(),
            common_name="m",
            sans=["m.example"],
            validity=timedelta(days=1),
            serial=1,
            now=NOW,
        )


@pytest.mark.parametrize("san", ["", "*.demo.local", "bad_name.example", "-x.example", "a..b"])
def test_invalid_san_strings_are_usage_errors(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey, san: str
) -> None:
    with pytest.raises(UsageError) as caught:
        _issue(account_ca, make_csr(p256_key), sans=[san])
    assert caught.value.code == "ca.san_invalid"


@pytest.mark.parametrize(
    "overrides",
    [
        {"serial": 0},
        {"serial": 1 << 159},
        {"validity": timedelta(0)},
        {"now": NOW.replace(tzinfo=None)},
        {"subject": ""},
        {"subject": "x" * 65},
    ],
)
def test_bad_parameters_are_refused(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey, overrides: dict[str, object]
) -> None:
    with pytest.raises(UsageError) as caught:
        _issue(account_ca, make_csr(p256_key), **overrides)
    assert caught.value.code == "ca.parameters_invalid"


def test_validity_is_clipped_to_the_issuer(p256_key: ec.EllipticCurvePrivateKey) -> None:
    ca = create_account_ca("short", now=NOW, issuing_validity=timedelta(days=2))
    cert = _issue(ca, make_csr(p256_key), validity=timedelta(days=30))
    assert cert.not_valid_after_utc == ca.issuing_certificate.not_valid_after_utc
    with pytest.raises(UsageError) as caught:
        _issue(ca, make_csr(p256_key), now=NOW + timedelta(days=3))
    assert caught.value.code == "ca.issuer_expired"


def test_server_certificate(account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey) -> None:
    cert = issue_server_certificate(
        account_ca,
        p256_key.public_key(),
        common_name="sanctum-manager",
        sans=["localhost", "127.0.0.1"],
        validity=timedelta(days=90),
        serial=7,
        now=NOW,
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    with pytest.raises(EvidenceError) as caught:
        read_attestation_extension(cert)
    assert caught.value.code == "ca.extension_missing"


def test_crl_url_is_published(account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey) -> None:
    url = "https://127.0.0.1:8443/v1/accounts/1/ca/crl"
    cert = _issue(account_ca, make_csr(p256_key), crl_url=url)
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name == [x509.UniformResourceIdentifier(url)]


def test_account_ca_shape(account_ca: AccountCa) -> None:
    root, inter = account_ca.root_certificate, account_ca.issuing_certificate
    assert root.subject == root.issuer
    assert inter.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    aki = inter.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert account_ca.chain_pem()[0].startswith("-----BEGIN CERTIFICATE-----")
    assert account_ca.root_pem().startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"account_name": ""},
        {"account_name": "x" * 65},
        {"account_name": "ok", "now": NOW.replace(tzinfo=None)},
        {"account_name": "ok", "root_validity": timedelta(0)},
    ],
)
def test_create_account_ca_refuses_bad_parameters(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"now": NOW, **kwargs}
    with pytest.raises(UsageError):
        create_account_ca(**arguments)  # type: ignore[arg-type]


class _Wrapper:
    """A test key-encryption key: AES-GCM with a random nonce."""

    def __init__(self) -> None:
        self.key = AESGCM.generate_key(bit_length=256)

    def wrap(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.key).encrypt(nonce, data, b"ca-key")

    def unwrap(self, blob: bytes) -> bytes:
        return AESGCM(self.key).decrypt(blob[:12], blob[12:], b"ca-key")


def test_store_and_load_round_trip(account_ca: AccountCa) -> None:
    kek = _Wrapper()
    stored = store_account_ca(account_ca, wrap=kek.wrap)
    assert b"PRIVATE KEY" not in stored.root_key_wrapped
    assert b"PRIVATE KEY" not in stored.issuing_key_wrapped
    loaded = load_account_ca(stored, unwrap=kek.unwrap)
    assert loaded.root_certificate == account_ca.root_certificate
    assert loaded.issuing_key.public_key() == account_ca.issuing_key.public_key()
    assert loaded.root_key.private_numbers() == account_ca.root_key.private_numbers()


def test_load_refuses_mismatched_or_undecodable_parts(account_ca: AccountCa) -> None:
    other = create_account_ca("other", now=NOW)
    plain = store_account_ca(account_ca, wrap=lambda b: b)
    other_plain = store_account_ca(other, wrap=lambda b: b)
    broken = [
        StoredAccountCa(
            "acme",
            plain.root_certificate_pem,
            plain.issuing_certificate_pem,
            other_plain.root_key_wrapped,
            plain.issuing_key_wrapped,
        ),
        StoredAccountCa(
            "acme",
            plain.root_certificate_pem,
            plain.issuing_certificate_pem,
            plain.root_key_wrapped,
            other_plain.issuing_key_wrapped,
        ),
        StoredAccountCa(
            "acme",
            other_plain.root_certificate_pem,
            plain.issuing_certificate_pem,
            other_plain.root_key_wrapped,
            plain.issuing_key_wrapped,
        ),
        StoredAccountCa(
            "acme",
            plain.root_certificate_pem,
            plain.issuing_certificate_pem,
            b"not a key",
            plain.issuing_key_wrapped,
        ),
        StoredAccountCa(
            "acme", "garbage", plain.issuing_certificate_pem, b"", plain.issuing_key_wrapped
        ),
    ]
    for stored in broken:
        with pytest.raises(EvidenceError) as caught:
            load_account_ca(stored, unwrap=lambda b: b)
        assert caught.value.code == "ca.store_invalid"


def test_load_refuses_a_non_p256_key(account_ca: AccountCa) -> None:
    plain = store_account_ca(account_ca, wrap=lambda b: b)
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    stored = StoredAccountCa(
        "acme", plain.root_certificate_pem, plain.issuing_certificate_pem, p384, b""
    )
    with pytest.raises(EvidenceError) as caught:
        load_account_ca(stored, unwrap=lambda b: b)
    assert caught.value.code == "ca.store_invalid"


def test_node_certificate(account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey) -> None:
    cert = issue_node_certificate(
        account_ca,
        make_csr(p256_key, common_name="node-1"),
        node_name="node-1",
        validity=timedelta(days=30),
        serial=77,
        now=NOW,
        attestation=sgx_claims(),
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert read_attestation_extension(cert) == sgx_claims()
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    plain = issue_node_certificate(
        account_ca,
        make_csr(p256_key),
        node_name="node-2",
        validity=timedelta(days=1),
        serial=78,
        now=NOW,
    )
    with pytest.raises(EvidenceError):
        read_attestation_extension(plain)
    with pytest.raises(CsrError) as caught:
        issue_node_certificate(
            account_ca,
            make_csr(p256_key, sans=["node.example"]),
            node_name="node-3",
            validity=timedelta(days=1),
            serial=79,
            now=NOW,
        )
    assert caught.value.code == "ca.san_not_allowed"


def test_new_serial_and_certificate_facts(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey
) -> None:
    assert new_serial(lambda n: b"\xff" * n) == (1 << 159) - 1
    assert new_serial(bytes) == 1
    serials = {new_serial() for _ in range(50)}
    assert len(serials) == 50
    assert all(0 < s < 1 << 159 for s in serials)
    serial = 0x00ABCDEF
    cert = _issue(account_ca, make_csr(p256_key), serial=serial)
    facts = certificate_facts(cert)
    assert facts.serial == "abcdef"
    assert facts.subject == "CN=bank.demo.local"
    assert facts.sans == ("bank.demo.local", "10.0.0.7", "::1")
    assert facts.not_before == NOW - timedelta(minutes=5)
    assert facts.not_after == NOW + timedelta(days=7)
    node = issue_node_certificate(
        account_ca,
        make_csr(p256_key),
        node_name="n",
        validity=timedelta(days=1),
        serial=2,
        now=NOW,
    )
    assert certificate_facts(node).sans == ()
