"""The KEK production rule and the sealed TLS CA key of the manager's own HTTPS identity."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sanctum.errors import UsageError
from sanctum.manager.app import resolve_key_provider
from sanctum.manager.secretbox import Keyring, LocalKeyProvider
from sanctum.manager.settings import ManagerSettings
from sanctum.manager.tls import ensure_server_tls

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def test_production_profile_needs_an_explicit_kek(tmp_path):
    with pytest.raises(UsageError) as refused:
        resolve_key_provider(ManagerSettings(data_dir=tmp_path))
    assert refused.value.code == "settings.kek_required"
    assert not (tmp_path / "kek.b64").exists()
    kek = tmp_path / "kek"
    kek.write_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    _, created = resolve_key_provider(ManagerSettings(data_dir=tmp_path, kek_file=kek))
    assert created is False


def test_dev_profile_creates_a_kek(tmp_path):
    _, created = resolve_key_provider(ManagerSettings(data_dir=tmp_path, profile="dev"))
    assert created is True
    assert (tmp_path / "kek.b64").stat().st_mode & 0o777 == 0o600


def test_tls_ca_key_is_sealed_under_the_kek(tmp_path):
    keyring = Keyring(LocalKeyProvider(bytes(32)))
    files = ensure_server_tls(tmp_path, ["manager.local"], NOW, keyring=keyring)
    directory = tmp_path / "tls"
    assert not (directory / "ca.key").exists()
    sealed = (directory / "ca.key.sealed").read_bytes()
    assert b"PRIVATE KEY" not in sealed
    assert (directory / "ca.key.sealed").stat().st_mode & 0o777 == 0o600
    # A restart reuses the sealed CA (same CA certificate, server still verifies).
    ca_before = files.ca.read_bytes()
    files.cert.unlink()
    again = ensure_server_tls(tmp_path, ["manager.local"], NOW, keyring=keyring)
    assert again.ca.read_bytes() == ca_before
    server = x509.load_pem_x509_certificates(again.cert.read_bytes())[0]
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_before))
    # Without the KEK the CA key does not open.
    files.cert.unlink()
    with pytest.raises(UsageError) as refused:
        ensure_server_tls(tmp_path, [], NOW, keyring=Keyring(LocalKeyProvider(bytes([1]) * 32)))
    assert refused.value.code == "tls.ca_key_unreadable"


def test_clear_legacy_ca_key_is_sealed_and_removed(tmp_path):
    keyring = Keyring(LocalKeyProvider(bytes(32)))
    files = ensure_server_tls(tmp_path, [], NOW, keyring=keyring)
    directory = tmp_path / "tls"
    (directory / "ca.key.sealed").unlink()
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.cert.unlink()
    ensure_server_tls(tmp_path, [], NOW, keyring=keyring)
    assert not (directory / "ca.key").exists()
    assert (directory / "ca.key.sealed").is_file()
