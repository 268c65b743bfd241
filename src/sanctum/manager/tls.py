"""The manager's own HTTPS identity: a private CA and a server certificate in the data directory.

On first start :func:`ensure_server_tls` creates ``tls/ca.pem`` + ``tls/ca.key.sealed`` (an
ECDSA P-256 root, ten years) and ``tls/server.pem`` + ``tls/server.key`` (a one-year server
certificate for ``localhost``, ``127.0.0.1``, ``::1`` and the configured host). The CA key is
never written in clear: its PKCS#8 form is wrapped under the manager's KEK (the key provider of
the :class:`~sanctum.manager.secretbox.Keyring`), so a copy of the data directory without the
KEK cannot mint server certificates clients trust; a clear ``ca.key`` left by an older version
is sealed and removed on start. The server key stays in clear (the TLS server reads it from a
file) with mode 0600 in a 0700 directory. The server certificate is renewed when it nears
expiry or lacks a requested name. Clients pin ``ca.pem`` (``sanctum login --ca-file``).
Operators who have their own certificate pass ``tls_cert``/``tls_key`` instead. The time is
passed in.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sanctum.errors import EvidenceError, UsageError
from sanctum.manager.secretbox import Keyring

__all__ = ["TlsFiles", "ensure_server_tls"]

_RENEW_BEFORE: Final = dt.timedelta(days=30)
_CA_KEY_CONTEXT: Final = b"sanctum/manager-tls-ca-key/v1"
_SEALED_CA_KEY: Final = "ca.key.sealed"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the serving material is."""

    cert: Path
    key: Path
    ca: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def _write_public(path: Path, data: bytes) -> None:
    # Write then rename, so a reader never sees a half-written certificate.
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]):
        if not host or host in {"0.0.0.0", "::"}:  # noqa: S104 (listen-all is not a name)
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _seal_ca_key(directory: Path, key: ec.EllipticCurvePrivateKey, keyring: Keyring) -> None:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    provider = keyring.current
    document = {
        "kek_id": provider.kek_id,
        "wrapped": base64.b64encode(provider.wrap(der, context=_CA_KEY_CONTEXT)).decode(),
    }
    _write_private(directory / _SEALED_CA_KEY, json.dumps(document).encode())


def _open_ca_key(directory: Path, keyring: Keyring) -> ec.EllipticCurvePrivateKey:
    """Return the sealed CA key (resealing it under the current KEK after a rotation).

    Raises:
        UsageError: The file is unreadable, or no configured KEK opens it
            (``tls.ca_key_unreadable``).
    """
    path = directory / _SEALED_CA_KEY
    try:
        document = json.loads(path.read_bytes())
        provider = keyring.provider(str(document["kek_id"]))
        der = provider.unwrap(base64.b64decode(document["wrapped"]), context=_CA_KEY_CONTEXT)
        loaded = serialization.load_der_private_key(der, None)
    except (OSError, ValueError, KeyError, TypeError, EvidenceError) as error:
        raise UsageError(
            f"the manager's TLS CA key {path} cannot be opened with the configured KEK",
            code="tls.ca_key_unreadable",
            hint="configure the KEK it was sealed with (kek_file, kek_env or previous_kek_files)",
        ) from error
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise UsageError("the manager's TLS CA key is not an EC key", code="tls.ca_key_unreadable")
    if provider.kek_id != keyring.current.kek_id:
        _seal_ca_key(directory, loaded, keyring)
    return loaded


def _make_ca(
    directory: Path, now: dt.datetime, keyring: Keyring
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sanctum Manager TLS CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _seal_ca_key(directory, key, keyring)
    _write_public(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _server_ok(path: Path, names: list[x509.GeneralName], now: dt.datetime) -> bool:
    if not path.is_file():
        return False
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    if cert.not_valid_after_utc - _RENEW_BEFORE <= now:
        return False
    present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return all(name in present for name in names)


def ensure_server_tls(
    data_dir: Path, hosts: list[str], now: dt.datetime, *, keyring: Keyring
) -> TlsFiles:
    """Return the manager's TLS files, creating or renewing them as needed.

    Args:
        data_dir: The manager's data directory (the files go in ``tls/``).
        hosts: Extra names for the server certificate.
        now: The current time.
        keyring: The manager's KEKs; the CA key is sealed under the current one.

    Raises:
        UsageError: The sealed CA key does not open (``tls.ca_key_unreadable``).
    """
    directory = data_dir / "tls"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = TlsFiles(
        cert=directory / "server.pem", key=directory / "server.key", ca=directory / "ca.pem"
    )
    legacy = directory / "ca.key"
    if files.ca.is_file() and legacy.is_file() and not (directory / _SEALED_CA_KEY).is_file():
        # An older version kept the CA key in clear: seal it, then remove the clear copy.
        loaded = serialization.load_pem_private_key(legacy.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise UsageError(
                "the manager's TLS CA key is not an EC key", code="tls.ca_key_unreadable"
            )
        _seal_ca_key(directory, loaded, keyring)
        legacy.unlink()
    if files.ca.is_file() and (directory / _SEALED_CA_KEY).is_file():
        ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
        ca_key = _open_ca_key(directory, keyring)
    else:
        ca_cert, ca_key = _make_ca(directory, now, keyring)
    names = _names(hosts)
    if _server_ok(files.cert, names, now):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sanctum-manager")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(files.key, _key_pem(key))
    _write_public(
        files.cert,
        cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM),
    )
    return files
