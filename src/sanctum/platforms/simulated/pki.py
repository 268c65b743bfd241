"""The Sanctum simulation PKI: a software stand-in for Intel's SGX provisioning certificates.

Intel's DCAP trust chain is ``Intel SGX Root CA`` → ``Intel SGX PCK Platform/Processor CA`` →
``Intel SGX PCK Certificate`` (one per platform, carrying the SGX extension with FMSPC, TCB and
PPID), plus ``Intel SGX TCB Signing`` (signs TCB info and QE identity) and two CRLs (the root CA
CRL and the PCK CRL). :class:`SimulationPki` builds the same shape with its own keys and subjects
that say "Simulated" plainly, so that a verifier given *this* root as trust anchor checks
simulated quotes with exactly the code path it uses for real ones, while a verifier pinned to
Intel's root refuses them.

The builders here are pure (time and, optionally, a seed are inputs). Persistence is split in two:
:meth:`SimulationPki.to_json` / :meth:`SimulationPki.from_json` (bytes in, bytes out, private
keys passed through caller-supplied ``wrap``/``unwrap`` functions, e.g. AES-GCM under the
manager's key-encryption key) and :func:`load_or_create_simulation_pki`, the only function here
that touches the file system.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from sanctum.errors import SanctumError
from sanctum.platforms.simulated import _der
from sanctum.platforms.simulated.errors import SimulationPkiError

__all__ = [
    "CLOCK_SKEW_ALLOWANCE",
    "DEFAULT_VALIDITY",
    "PCK_LEAF_CN",
    "PCK_VALIDITY",
    "ROOT_CN",
    "SGX_EXTENSION_OID",
    "SIMULATION_PKI_FILENAME",
    "TCB_SIGNING_CN",
    "KeySource",
    "PckCaKind",
    "PckExtension",
    "SimulationPki",
    "load_or_create_simulation_pki",
    "raw_signature",
]

#: Intel's SGX extension in PCK certificates.
SGX_EXTENSION_OID: Final = "1.2.840.113741.1.13.1"
#: Default lifetime of the simulation root and its intermediates (about ten years).
DEFAULT_VALIDITY: Final = timedelta(days=3652)
#: Lifetime of a simulated PCK certificate (Intel issues them for seven years).
PCK_VALIDITY: Final = timedelta(days=7 * 365)
#: How far certificates and collateral are backdated, so that a verifier whose clock is a little
#: behind the simulated platform's does not see them as "not yet valid".
CLOCK_SKEW_ALLOWANCE: Final = timedelta(minutes=5)
#: File name of the persisted PKI inside the state directory.
SIMULATION_PKI_FILENAME: Final = "simulation-pki.json"

_FORMAT: Final = "sanctum.simulation-pki"
_FORMAT_VERSION: Final = 1

# The organisation fields mirror the shape of Intel's (O, L, ST, C) with values that cannot be
# mistaken for Intel's. "ZZ" is a user-assigned ISO 3166 code; ".invalid" never resolves.
_ORGANIZATION: Final = "Sanctum Simulated Platform"
_LOCALITY: Final = "Simulation"
_STATE: Final = "SIM"
_COUNTRY: Final = "ZZ"
_CRL_BASE_URL: Final = "https://simulated.sanctum.invalid/sgx/certification/v4"

ROOT_CN: Final = "Sanctum Simulated SGX Root CA"
TCB_SIGNING_CN: Final = "Sanctum Simulated SGX TCB Signing"
PCK_LEAF_CN: Final = "Sanctum Simulated SGX PCK Certificate"

_CURVE_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_PRIVATE_KEY_FIELDS: Final = (
    "root",
    "processor_ca",
    "platform_ca",
    "tcb_signing",
)


class PckCaKind(StrEnum):
    """Which PCK intermediate CA issued a PCK certificate (Intel has two)."""

    PROCESSOR = "processor"
    PLATFORM = "platform"

    @property
    def common_name(self) -> str:
        """The subject CN of the simulated CA of this kind."""
        return f"Sanctum Simulated SGX PCK {self.value.capitalize()} CA"


class KeySource:
    """Where keys, serial numbers and identifiers come from: random, or derived from a seed.

    With a seed every key and serial is a deterministic function of (seed, label), which makes
    reproducible test fixtures; without one they come from the operating system's CSPRNG.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        """Create a source; ``seed`` makes every output reproducible."""
        self._seed = seed

    @staticmethod
    def _digest(seed: bytes, label: str) -> bytes:
        """Return 64 bytes derived from ``seed`` and ``label``."""
        return hashlib.sha512(b"sanctum-simulated\0" + label.encode() + b"\0" + seed).digest()

    def key(self, label: str) -> ec.EllipticCurvePrivateKey:
        """Return a P-256 private key for ``label``."""
        if self._seed is None:
            return ec.generate_private_key(ec.SECP256R1())
        scalar = (
            int.from_bytes(self._digest(self._seed, "key:" + label), "big") % (_CURVE_ORDER - 1) + 1
        )
        return ec.derive_private_key(scalar, ec.SECP256R1())

    def random_bytes(self, label: str, size: int) -> bytes:
        """Return ``size`` (at most 64) bytes for ``label``."""
        if self._seed is None:
            return secrets.token_bytes(size)
        return self._digest(self._seed, "bytes:" + label)[:size]

    def serial(self, label: str) -> int:
        """Return a positive certificate serial number of at most 20 octets for ``label``."""
        return int.from_bytes(self.random_bytes("serial:" + label, 19), "big") | 1


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Sign ``data`` with ECDSA P-256/SHA-256 and return the 64-byte ``r || s`` form Intel uses."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _seconds(moment: datetime) -> datetime:
    """Return ``moment`` in UTC without sub-second precision (what X.509 can express).

    Raises:
        ValueError: ``moment`` is naive (has no time zone).
    """
    if moment.tzinfo is None:
        msg = "times must be timezone-aware"
        raise ValueError(msg)
    return moment.astimezone(UTC).replace(microsecond=0)


