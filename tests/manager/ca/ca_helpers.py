"""Helpers and fixtures shared by the CA tests (a fixed time, a CA, keys, CSR and claims builders).

The fixtures live here, not in a ``conftest.py``: other test modules import their own directory's
``conftest`` by name, and a second ``conftest`` module on ``sys.path`` would shadow theirs. Test
modules import the fixtures they use from this module.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from sanctum.manager.ca import AccountCa, AttestationClaims, create_account_ca

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def make_csr(
    key: CertificateIssuerPrivateKeyTypes,
    *,
    sans: Sequence[str] = (),
    common_name: str = "workload",
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if sans:
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def sgx_claims(**overrides: object) -> AttestationClaims:
    fields: dict[str, object] = {
        "tee": "sgx",
        "measurement": bytes(range(32)),
        "signer": bytes(range(32, 64)),
        "isvprodid": 7,
        "isvsvn": 3,
        "tcb_status": "SWHardeningNeeded",
        "advisory_ids": ("INTEL-SA-00615", "INTEL-SA-00334"),
        "debug": False,
        "simulated": True,
    }
    fields.update(overrides)
    return AttestationClaims(**fields)  # type: ignore[arg-type]


@pytest.fixture(name="account_ca", scope="session")
def account_ca_fixture() -> AccountCa:
    return create_account_ca("acme", now=NOW)


@pytest.fixture(name="p256_key", scope="session")
def p256_key_fixture() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(name="rsa2048_key", scope="session")
def rsa2048_key_fixture() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(name="csr_factory", scope="session")
def csr_factory_fixture() -> Callable[..., x509.CertificateSigningRequest]:
    return make_csr
