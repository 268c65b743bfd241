"""Only the pinned Intel SGX Root CA may be a hardware (non-simulated) trust anchor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization

from sanctum.attestation.trust import INTEL_SGX_ROOT_CA_SHA256, TrustAnchor
from sanctum.errors import UsageError
from sanctum.platforms.simulated.pki import SimulationPki

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki() -> SimulationPki:
    return SimulationPki.create(now=NOW, seed=b"s2-anchor")


@pytest.mark.parametrize("encoding", ["der", "pem"])
def test_a_foreign_root_cannot_be_a_hardware_anchor(pki: SimulationPki, encoding: str) -> None:
    data = pki.root_der()
    if encoding == "pem":
        data = pki.root_certificate.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(UsageError) as info:
        TrustAnchor.from_bytes(data, simulated=False)
    assert info.value.code == "trust.anchor_not_intel"
    assert INTEL_SGX_ROOT_CA_SHA256 in info.value.message


def test_the_constructor_refuses_it_too(pki: SimulationPki) -> None:
    with pytest.raises(UsageError) as info:
        TrustAnchor(pki.root_certificate, simulated=False)
    assert info.value.code == "trust.anchor_not_intel"


def test_intel_and_simulated_anchors_still_build(pki: SimulationPki) -> None:
    intel = TrustAnchor.intel()
    assert TrustAnchor.from_bytes(intel.der, simulated=False) == intel
    assert TrustAnchor(intel.certificate, simulated=False).is_intel
    simulated = TrustAnchor.from_bytes(pki.root_der(), simulated=True)
    assert simulated.simulated
    assert not simulated.is_intel