def _name(common_name: str) -> x509.Name:
    """Return a subject with Intel's naming shape (CN, O, L, ST, C)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.LOCALITY_NAME, _LOCALITY),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, _STATE),
            x509.NameAttribute(NameOID.COUNTRY_NAME, _COUNTRY),
        ]
    )


def _crl_points(url: str) -> x509.CRLDistributionPoints:
    """Return a CRL distribution points extension with one URI."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Return Intel's key usage: CA certificates sign certs and CRLs, leaves sign data."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
    ca: bool,
    crl_url: str,
    extensions: Iterable[x509.ExtensionType] = (),
) -> x509.Certificate:
    """Build and sign one certificate with Intel's extension set."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(_crl_points(crl_url), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True, slots=True)
class PckExtension:
    """The contents of the SGX extension of a PCK certificate.

    Attributes:
        ppid: Platform provisioning ID (16 bytes).
        cpu_svn: CPUSVN (16 bytes); its bytes are also the 16 TCB component SVNs.
        pce_svn: PCE security version.
        pce_id: PCE identifier (2 bytes).
        fmspc: Family-model-stepping-platform-custom SKU (6 bytes).
        sgx_type: 0 Standard, 1 Scalable, 2 ScalableWithIntegrity.
        platform_instance_id: 16 bytes, present in certificates from the Platform CA only.
        dynamic_platform: Configuration flag (Platform CA certificates only).
        cached_keys: Configuration flag (Platform CA certificates only).
        smt_enabled: Configuration flag (Platform CA certificates only).
    """

    ppid: bytes
    cpu_svn: bytes
    pce_svn: int
    pce_id: bytes
    fmspc: bytes
    sgx_type: int = 0
    platform_instance_id: bytes | None = None
    dynamic_platform: bool = False
    cached_keys: bool = False
    smt_enabled: bool = False

    def __post_init__(self) -> None:
        """Check field sizes.

        Raises:
            ValueError: A field has the wrong size or range.
        """
        sizes = {"ppid": 16, "cpu_svn": 16, "pce_id": 2, "fmspc": 6}
        for name, size in sizes.items():
            if len(getattr(self, name)) != size:
                msg = f"{name} must be {size} bytes"
                raise ValueError(msg)
        if self.platform_instance_id is not None and len(self.platform_instance_id) != 16:
            msg = "platform_instance_id must be 16 bytes"
            raise ValueError(msg)
        if not 0 <= self.pce_svn <= 0xFFFF or self.sgx_type not in {0, 1, 2}:
            msg = "pce_svn must fit 16 bits and sgx_type be 0, 1 or 2"
            raise ValueError(msg)

    def to_der(self) -> bytes:
        """Encode the extension value exactly as Intel's PCK certificates do."""

        def entry(suffix: str, value: bytes) -> bytes:
            return _der.sequence([_der.oid(f"{SGX_EXTENSION_OID}.{suffix}"), value])

        tcb = [entry(f"2.{index + 1}", _der.integer(svn)) for index, svn in enumerate(self.cpu_svn)]
        tcb.append(entry("2.17", _der.integer(self.pce_svn)))
        tcb.append(entry("2.18", _der.octet_string(self.cpu_svn)))
        items = [
            entry("1", _der.octet_string(self.ppid)),
            entry("2", _der.sequence(tcb)),
            entry("3", _der.octet_string(self.pce_id)),
            entry("4", _der.octet_string(self.fmspc)),
            entry("5", _der.enumerated(self.sgx_type)),
        ]
        if self.platform_instance_id is not None:
            items.append(entry("6", _der.octet_string(self.platform_instance_id)))
            configuration = [
                entry("7.1", _der.boolean(self.dynamic_platform)),
                entry("7.2", _der.boolean(self.cached_keys)),
                entry("7.3", _der.boolean(self.smt_enabled)),
            ]
            items.append(entry("7", _der.sequence(configuration)))
        return _der.sequence(items)


