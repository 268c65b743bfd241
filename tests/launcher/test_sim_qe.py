from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from sanctum.attestation.collateral import load_collateral_bundle
from sanctum.attestation.quote import parse_quote
from sanctum.attestation.trust import TrustAnchor
from sanctum.attestation.verify import verify_quote
from sanctum.errors import UnavailableError, UsageError
from sanctum.platforms.sim_qe import (
    QuoteIdentity,
    SimQeEvidenceSource,
    collateral_from_bundle,
    start_sim_qe,
)
from sanctum.protocol.messages import Collateral

IDENTITY = QuoteIdentity(
    mr_enclave=bytes(range(32)),
    mr_signer=bytes(range(32, 64)),
    isv_prod_id=7,
    isv_svn=3,
    debug=False,
)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_quotes_verify_against_the_state_dirs_simulation_root(tmp_path, transport):
    state = tmp_path / "state"
    if transport == "unix":
        server = start_sim_qe(state, socket_path=tmp_path / "qe.sock")
        assert server.address == f"unix:{tmp_path / 'qe.sock'}"
    else:
        server = start_sim_qe(state, port=0)
        assert server.address.startswith("http://127.0.0.1:")
    server.start_in_thread()
    try:
        source = SimQeEvidenceSource(server.address, IDENTITY)
        report_data = os.urandom(32)
        result = source.quote_with_collateral(report_data)
        source.close()
    finally:
        server.close()
    assert source.info.simulated
    quote = parse_quote(result.quote)
    assert quote.report_data == report_data + bytes(32)
    assert quote.body.mr_enclave == IDENTITY.mr_enclave  # type: ignore[union-attr]
    assert quote.body.mr_signer == IDENTITY.mr_signer  # type: ignore[union-attr]
    assert not quote.debug
    # The PKI stays in the state directory on the host, with private permissions.
    pki_file = state / "simulation-pki.json"
    assert pki_file.stat().st_mode & 0o077 == 0
    root = x509.load_pem_x509_certificate(
        json.loads(pki_file.read_text())["certificates"]["root"].encode()
    )
    verified = verify_quote(
        result.quote,
        load_collateral_bundle(json.dumps(dict(result.collateral))),
        trust_anchor=TrustAnchor(root, simulated=True),
        now=dt.datetime.now(dt.UTC),
    )
    assert verified is not None
    # The wire form of the collateral is accepted by the protocol model.
    Collateral.model_validate(collateral_from_bundle(result.collateral))


def test_debug_identity_is_reflected_in_the_quote(tmp_path):
    server = start_sim_qe(tmp_path / "state", port=0)
    server.start_in_thread()
    try:
        debug = QuoteIdentity(bytes(32), bytes(32), 0, 0, debug=True)
        quote = parse_quote(SimQeEvidenceSource(server.address, debug).quote(b"x"))
    finally:
        server.close()
    assert quote.debug


def test_unreachable_service_is_retryable(tmp_path):
    source = SimQeEvidenceSource(f"unix:{tmp_path / 'absent.sock'}", IDENTITY)
    with pytest.raises(UnavailableError) as caught:
        source.quote(b"x")
    assert caught.value.code == "sim_qe.unavailable"
    assert caught.value.retryable


@pytest.mark.parametrize("address", ["http://10.0.0.1:80", "tcp:1234", "https://127.0.0.1:1"])
def test_only_unix_sockets_and_loopback_http(address):
    with pytest.raises(UsageError) as caught:
        SimQeEvidenceSource(address, IDENTITY)
    assert caught.value.code == "sim_qe.address_invalid"


def test_bad_requests_are_refused_with_a_code(tmp_path):
    server = start_sim_qe(tmp_path / "state", port=0)
    server.start_in_thread()
    try:
        bad = httpx.post(f"{server.address}/v1/quote", json={"report_data": "!!"})
        long = httpx.post(
            f"{server.address}/v1/quote",
            json={"report_data": "QUFB" * 30, "identity": IDENTITY.to_json()},
        )
        info = httpx.get(f"{server.address}/v1/info").json()
    finally:
        server.close()
    assert bad.status_code == 400
    assert bad.json()["code"] == "sim_qe.request_invalid"
    assert long.status_code == 400
    assert info["simulated"] is True
    assert "BEGIN CERTIFICATE" in info["root_ca_pem"]


def test_identity_validation():
    with pytest.raises(UsageError):
        QuoteIdentity(bytes(31), bytes(32), 0, 0, debug=False)
    with pytest.raises(UsageError):
        QuoteIdentity(bytes(32), bytes(32), 70000, 0, debug=False)
    assert QuoteIdentity.from_json(IDENTITY.to_json()) == IDENTITY


def test_socket_file_is_removed_on_close(tmp_path):
    path: Path = tmp_path / "qe.sock"
    server = start_sim_qe(tmp_path / "state", socket_path=path)
    assert path.exists()
    server.close()
    assert not path.exists()
