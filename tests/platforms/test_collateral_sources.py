from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pcs_server import VECTORS

from sanctum.attestation.collateral import load_collateral_bundle
from sanctum.attestation.quote import parse_quote
from sanctum.attestation.trust import TrustAnchor
from sanctum.attestation.verify import verify_quote
from sanctum.errors import NotFoundError
from sanctum.platforms.collateral_source import (
    CollateralSource,
    OfflineBundleSource,
    SimulatedCollateralSource,
)
from sanctum.platforms.errors import CollateralUnavailableError
from sanctum.platforms.simulated import SimulatedPlatform, load_or_create_simulation_pki

CASES = VECTORS.parent / "dcap" / "cases"
SGX_NOW = datetime.fromtimestamp(1756530546, UTC)
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def _quote(case: str):
    return parse_quote((CASES / f"{case}.quote.bin").read_bytes())


def test_offline_bundle_file() -> None:
    source = OfflineBundleSource(CASES / "tdx-v4-phala.collateral.json")
    assert isinstance(source, CollateralSource)
    collateral = source.for_quote(_quote("tdx-v4-phala"), now=NOW)
    assert collateral == load_collateral_bundle(
        (CASES / "tdx-v4-phala.collateral.json").read_bytes()
    )


def test_offline_folder_of_pcs_files_verifies_end_to_end() -> None:
    quote = _quote("sgx-v3-automata-00606a")
    collateral = OfflineBundleSource(VECTORS / "sgx-00606a").for_quote(quote, now=SGX_NOW)
    result = verify_quote(quote, collateral, trust_anchor=TrustAnchor.intel(), now=SGX_NOW)
    assert str(result.status) == "SWHardeningNeeded"
    assert result.simulated is False


def test_offline_folder_prefers_platform_specific_names(tmp_path: Path) -> None:
    # One folder serving two platforms: the specific names win over the generic ones.
    for site, tee, fmspc in (
        ("sgx-00606a", "sgx", "00606a000000"),
        ("tdx-00806f050000", "tdx", "00806f050000"),
    ):
        folder = VECTORS / site
        shutil.copyfile(folder / "tcb-info.json", tmp_path / f"tcb-info-{tee}-{fmspc}.json")
        shutil.copyfile(folder / "qe-identity.json", tmp_path / f"qe-identity-{tee}.json")
    shared = VECTORS / "tdx-00806f050000"
    for name in (
        "tcb-signing-chain.pem",
        "pck-crl-issuer-chain.pem",
        "root-ca-crl.der",
        "pck-crl-platform.der",
    ):
        shutil.copyfile(shared / name, tmp_path / name)
    source = OfflineBundleSource(tmp_path)
    tdx = source.for_quote(_quote("tdx-v4-automata-0725"), now=NOW)
    sgx = source.for_quote(_quote("sgx-v3-automata-00606a"), now=NOW)
    assert tdx == load_collateral_bundle(
        (CASES / "tdx-v4-automata-0725.collateral.json").read_bytes()
    )
    assert b'"id":"SGX"' in sgx.tcb_info_text
    assert b'"id":"QE"' in sgx.qe_identity_text


def test_offline_folder_missing_file(tmp_path: Path) -> None:
    shutil.copytree(VECTORS / "sgx-00606a", tmp_path / "f")
    (tmp_path / "f" / "pck-crl-platform.der").unlink()
    with pytest.raises(NotFoundError) as caught:
        OfflineBundleSource(tmp_path / "f").for_quote(_quote("sgx-v3-automata-00606a"), now=NOW)
    assert caught.value.code == "collateral.offline_missing"
    assert "pck-crl-platform.der" in caught.value.message


def test_offline_folder_needs_the_right_ca(tmp_path: Path) -> None:
    # The Phala quote's PCK comes from the Processor CA; the folder only has a Platform CA CRL.
    with pytest.raises(NotFoundError, match="pck-crl-processor"):
        OfflineBundleSource(VECTORS / "sgx-00606a").for_quote(_quote("sgx-v3-phala"), now=NOW)


def test_offline_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as caught:
        OfflineBundleSource(tmp_path / "nope").for_quote(_quote("sgx-v3-phala"), now=NOW)
    assert caught.value.code == "collateral.offline_missing"


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_simulated_source_serves_collateral_that_verifies(tmp_path: Path, tee: str) -> None:
    pki = load_or_create_simulation_pki(tmp_path, now=NOW)
    platform = SimulatedPlatform(pki, tee=tee, now=NOW, seed=b"c2")
    quote = parse_quote(platform.quote(b"hello"))
    collateral = SimulatedCollateralSource(platform).for_quote(quote, now=NOW)
    anchor = TrustAnchor.from_bytes(platform.root_ca_der(), simulated=True)
    result = verify_quote(quote, collateral, trust_anchor=anchor, now=NOW)
    assert result.simulated is True
    assert result.tee == tee


def test_simulated_source_refuses_other_quotes(tmp_path: Path) -> None:
    pki = load_or_create_simulation_pki(tmp_path, now=NOW)
    platform = SimulatedPlatform(pki, tee="sgx", now=NOW, seed=b"c2")
    with pytest.raises(CollateralUnavailableError) as caught:
        SimulatedCollateralSource(platform).for_quote(_quote("sgx-v3-phala"), now=NOW)
    assert caught.value.code == "collateral.not_found"