def _pem(certificate: x509.Certificate) -> str:
    """Return the PEM text of a certificate."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True, slots=True, eq=False)
class SimulationPki:
    """The simulation root CA, both PCK CAs and the TCB signing key, with their certificates.

    Build one with :meth:`create`, persist it with :meth:`to_json`, restore it with
    :meth:`from_json`. Per-platform PCK certificates are issued with
    :meth:`issue_pck_certificate`; CRLs are issued on demand so their dates follow ``now``.
    """

    root_key: ec.EllipticCurvePrivateKey = field(repr=False)
    root_certificate: x509.Certificate
    processor_ca_key: ec.EllipticCurvePrivateKey = field(repr=False)
    processor_ca_certificate: x509.Certificate
    platform_ca_key: ec.EllipticCurvePrivateKey = field(repr=False)
    platform_ca_certificate: x509.Certificate
    tcb_signing_key: ec.EllipticCurvePrivateKey = field(repr=False)
    tcb_signing_certificate: x509.Certificate

    @classmethod
    def create(
        cls,
        *,
        now: datetime,
        validity: timedelta = DEFAULT_VALIDITY,
        seed: bytes | None = None,
    ) -> SimulationPki:
        """Create a fresh simulation PKI valid from ``now`` for ``validity``.

        Certificates are backdated by :data:`CLOCK_SKEW_ALLOWANCE`.

        Args:
            now: Creation time (timezone-aware).
            validity: Lifetime of the root, the PCK CAs and the TCB signing certificate.
            seed: Makes keys and serial numbers reproducible (tests only; never in production).

        Raises:
            ValueError: ``now`` is naive or ``validity`` is not positive.
        """
        if validity <= timedelta(0):
            msg = "validity must be positive"
            raise ValueError(msg)
        source = KeySource(seed)
        end = _seconds(now) + validity
        start = _seconds(now) - CLOCK_SKEW_ALLOWANCE
        root_key = source.key("root")
        root_name = _name(ROOT_CN)
        root = _issue(
            subject=root_name,
            public_key=root_key.public_key(),
            issuer=root_name,
            issuer_key=root_key,
            serial=source.serial("root"),
            not_before=start,
            not_after=end,
            path_length=1,
            ca=True,
            crl_url=f"{_CRL_BASE_URL}/rootcacrl",
        )

        def intermediate(
            label: str, common_name: str, *, ca: bool
        ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
            key = source.key(label)
            certificate = _issue(
                subject=_name(common_name),
                public_key=key.public_key(),
                issuer=root_name,
                issuer_key=root_key,
                serial=source.serial(label),
                not_before=start,
                not_after=end,
                path_length=0 if ca else None,
                ca=ca,
                crl_url=f"{_CRL_BASE_URL}/rootcacrl",
            )
            return key, certificate

        processor_key, processor = intermediate(
            "processor_ca", PckCaKind.PROCESSOR.common_name, ca=True
        )
        platform_key, platform = intermediate(
            "platform_ca", PckCaKind.PLATFORM.common_name, ca=True
        )
        tcb_key, tcb = intermediate("tcb_signing", TCB_SIGNING_CN, ca=False)
        return cls(
            root_key=root_key,
            root_certificate=root,
            processor_ca_key=processor_key,
            processor_ca_certificate=processor,
            platform_ca_key=platform_key,
            platform_ca_certificate=platform,
            tcb_signing_key=tcb_key,
            tcb_signing_certificate=tcb,
        )

    # Certificates and chains -------------------------------------------------------------

    def root_der(self) -> bytes:
        """Return the root certificate in DER, the form verifiers take as trust anchor."""
        return self.root_certificate.public_bytes(serialization.Encoding.DER)

    def root_pem(self) -> str:
        """Return the root certificate in PEM."""
        return _pem(self.root_certificate)

    def pck_ca(self, kind: PckCaKind) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """Return the key and certificate of the PCK CA of ``kind``."""
        if kind is PckCaKind.PROCESSOR:
            return self.processor_ca_key, self.processor_ca_certificate
        return self.platform_ca_key, self.platform_ca_certificate

    def pck_crl_issuer_chain_pem(self, kind: PckCaKind) -> str:
        """Return the PCK CRL issuer chain (PCK CA then root), as PCS serves it."""
        return _pem(self.pck_ca(kind)[1]) + self.root_pem()

    def tcb_signing_chain_pem(self) -> str:
        """Return the TCB info / QE identity issuer chain (TCB signing then root)."""
        return _pem(self.tcb_signing_certificate) + self.root_pem()

    def issue_pck_certificate(
        self,
        *,
        kind: PckCaKind,
        public_key: ec.EllipticCurvePublicKey,
        extension: PckExtension,
        now: datetime,
        serial: int,
        validity: timedelta = PCK_VALIDITY,
    ) -> x509.Certificate:
        """Issue a PCK leaf certificate for a simulated platform.

        The validity starts :data:`CLOCK_SKEW_ALLOWANCE` before ``now`` and ends at the earlier
        of ``now + validity`` and the issuing CA's expiry.

        Args:
            kind: Which PCK CA issues it.
            public_key: The platform's PCK public key.
            extension: The SGX extension contents (FMSPC, TCB, PPID, ...).
            now: Start of validity.
            serial: Serial number (the PCK CRL revokes by serial).
            validity: Requested lifetime.

        Raises:
            ValueError: ``now`` is naive.
        """
        ca_key, ca_certificate = self.pck_ca(kind)
        end = min(_seconds(now) + validity, ca_certificate.not_valid_after_utc)
        start = _seconds(now) - CLOCK_SKEW_ALLOWANCE
        return _issue(
            subject=_name(PCK_LEAF_CN),
            public_key=public_key,
            issuer=ca_certificate.subject,
            issuer_key=ca_key,
            serial=serial,
            not_before=start,
            not_after=end,
            path_length=None,
            ca=False,
            crl_url=f"{_CRL_BASE_URL}/pckcrl?ca={kind.value}&encoding=der",
            extensions=[
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(SGX_EXTENSION_OID), extension.to_der()
                )
            ],
        )

    # CRLs and signatures -----------------------------------------------------------------

    @staticmethod
    def _crl(
        issuer: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        *,
        this_update: datetime,
        next_update: datetime,
        revoked_serials: Iterable[int],
        number: int,
    ) -> bytes:
        """Return a DER CRL with Intel's extensions (CRL number, authority key identifier)."""
        start = _seconds(this_update)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(start)
            .next_update(_seconds(next_update))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
        )
        for serial in sorted(set(revoked_serials)):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(start)
                .build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def root_crl(
        self,
        *,
        this_update: datetime,
        next_update: datetime,
        revoked_serials: Iterable[int] = (),
        number: int = 1,
    ) -> bytes:
        """Return the root CA CRL (DER), optionally revoking intermediates by serial.

        Raises:
            ValueError: A time is naive.
        """
        return self._crl(
            self.root_certificate,
            self.root_key,
            this_update=this_update,
            next_update=next_update,
            revoked_serials=revoked_serials,
            number=number,
        )

    def pck_crl(
        self,
        kind: PckCaKind,
        *,
        this_update: datetime,
        next_update: datetime,
        revoked_serials: Iterable[int] = (),
        number: int = 1,
    ) -> bytes:
        """Return the PCK CRL (DER) of the CA of ``kind``, revoking PCK leaves by serial.

        Raises:
            ValueError: A time is naive.
        """
        key, certificate = self.pck_ca(kind)
        return self._crl(
            certificate,
            key,
            this_update=this_update,
            next_update=next_update,
            revoked_serials=revoked_serials,
            number=number,
        )

    def sign_collateral(self, text: bytes) -> bytes:
        """Sign TCB info or QE identity text with the TCB signing key (64-byte ``r || s``)."""
        return raw_signature(self.tcb_signing_key, text)

    # Persistence -------------------------------------------------------------------------

    def _keys(self) -> dict[str, ec.EllipticCurvePrivateKey]:
        return {
            "root": self.root_key,
            "processor_ca": self.processor_ca_key,
            "platform_ca": self.platform_ca_key,
            "tcb_signing": self.tcb_signing_key,
        }

    def _certificates(self) -> dict[str, x509.Certificate]:
        return {
            "root": self.root_certificate,
            "processor_ca": self.processor_ca_certificate,
            "platform_ca": self.platform_ca_certificate,
            "tcb_signing": self.tcb_signing_certificate,
        }

    def to_json(self, *, wrap: Callable[[bytes], bytes] | None = None) -> bytes:
        """Serialise the PKI (certificates in PEM, private keys PKCS#8).

        Args:
            wrap: Encrypts each PKCS#8 DER private key (for example AES-GCM under a
                key-encryption key); the result is stored base64-encoded. Without it the keys
                are stored as unencrypted PEM, and the file must be protected by its mode.

        Returns:
            Deterministic JSON (sorted keys) as UTF-8 bytes.
        """
        keys: dict[str, str] = {}
        for name, key in self._keys().items():
            if wrap is None:
                keys[name] = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode("ascii")
            else:
                der = key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                keys[name] = base64.b64encode(wrap(der)).decode("ascii")
        document = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "keys_wrapped": wrap is not None,
            "keys": keys,
            "certificates": {name: _pem(cert) for name, cert in self._certificates().items()},
        }
        return json.dumps(document, sort_keys=True, indent=2).encode() + b"\n"

    @classmethod
    def from_json(
        cls, data: bytes | str, *, unwrap: Callable[[bytes], bytes] | None = None
    ) -> SimulationPki:
        """Restore a PKI saved by :meth:`to_json`.

        Args:
            data: The JSON document.
            unwrap: Inverse of the ``wrap`` used when saving; required when keys are wrapped.

        Raises:
            SimulationPkiError: The document is malformed (``simulation_pki.malformed``), the
                keys are wrapped but no ``unwrap`` was given, or ``unwrap`` failed or produced
                keys that do not match the certificates (``simulation_pki.unwrap_failed``).
        """
        try:
            document = json.loads(data)
            header = (document.get("format"), document.get("version"))
            wrapped = document["keys_wrapped"]
            raw_keys = document["keys"]
            raw_certificates = document["certificates"]
            certificates = {
                name: x509.load_pem_x509_certificate(raw_certificates[name].encode("ascii"))
                for name in _PRIVATE_KEY_FIELDS
            }
            encoded_keys = {name: str(raw_keys[name]) for name in _PRIVATE_KEY_FIELDS}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SimulationPkiError(
                f"the simulation PKI document is malformed: {exc}",
                code="simulation_pki.malformed",
            ) from exc
        if header != (_FORMAT, _FORMAT_VERSION):
            raise SimulationPkiError(
                "not a Sanctum simulation PKI document (format or version mismatch)",
                code="simulation_pki.malformed",
            )
        if wrapped is not True and wrapped is not False:
            raise SimulationPkiError(
                "keys_wrapped must be a boolean", code="simulation_pki.malformed"
            )
        if wrapped and unwrap is None:
            raise SimulationPkiError(
                "the simulation PKI keys are encrypted but no key to unwrap them was given",
                code="simulation_pki.unwrap_failed",
            )
        keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        for name, encoded in encoded_keys.items():
            keys[name] = _load_key(name, encoded, unwrap if wrapped else None)
            public = certificates[name].public_key()
            if not isinstance(public, ec.EllipticCurvePublicKey) or public.public_numbers() != (
                keys[name].public_key().public_numbers()
            ):
                raise SimulationPkiError(
                    f"the {name} private key does not match its certificate",
                    code="simulation_pki.unwrap_failed",
                )
        return cls(
            root_key=keys["root"],
            root_certificate=certificates["root"],
            processor_ca_key=keys["processor_ca"],
            processor_ca_certificate=certificates["processor_ca"],
            platform_ca_key=keys["platform_ca"],
            platform_ca_certificate=certificates["platform_ca"],
            tcb_signing_key=keys["tcb_signing"],
            tcb_signing_certificate=certificates["tcb_signing"],
        )


