from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import ExtensionOID, NameOID

from sanctum.platforms.simulated import (
    PckCaKind,
    PckExtension,
    SimulationPki,
    SimulationPkiError,
    _der,
    load_or_create_simulation_pki,
)
from sanctum.platforms.simulated.pki import (
    CLOCK_SKEW_ALLOWANCE,
    SGX_EXTENSION_OID,
    SIMULATION_PKI_FILENAME,
)

CASES = Path(__file__).parents[2] / "vectors" / "dcap" / "cases"


def _cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _real_pck(case: str) -> x509.Certificate:
    pem = dcap_qvl.parse_quote((CASES / f"{case}.quote.bin").read_bytes()).cert_chain_pem_bytes()
    return x509.load_pem_x509_certificates(bytes(pem).rstrip(b"\0"))[0]


def test_subjects_say_simulated_and_keep_intel_shape(pki: SimulationPki) -> None:
    root = pki.root_certificate
    assert _cn(root.subject) == "Sanctum Simulated SGX Root CA"
    assert root.subject == root.issuer
    names = {
        _cn(pki.processor_ca_certificate.subject),
        _cn(pki.platform_ca_certificate.subject),
        _cn(pki.tcb_signing_certificate.subject),
    }
    assert names == {
        "Sanctum Simulated SGX PCK Processor CA",
        "Sanctum Simulated SGX PCK Platform CA",
        "Sanctum Simulated SGX TCB Signing",
    }
    intel_oids = [attribute.oid for attribute in _real_pck("sgx-v3-phala").subject]
    for certificate in (root, pki.platform_ca_certificate, pki.tcb_signing_certificate):
        assert [attribute.oid for attribute in certificate.subject] == intel_oids
        assert "Simulated" in _cn(certificate.subject)
        assert certificate.issuer == root.subject
        certificate.verify_directly_issued_by(root)


def test_ca_and_leaf_extensions(pki: SimulationPki) -> None:
    root_bc = pki.root_certificate.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert root_bc.critical
    assert root_bc.value.ca
    assert root_bc.value.path_length == 1
    for ca in (pki.processor_ca_certificate, pki.platform_ca_certificate):
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert bc.ca
        assert bc.path_length == 0
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign
        assert usage.crl_sign
    tcb = pki.tcb_signing_certificate
    assert not tcb.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tcb.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_create_rejects_bad_inputs(now: datetime) -> None:
    with pytest.raises(ValueError):
        SimulationPki.create(now=now, validity=timedelta(0))
    with pytest.raises(ValueError):
        SimulationPki.create(now=now.replace(tzinfo=None))


def test_validity_follows_now(pki: SimulationPki, now: datetime) -> None:
    assert pki.root_certificate.not_valid_before_utc == now - CLOCK_SKEW_ALLOWANCE
    assert pki.root_certificate.not_valid_after_utc - now == timedelta(days=3652)


@pytest.mark.parametrize("case", ["sgx-v3-phala", "tdx-v4-phala", "tdx-v4-automata-0725"])
def test_pck_extension_encoding_is_byte_identical_to_intel(case: str) -> None:
    certificate = _real_pck(case)
    raw = certificate.extensions.get_extension_for_oid(
        x509.ObjectIdentifier(SGX_EXTENSION_OID)
    ).value.value
    parsed = dcap_qvl.parse_pck_extension_from_pem(
        certificate.public_bytes(serialization.Encoding.PEM)
    )

    def flag(suffix: str) -> bool:
        marker = _der.oid(f"{SGX_EXTENSION_OID}.{suffix}")
        index = raw.index(marker) + len(marker)
        return raw[index + 2] == 0xFF

    instance = parsed.platform_instance_id
    extension = PckExtension(
        ppid=bytes(parsed.ppid),
        cpu_svn=bytes(parsed.cpu_svn),
        pce_svn=parsed.pce_svn,
        pce_id=bytes(parsed.pce_id),
        fmspc=bytes(parsed.fmspc),
        sgx_type=parsed.sgx_type,
        platform_instance_id=bytes(instance) if instance is not None else None,
        dynamic_platform=instance is not None and flag("7.1"),
        cached_keys=instance is not None and flag("7.2"),
        smt_enabled=instance is not None and flag("7.3"),
    )
    assert extension.to_der() == raw


def test_pck_extension_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        PckExtension(ppid=bytes(15), cpu_svn=bytes(16), pce_svn=1, pce_id=bytes(2), fmspc=bytes(6))
    with pytest.raises(ValueError):
        PckExtension(
            ppid=bytes(16), cpu_svn=bytes(16), pce_svn=1 << 16, pce_id=bytes(2), fmspc=bytes(6)
        )


