"""The CA's output checked by an independent implementation: the openssl command line."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from ca_helpers import (  # noqa: F401 (importing these registers the fixtures)
    NOW,
    account_ca_fixture,
    csr_factory_fixture,
    p256_key_fixture,
    sgx_claims,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sanctum.manager.ca import (
    SANCTUM_OID_ARC,
    AccountCa,
    RevokedCertificate,
    build_crl,
    create_account_ca,
    encode_attestation_claims,
    issue_node_certificate,
    issue_server_certificate,
    issue_workload_certificate,
)


def _write(path: Path, cert: x509.Certificate | x509.CertificateRevocationList) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _openssl(openssl: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([openssl, *args], capture_output=True, text=True, check=False)


def _verify(openssl: str, tmp_path: Path, ca: AccountCa, leaf: x509.Certificate, *extra: str):  # type: ignore[no-untyped-def]
    root = _write(tmp_path / "root.pem", ca.root_certificate)
    inter = _write(tmp_path / "intermediate.pem", ca.issuing_certificate)
    leaf_path = _write(tmp_path / "leaf.pem", leaf)
    # Verify at a fixed time inside the validity window, so the test does not depend on today.
    at = str(int((NOW + timedelta(hours=1)).timestamp()))
    return _openssl(
        openssl,
        "verify",
        "-attime",
        at,
        "-CAfile",
        str(root),
        "-untrusted",
        str(inter),
        *extra,
        str(leaf_path),
    )


@pytest.mark.parametrize("key_kind", ["p256", "rsa2048", "rsa3072"])
def test_openssl_verifies_workload_chain(
    require_tool: Callable[..., str],
    tmp_path: Path,
    account_ca: AccountCa,
    csr_factory: Callable[..., x509.CertificateSigningRequest],
    key_kind: str,
) -> None:
    openssl = require_tool("openssl")
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if key_kind == "p256"
        else rsa.generate_private_key(public_exponent=65537, key_size=int(key_kind[3:]))
    )
    cert = issue_workload_certificate(
        account_ca,
        csr_factory(key, sans=["bank.demo.local"]),
        subject="bank.demo.local",
        sans=["bank.demo.local", "10.0.0.7"],
        validity=timedelta(days=1),
        serial=0x1234,
        attestation=sgx_claims(),
        now=NOW,
    )
    result = _verify(openssl, tmp_path, account_ca, cert, "-purpose", "sslserver")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "leaf.pem: OK" in result.stdout
    result = _verify(openssl, tmp_path, account_ca, cert, "-purpose", "sslclient")
    assert result.returncode == 0, result.stderr
    text = _openssl(openssl, "x509", "-noout", "-text", "-in", str(tmp_path / "leaf.pem")).stdout
    assert "DNS:bank.demo.local, IP Address:10.0.0.7" in text
    assert f"{SANCTUM_OID_ARC}.1.1:" in text
    assert "CA:FALSE" in text


def test_openssl_refuses_a_leaf_against_another_accounts_root(
    require_tool: Callable[..., str],
    tmp_path: Path,
    account_ca: AccountCa,
    p256_key: ec.EllipticCurvePrivateKey,
    csr_factory: Callable[..., x509.CertificateSigningRequest],
) -> None:
    openssl = require_tool("openssl")
    other = create_account_ca("other", now=NOW)
    cert = issue_workload_certificate(
        other,
        csr_factory(p256_key),
        subject="x",
        sans=["x.example"],
        validity=timedelta(days=1),
        serial=5,
        attestation=sgx_claims(),
        now=NOW,
    )
    result = _verify(openssl, tmp_path, account_ca, cert)
    assert result.returncode != 0


def test_openssl_refuses_expired_leaf(
    require_tool: Callable[..., str],
    tmp_path: Path,
    account_ca: AccountCa,
    p256_key: ec.EllipticCurvePrivateKey,
) -> None:
    openssl = require_tool("openssl")
    cert = issue_server_certificate(
        account_ca,
        p256_key.public_key(),
        common_name="manager",
        sans=["127.0.0.1"],
        validity=timedelta(minutes=30),
        serial=99,
        now=NOW,
    )
    # NOW + 1 hour is after the 30-minute certificate expired.
    result = _verify(openssl, tmp_path, account_ca, cert)
    assert result.returncode != 0
    assert "expired" in (result.stdout + result.stderr)


def test_openssl_checks_ca_extensions(
    require_tool: Callable[..., str], tmp_path: Path, account_ca: AccountCa
) -> None:
    openssl = require_tool("openssl")
    root = _write(tmp_path / "root.pem", account_ca.root_certificate)
    inter = _write(tmp_path / "inter.pem", account_ca.issuing_certificate)
    root_text = _openssl(openssl, "x509", "-noout", "-text", "-in", str(root)).stdout
    inter_text = _openssl(openssl, "x509", "-noout", "-text", "-in", str(inter)).stdout
    assert "CA:TRUE, pathlen:1" in root_text
    assert "CA:TRUE, pathlen:0" in inter_text
    for text in (root_text, inter_text):
        assert "Certificate Sign, CRL Sign" in text
        assert "Subject Key Identifier" in text
        assert "ecdsa-with-SHA256" in text
    assert "Authority Key Identifier" in inter_text
    assert "O = acme" in inter_text


def test_openssl_reads_crl_and_lists_serials(
    require_tool: Callable[..., str], tmp_path: Path, account_ca: AccountCa
) -> None:
    openssl = require_tool("openssl")
    crl = build_crl(
        account_ca,
        [
            RevokedCertificate(0xABCDEF, NOW - timedelta(hours=1), x509.ReasonFlags.key_compromise),
            (0x1234, NOW - timedelta(minutes=5), None),
        ],
        now=NOW,
        next_update=NOW + timedelta(days=1),
        number=42,
    )
    crl_path = _write(tmp_path / "crl.pem", crl)
    inter = _write(tmp_path / "inter.pem", account_ca.issuing_certificate)
    result = _openssl(
        openssl, "crl", "-in", str(crl_path), "-CAfile", str(inter), "-noout", "-text"
    )
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stderr + result.stdout
    assert "Serial Number: ABCDEF" in result.stdout
    assert "Serial Number: 1234" in result.stdout
    assert "Key Compromise" in result.stdout
    assert "X509v3 CRL Number" in result.stdout
    assert "42" in result.stdout

    # A CRL checked against another CA's certificate does not verify.
    other = create_account_ca("other", now=NOW)
    other_path = _write(tmp_path / "other.pem", other.issuing_certificate)
    bad = _openssl(openssl, "crl", "-in", str(crl_path), "-CAfile", str(other_path), "-noout")
    assert "verify OK" not in bad.stderr + bad.stdout


def test_openssl_verify_with_crl_rejects_revoked_leaf(
    require_tool: Callable[..., str],
    tmp_path: Path,
    account_ca: AccountCa,
    p256_key: ec.EllipticCurvePrivateKey,
    csr_factory: Callable[..., x509.CertificateSigningRequest],
) -> None:
    openssl = require_tool("openssl")
    cert = issue_workload_certificate(
        account_ca,
        csr_factory(p256_key),
        subject="bank.demo.local",
        sans=["bank.demo.local"],
        validity=timedelta(days=1),
        serial=777,
        attestation=sgx_claims(),
        now=NOW,
    )
    crl = build_crl(
        account_ca,
        [RevokedCertificate(777, NOW + timedelta(minutes=10))],
        now=NOW + timedelta(minutes=10),
        next_update=NOW + timedelta(days=1),
    )
    crl_path = _write(tmp_path / "crl.pem", crl)
    result = _verify(openssl, tmp_path, account_ca, cert, "-crl_check", "-CRLfile", str(crl_path))
    assert result.returncode != 0
    assert "revoked" in (result.stdout + result.stderr)
    empty = build_crl(
        account_ca, [], now=NOW + timedelta(minutes=10), next_update=NOW + timedelta(days=1)
    )
    _write(tmp_path / "crl.pem", empty)
    result = _verify(openssl, tmp_path, account_ca, cert, "-crl_check", "-CRLfile", str(crl_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_openssl_parses_the_extension_der(require_tool: Callable[..., str], tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    claims = sgx_claims(advisory_ids=("INTEL-SA-00615",), debug=False, simulated=True)
    path = tmp_path / "ext.der"
    path.write_bytes(encode_attestation_claims(claims))
    result = _openssl(openssl, "asn1parse", "-inform", "DER", "-in", str(path))
    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert any("INTEGER :01" in line for line in lines)
    assert any("UTF8STRING :sgx" in line for line in lines)
    assert any("UTF8STRING :SWHardeningNeeded" in line for line in lines)
    assert any("UTF8STRING :INTEL-SA-00615" in line for line in lines)
    assert any("BOOLEAN :0" in line for line in lines)
    assert any("BOOLEAN :255" in line for line in lines)
    assert sum("OCTET STRING" in line for line in lines) == 2


def test_openssl_verifies_node_certificate_for_client_auth_only(
    require_tool: Callable[..., str],
    tmp_path: Path,
    account_ca: AccountCa,
    p256_key: ec.EllipticCurvePrivateKey,
    csr_factory: Callable[..., x509.CertificateSigningRequest],
) -> None:
    openssl = require_tool("openssl")
    cert = issue_node_certificate(
        account_ca,
        csr_factory(p256_key),
        node_name="node-1",
        validity=timedelta(days=1),
        serial=1234567,
        now=NOW,
    )
    assert _verify(openssl, tmp_path, account_ca, cert, "-purpose", "sslclient").returncode == 0
    assert _verify(openssl, tmp_path, account_ca, cert, "-purpose", "sslserver").returncode != 0