def _load_key(
    name: str, encoded: str, unwrap: Callable[[bytes], bytes] | None
) -> ec.EllipticCurvePrivateKey:
    """Decode one stored private key, unwrapping it when ``unwrap`` is given.

    Raises:
        SimulationPkiError: The key cannot be unwrapped or decoded.
    """
    try:
        if unwrap is None:
            key = serialization.load_pem_private_key(encoded.encode("ascii"), password=None)
        else:
            key = serialization.load_der_private_key(
                unwrap(base64.b64decode(encoded, validate=True)), password=None
            )
    except SanctumError:
        raise
    except Exception as exc:
        # The unwrap function is supplied by the caller (AES-GCM raises InvalidTag, others raise
        # their own errors); whatever it raises means the same thing here, so it is reported
        # as one typed error with the original chained.
        raise SimulationPkiError(
            f"cannot unwrap or decode the simulation PKI {name} key: {type(exc).__name__}",
            code="simulation_pki.unwrap_failed" if unwrap else "simulation_pki.malformed",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SimulationPkiError(
            f"the simulation PKI {name} key is not a P-256 key", code="simulation_pki.malformed"
        )
    return key


def _write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600 through a private temporary file.

    With ``replace`` the file is atomically replaced; without it the file is only created, and a
    file that appeared meanwhile (a concurrent creator) is kept.

    Raises:
        OSError: The file cannot be written.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            temporary.replace(path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_simulation_root(state_dir: Path) -> bytes:
    """Return the DER root certificate of the simulation PKI in ``state_dir``, nothing else.

    This is what a verifier (the Enclave Manager) needs: the trust anchor. It never reads,
    unwraps or writes the private keys, which belong to the platform side (the simulated
    quoting service), so a manager that trusts the simulated platform holds no simulation key.

    Args:
        state_dir: Directory of ``simulation-pki.json``.

    Raises:
        SimulationPkiError: There is no PKI there yet (``simulation_pki.missing``) or the
            document or its root certificate is malformed (``simulation_pki.malformed``).
    """
    path = state_dir / SIMULATION_PKI_FILENAME
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SimulationPkiError(
            f"no simulation PKI at {path}",
            code="simulation_pki.missing",
            hint=(
                "the simulated platform creates it: run `sanctum platform sim-qe serve "
                f"--state-dir {state_dir} ...` (or `sanctum platform quote --simulated "
                f"--state-dir {state_dir} ...`) once before starting the manager"
            ),
        ) from exc
    try:
        document = json.loads(data)
        if (document.get("format"), document.get("version")) != (_FORMAT, _FORMAT_VERSION):
            raise ValueError("unknown format or version")  # noqa: TRY301 (one error path)
        root = x509.load_pem_x509_certificate(document["certificates"]["root"].encode("ascii"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SimulationPkiError(
            f"the simulation PKI document {path} is malformed: {exc}",
            code="simulation_pki.malformed",
        ) from exc
    return root.public_bytes(serialization.Encoding.DER)


def load_or_create_simulation_pki(
    state_dir: Path,
    *,
    now: datetime,
    wrap: Callable[[bytes], bytes] | None = None,
    unwrap: Callable[[bytes], bytes] | None = None,
) -> SimulationPki:
    """Return the installation's simulation PKI, creating and persisting it the first time.

    The PKI lives in ``state_dir/simulation-pki.json`` with mode 0600. Creation is race-free:
    the document is written to a private temporary file and hard-linked into place, so when two
    processes race, both end up using the one that won. A file stored with unencrypted keys is
    rewritten with wrapped keys as soon as a ``wrap`` function is supplied.

    Args:
        state_dir: Directory for the file (created with mode 0700 if missing).
        now: Creation time when a new PKI is made.
        wrap: Encrypts private keys before they are written (see :meth:`SimulationPki.to_json`).
        unwrap: Decrypts them when an existing file is read.

    Raises:
        SimulationPkiError: The existing file is malformed, cannot be unwrapped, or its keys are
            stored unencrypted in a file readable by group or others
            (``simulation_pki.insecure_permissions``).
        OSError: The state directory or the file cannot be created or written.
    """
    path = state_dir / SIMULATION_PKI_FILENAME
    if not path.exists():
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(path, SimulationPki.create(now=now).to_json(wrap=wrap), replace=False)
    data = path.read_bytes()
    mode = path.stat().st_mode & 0o777
    pki = SimulationPki.from_json(data, unwrap=unwrap)
    wrapped = json.loads(data)["keys_wrapped"]
    if mode & 0o077 and not wrapped:
        raise SimulationPkiError(
            f"{path} holds unencrypted private keys but has mode {mode:04o}; expected 0600",
            code="simulation_pki.insecure_permissions",
            hint=f"chmod 600 {path}",
        )
    if wrap is not None and not wrapped:
        _write_private(path, pki.to_json(wrap=wrap), replace=True)
    return pki