def test_issued_pck_certificate_parses_like_a_real_one(pki: SimulationPki, now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    extension = PckExtension(
        ppid=bytes(range(16)),
        cpu_svn=bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255]),
        pce_svn=13,
        pce_id=bytes(2),
        fmspc=bytes.fromhex("53494d000000"),
        sgx_type=1,
        platform_instance_id=bytes(range(16, 32)),
    )
    certificate = pki.issue_pck_certificate(
        kind=PckCaKind.PLATFORM,
        public_key=key.public_key(),
        extension=extension,
        now=now,
        serial=1234,
    )
    certificate.verify_directly_issued_by(pki.platform_ca_certificate)
    assert _cn(certificate.subject) == "Sanctum Simulated SGX PCK Certificate"
    assert certificate.serial_number == 1234
    assert certificate.not_valid_after_utc - now == timedelta(days=7 * 365)
    assert certificate.not_valid_before_utc == now - CLOCK_SKEW_ALLOWANCE
    parsed = dcap_qvl.parse_pck_extension_from_pem(
        certificate.public_bytes(serialization.Encoding.PEM)
    )
    assert bytes(parsed.ppid) == extension.ppid
    assert bytes(parsed.cpu_svn) == extension.cpu_svn
    assert parsed.pce_svn == 13
    assert bytes(parsed.fmspc) == extension.fmspc
    assert parsed.sgx_type == 1
    assert bytes(parsed.platform_instance_id) == extension.platform_instance_id
    points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert "ca=platform" in str(points[0].full_name[0].value)


def test_crls_carry_intel_extensions_and_revocations(pki: SimulationPki, now: datetime) -> None:
    der = pki.pck_crl(
        PckCaKind.PROCESSOR,
        this_update=now,
        next_update=now + timedelta(days=30),
        revoked_serials=[7, 9],
        number=3,
    )
    crl = x509.load_der_x509_crl(der)
    assert crl.issuer == pki.processor_ca_certificate.subject
    assert crl.is_signature_valid(pki.processor_ca_certificate.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = pki.processor_ca_certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    assert aki.key_identifier == ski.digest
    assert crl.get_revoked_certificate_by_serial_number(7) is not None
    assert crl.get_revoked_certificate_by_serial_number(8) is None
    assert crl.next_update_utc == now + timedelta(days=30)
    root_crl = x509.load_der_x509_crl(
        pki.root_crl(this_update=now, next_update=now + timedelta(days=365))
    )
    assert root_crl.is_signature_valid(pki.root_certificate.public_key())
    assert len(root_crl) == 0


def test_collateral_signature_is_raw_r_s(pki: SimulationPki) -> None:
    signature = pki.sign_collateral(b'{"id":"SGX"}')
    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public = pki.tcb_signing_certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, b'{"id":"SGX"}', ec.ECDSA(hashes.SHA256()))


def test_seed_makes_the_pki_reproducible(now: datetime) -> None:
    first = SimulationPki.create(now=now, seed=b"test seed")
    second = SimulationPki.create(now=now, seed=b"test seed")
    other = SimulationPki.create(now=now, seed=b"other seed")
    assert first.root_certificate.public_key() == second.root_certificate.public_key()
    assert first.root_certificate.serial_number == second.root_certificate.serial_number
    assert first.root_certificate.public_key() != other.root_certificate.public_key()


# Persistence -------------------------------------------------------------------------------


