"""The workload's side of the attestation protocol: its key, its CSR, its report data.

The launcher calls these inside the enclave; the manager's tests call them to play the workload.
The key never leaves memory: :func:`generate_workload_key` returns a key object and nothing here
serialises the private key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sanctum.errors import UsageError
from sanctum.protocol.binding import report_data_for, spki_der

__all__ = [
    "WorkloadKey",
    "WorkloadKeyKind",
    "build_csr",
    "generate_workload_key",
    "workload_report_data",
]

#: Key types a workload certificate may have (the app's certificate configuration).
WorkloadKeyKind = Literal["ec-p256", "rsa-2048", "rsa-3072"]

WorkloadKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_workload_key(kind: WorkloadKeyKind = "ec-p256") -> WorkloadKey:
    """Return a fresh workload key of ``kind``.

    Args:
        kind: ``ec-p256`` (default; fastest, and the HPKE sealing suite), ``rsa-2048`` or
            ``rsa-3072``.

    Returns:
        The private key, in memory only.

    Raises:
        UsageError: ``kind`` is not a supported key type (code ``workload.key_type_invalid``).
    """
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind in {"rsa-2048", "rsa-3072"}:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    raise UsageError(
        f"unknown workload key type {kind!r}; expected ec-p256, rsa-2048 or rsa-3072",
        code="workload.key_type_invalid",
    )


def build_csr(key: WorkloadKey, *, common_name: str, sans: Sequence[str] = ()) -> str:
    """Return a PEM CSR for ``key`` asking for ``common_name`` and ``sans``.

    The manager sets the certificate's names from the app's approved domains; asking here for a
    name the app may not have gets the request refused (``ca.san_not_allowed``), which makes a
    misconfiguration visible early.

    Args:
        key: The workload key.
        common_name: The subject common name (1 to 64 characters).
        sans: DNS names and IP addresses to ask for.

    Returns:
        The CSR as PEM text, signed with SHA-256.

    Raises:
        UsageError: The common name is empty or too long (code ``workload.csr_invalid``).
    """
    if not 1 <= len(common_name) <= 64:
        raise UsageError("common name must be 1 to 64 characters", code="workload.csr_invalid")
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def workload_report_data(nonce: bytes, key: WorkloadKey) -> bytes:
    """Return the 64 bytes of report data to quote: the binding of ``nonce`` and ``key``.

    Raises:
        sanctum.protocol.errors.BindingError: ``nonce`` is empty.
    """
    return report_data_for(nonce, spki_der(key.public_key()))
