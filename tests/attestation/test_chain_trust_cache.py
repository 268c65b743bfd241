"""Trust anchors, Intel-shaped chain and CRL checks, and the verified-collateral cache."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from _dcap_cases import CASES, VECTORS, collateral, intel, quote_bytes, verify_time
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sanctum.attestation.cache import CollateralCache
from sanctum.attestation.chain import (
    load_pem_chain,
    verify_crl,
    verify_pck_chain,
    verify_tcb_signing_chain,
)
from sanctum.attestation.quote import parse_quote
from sanctum.attestation.trust import INTEL_SGX_ROOT_CA_SHA256, TrustAnchor
from sanctum.attestation.verify import Verifier, verify_quote
from sanctum.errors import EvidenceError, UsageError
from sanctum.platforms.simulated.pki import PckCaKind, SimulationPki

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@cache
def _pki() -> SimulationPki:
    return SimulationPki.create(now=NOW - timedelta(days=1), seed=b"b2-chain")


def _real_pck_chain(name: str = "sgx-v3-phala") -> tuple[x509.Certificate, ...]:
    quote = parse_quote(quote_bytes(name))
    pem = b"".join(quote.signature.qe.certification.pck_chain_pem())
    return load_pem_chain(pem, code="pck.chain_invalid", what="chain")


def test_intel_anchor_is_pinned():
    anchor = intel()
    assert anchor.fingerprint == INTEL_SGX_ROOT_CA_SHA256
    assert anchor.is_intel
    assert anchor.simulated is False
    assert anchor.common_name == "Intel SGX Root CA"
    der = (VECTORS / "sources" / "phala-dcap-qvl" / "TrustedRootCA.der").read_bytes()
    assert hashlib.sha256(der).hexdigest() == INTEL_SGX_ROOT_CA_SHA256
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    # The Intel root can never be labelled simulated.
    assert TrustAnchor.from_bytes(pem, simulated=True).simulated is False
    assert TrustAnchor.from_bytes(pem, simulated=True) == anchor


def test_simulated_anchor_is_marked():
    anchor = TrustAnchor.from_bytes(_pki().root_der(), simulated=True)
    assert anchor.simulated is True
    assert not anchor.is_intel
    assert anchor != intel()


def test_bad_roots_are_usage_errors():
    with pytest.raises(UsageError):
        TrustAnchor.from_bytes(b"junk", simulated=True)
    # A CA certificate that is not self-issued cannot be a root.
    with pytest.raises(UsageError):
        TrustAnchor(_pki().platform_ca_certificate, simulated=True)
    rsa_free = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "P-384 SGX Root CA")])
    p384 = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_free.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(rsa_free, hashes.SHA256())
    )
    with pytest.raises(UsageError):
        TrustAnchor(p384, simulated=True)


def test_real_pck_chain_has_intels_shape():
    chain = verify_pck_chain(_real_pck_chain(), intel())
    assert chain.ca_type == "processor"
    assert len(chain.validity) == 3


def test_pck_chain_shape_is_exact():
    leaf, ca, root = _real_pck_chain()
    for certs in ([leaf, ca], [leaf, ca, root, root], [ca, leaf, root], [leaf, root, root]):
        with pytest.raises(EvidenceError) as error:
            verify_pck_chain(certs, intel())
        assert error.value.code == "pck.chain_invalid"
    # A chain that does not end in the anchor.
    sim = TrustAnchor.from_bytes(_pki().root_der(), simulated=True)
    with pytest.raises(EvidenceError):
        verify_pck_chain([leaf, ca, root], sim)


def _issue(common_name: str, *, organization: str | None = None) -> x509.Certificate:
    """Issue a leaf under the simulated Platform CA with the given subject."""
    pki = _pki()
    ca_key, ca_cert = pki.pck_ca(PckCaKind.PLATFORM)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    template = pki.root_certificate.subject
    for attribute in template:
        if attribute.oid == NameOID.COMMON_NAME:
            continue
        if attribute.oid == NameOID.ORGANIZATION_NAME and organization is not None:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        else:
            attributes.append(attribute)
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )


def test_names_are_compared_exactly_under_the_anchor():
    pki = _pki()
    sim = TrustAnchor.from_bytes(pki.root_der(), simulated=True)
    ca = pki.platform_ca_certificate
    good = _issue("Sanctum Simulated SGX PCK Certificate")
    assert verify_pck_chain([good, ca, pki.root_certificate], sim).ca_type == "platform"
    for leaf in (
        _issue("Intel SGX PCK Certificate"),
        _issue("Sanctum Simulated SGX PCK Certificat"),
        _issue("Sanctum Simulated SGX PCK Certificate", organization="Someone Else"),
    ):
        with pytest.raises(EvidenceError) as error:
            verify_pck_chain([leaf, ca, pki.root_certificate], sim)
        assert error.value.code == "pck.chain_invalid"


def test_tcb_signing_chain_rules():
    pki = _pki()
    sim = TrustAnchor.from_bytes(pki.root_der(), simulated=True)
    good = [pki.tcb_signing_certificate, pki.root_certificate]
    signing, validity = verify_tcb_signing_chain(good, sim, code="tcb_info.chain_invalid", what="x")
    assert signing == pki.tcb_signing_certificate
    assert len(validity) == 2
    for certs in ([pki.platform_ca_certificate, pki.root_certificate], good[:1], [*good, good[1]]):
        with pytest.raises(EvidenceError) as error:
            verify_tcb_signing_chain(certs, sim, code="tcb_info.chain_invalid", what="x")
        assert error.value.code == "tcb_info.chain_invalid"


def _crl(*, issuer: x509.Certificate, key, number: bool = True, aki: bool = True) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(NOW)
        .next_update(NOW + timedelta(days=30))
    )
    if number:
        builder = builder.add_extension(x509.CRLNumber(3), critical=False)
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_crl_checks():
    pki = _pki()
    ca_key, ca = pki.pck_ca(PckCaKind.PLATFORM)
    verified = verify_crl(_crl(issuer=ca, key=ca_key), ca, "PCK CRL")
    assert verified.number == 3
    bad = [
        (_crl(issuer=ca, key=ca_key, number=False), ca),
        (_crl(issuer=ca, key=ca_key, aki=False), ca),
        (_crl(issuer=ca, key=pki.root_key), ca),  # Wrong signer.
        (_crl(issuer=ca, key=ca_key), pki.processor_ca_certificate),  # Wrong issuer.
        (b"\x30\x03\x02\x01\x00", ca),
    ]
    for der, issuer in bad:
        with pytest.raises(EvidenceError) as error:
            verify_crl(der, issuer, "PCK CRL")
        assert error.value.code == "crl.invalid"


def test_quote_without_embedded_chain_needs_one():
    raw = (VECTORS / "sources" / "oasis-core" / "quote_v3_ecdsa_p256_eppid.bin").read_bytes()
    name = "sgx-v3-automata-00606a"
    with pytest.raises(EvidenceError) as error:
        verify_quote(raw, collateral(name), trust_anchor=intel(), now=verify_time(name))
    assert error.value.code == "quote.pck_chain_missing"
    # Supplying some other platform's chain cannot make its QE report verify.
    other_chain = _real_pck_chain(name)
    with pytest.raises(EvidenceError) as error:
        verify_quote(
            raw,
            collateral(name),
            trust_anchor=intel(),
            now=verify_time(name),
            pck_chain=other_chain,
        )
    assert error.value.code == "qe.report_signature_invalid"


def test_cache_is_bounded_and_drops_expired_entries():
    store = CollateralCache(max_entries=2)
    store.put("a", 1, NOW)
    store.put("b", 2, NOW)
    store.put("c", 3, NOW)
    assert len(store) == 2
    assert store.get("a", NOW) is None
    assert store.get("c", NOW) == 3
    assert store.get("c", NOW + timedelta(seconds=1)) is None
    stats = store.stats()
    assert stats.evictions == 1
    assert stats.hits == 1
    assert stats.misses == 2
    store.clear()
    assert len(store) == 0
    with pytest.raises(ValueError):
        CollateralCache(max_entries=0)


def test_shared_verifier_is_thread_safe():
    verifier = Verifier(intel(), cache=CollateralCache(max_entries=8))
    names = ["sgx-v3-phala", "tdx-v4-phala", "tdx-v5-gotdxguest", "sgx-v3-automata-00606a"]
    expected = {
        name: verify_quote(
            quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
        )
        for name in names
    }
    failures: list[str] = []

    def work(offset: int) -> None:
        for index in range(40):
            name = names[(index + offset) % len(names)]
            result = verifier.verify(quote_bytes(name), collateral(name), now=verify_time(name))
            if result != expected[name]:
                failures.append(name)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(verifier.cache) <= 8
    assert verifier.cache.stats().hits > 0
    assert CASES  # The vectors were loaded.