def _aes_gcm_pair(key: bytes) -> tuple:
    aead = AESGCM(key)

    def wrap(data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + aead.encrypt(nonce, data, b"simulation-pki")

    def unwrap(data: bytes) -> bytes:
        return aead.decrypt(data[:12], data[12:], b"simulation-pki")

    return wrap, unwrap


def _same(a: SimulationPki, b: SimulationPki) -> None:
    assert a.root_der() == b.root_der()
    for name in ("root_key", "processor_ca_key", "platform_ca_key", "tcb_signing_key"):
        assert (
            getattr(a, name).private_numbers().private_value
            == getattr(b, name).private_numbers().private_value
        )
    assert a.tcb_signing_certificate == b.tcb_signing_certificate
    assert a.platform_ca_certificate == b.platform_ca_certificate
    assert a.processor_ca_certificate == b.processor_ca_certificate


def test_json_round_trip_without_wrap(pki: SimulationPki) -> None:
    data = pki.to_json()
    assert b"BEGIN PRIVATE KEY" in data
    _same(pki, SimulationPki.from_json(data))


def test_json_round_trip_with_wrap_hides_keys(pki: SimulationPki) -> None:
    wrap, unwrap = _aes_gcm_pair(bytes(32))
    data = pki.to_json(wrap=wrap)
    assert b"PRIVATE KEY" not in data
    document = json.loads(data)
    assert document["keys_wrapped"] is True
    _same(pki, SimulationPki.from_json(data, unwrap=unwrap))


def test_wrong_unwrap_key_is_a_typed_error(pki: SimulationPki) -> None:
    wrap, _ = _aes_gcm_pair(bytes(32))
    _, wrong_unwrap = _aes_gcm_pair(bytes([1]) * 32)
    data = pki.to_json(wrap=wrap)
    with pytest.raises(SimulationPkiError) as info:
        SimulationPki.from_json(data, unwrap=wrong_unwrap)
    assert info.value.code == "simulation_pki.unwrap_failed"
    assert isinstance(info.value.__cause__, InvalidTag)
    with pytest.raises(SimulationPkiError) as missing:
        SimulationPki.from_json(data)
    assert missing.value.code == "simulation_pki.unwrap_failed"


def test_unwrap_yielding_another_key_is_refused(pki: SimulationPki, now: datetime) -> None:
    other = SimulationPki.create(now=now)
    data = json.loads(pki.to_json())
    data["keys"]["root"] = json.loads(other.to_json())["keys"]["root"]
    with pytest.raises(SimulationPkiError) as info:
        SimulationPki.from_json(json.dumps(data))
    assert info.value.code == "simulation_pki.unwrap_failed"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"format": "other", "version": 1}',
        b'{"format": "sanctum.simulation-pki", "version": 2}',
        b'{"format": "sanctum.simulation-pki", "version": 1, "keys_wrapped": false}',
    ],
)
def test_malformed_documents_are_typed_errors(data: bytes) -> None:
    with pytest.raises(SimulationPkiError) as info:
        SimulationPki.from_json(data)
    assert info.value.code == "simulation_pki.malformed"


def test_corrupted_key_is_malformed(pki: SimulationPki) -> None:
    data = json.loads(pki.to_json())
    data["keys"]["tcb_signing"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(SimulationPkiError) as info:
        SimulationPki.from_json(json.dumps(data))
    assert info.value.code == "simulation_pki.malformed"


def test_load_or_create_persists_once_with_mode_0600(tmp_path: Path, now: datetime) -> None:
    state = tmp_path / "state"
    created = load_or_create_simulation_pki(state, now=now)
    path = state / SIMULATION_PKI_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert [p.name for p in state.iterdir()] == [SIMULATION_PKI_FILENAME]
    reloaded = load_or_create_simulation_pki(state, now=now + timedelta(days=1))
    _same(created, reloaded)


def test_load_or_create_with_wrapped_keys(tmp_path: Path, now: datetime) -> None:
    wrap, unwrap = _aes_gcm_pair(bytes(range(32)))
    created = load_or_create_simulation_pki(tmp_path, now=now, wrap=wrap, unwrap=unwrap)
    assert b"PRIVATE KEY" not in (tmp_path / SIMULATION_PKI_FILENAME).read_bytes()
    _same(created, load_or_create_simulation_pki(tmp_path, now=now, wrap=wrap, unwrap=unwrap))
    with pytest.raises(SimulationPkiError):
        load_or_create_simulation_pki(tmp_path, now=now)


def test_load_refuses_world_readable_plaintext_keys(tmp_path: Path, now: datetime) -> None:
    load_or_create_simulation_pki(tmp_path, now=now)
    path = tmp_path / SIMULATION_PKI_FILENAME
    path.chmod(0o644)
    with pytest.raises(SimulationPkiError) as info:
        load_or_create_simulation_pki(tmp_path, now=now)
    assert info.value.code == "simulation_pki.insecure_permissions"


def test_plaintext_file_is_wrapped_once_a_wrap_function_is_given(
    tmp_path: Path, now: datetime
) -> None:
    created = load_or_create_simulation_pki(tmp_path, now=now)
    path = tmp_path / SIMULATION_PKI_FILENAME
    assert json.loads(path.read_bytes())["keys_wrapped"] is False
    wrap, unwrap = _aes_gcm_pair(bytes(range(32)))
    _same(created, load_or_create_simulation_pki(tmp_path, now=now, wrap=wrap, unwrap=unwrap))
    assert json.loads(path.read_bytes())["keys_wrapped"] is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [SIMULATION_PKI_FILENAME]
    _same(created, load_or_create_simulation_pki(tmp_path, now=now, wrap=wrap, unwrap=unwrap))


def test_concurrent_creation_keeps_one_pki(tmp_path: Path, now: datetime) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda _: load_or_create_simulation_pki(tmp_path, now=now), range(8))
        )
    roots = {pki.root_der() for pki in results}
    assert len(roots) == 1
    assert [p.name for p in tmp_path.iterdir()] == [SIMULATION_PKI_FILENAME]
