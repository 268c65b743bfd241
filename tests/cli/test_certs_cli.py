"""``sanctum certs`` and ``sanctum ca`` against a manager served over HTTPS."""

from __future__ import annotations

import pytest
from cryptography import x509
from manager_cli_helpers import Served, served_manager


@pytest.fixture
def served(tmp_path, monkeypatch):
    with served_manager(tmp_path, monkeypatch) as manager:
        app = manager.cli_json("apps", "create", "bank", "--unsafe-allow-simulated")
        del app
        identity = manager.platform.identity
        created = manager.cli_json(
            "builds", "register", "bank", "--measurement", identity.mr_enclave.hex(), "--simulated"
        )
        manager.approve(created["task"]["id"])
        yield manager


def test_certs_list_show_revoke_and_crl(served: Served, tmp_path):
    response = served.attest("bank")
    assert response.status_code == 200, response.text
    issued = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
    serial = format(issued.serial_number, "x")
    listed = served.cli_json("certs", "list", "--app", "bank")
    assert [c["serial"] for c in listed] == [serial]
    pem = served.cli("certs", "show", serial, "--pem")
    assert pem.exit_code == 0
    assert x509.load_pem_x509_certificate(pem.output.encode()) == issued
    revoked = served.cli_json("certs", "revoke", serial, "--reason", "keyCompromise")
    assert revoked["status"] == "revoked"
    assert revoked["revocation_reason"] == "keyCompromise"
    assert served.cli_json("certs", "list", "--status", "active") == []

    out = tmp_path / "crl.pem"
    saved = served.cli("ca", "crl", "--out", str(out))
    assert saved.exit_code == 0, saved.output
    crl = x509.load_pem_x509_crl(out.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial_number) is not None


def test_ca_show_writes_the_root_and_chain(served: Served, tmp_path):
    root_file = tmp_path / "root.pem"
    chain_file = tmp_path / "chain.pem"
    shown = served.cli_json("ca", "show", "--out", str(root_file), "--chain-out", str(chain_file))
    root = x509.load_pem_x509_certificate(root_file.read_bytes())
    issuing = x509.load_pem_x509_certificate(chain_file.read_bytes())
    issuing.verify_directly_issued_by(root)
    assert shown["root"] == root_file.read_text()
    text = served.cli("ca", "show")
    assert text.output.count("BEGIN CERTIFICATE") == 2
