"""The Sanctum enclave manifest: what a shielded workload is allowed to be and do.

The enclave manifest (format ``sanctum.enclave-manifest/v1``, documented in
``docs/enclave-manifest.md``) is written by the converter into every shielded image as
``/sanctum/manifest.json`` next to its SIGSTRUCT ``/sanctum/manifest.sigstruct``. It freezes the
original entrypoint and arguments, the environment, which host variables may pass through, the
directories that are encrypted or writable, the enclave size and threads, the SHA-256 of every
trusted file, the Enclave Manager's URL and CA pin, where certificates go, and the SGX identity
(isvprodid, isvsvn, debug). Its canonical encoding (:mod:`sanctum.converter.measurement`) is
measured; on the simulated target the measurement is the ``mrenclave`` the SIGSTRUCT signs.

This module is pure and is imported by the launcher inside the enclave: it must never import
anything from :mod:`sanctum.manager`, and it keeps to the standard library and ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sanctum.converter.manifest_errors import ManifestError
from sanctum.converter.measurement import canonical_json, measure_canonical
from sanctum.converter.sigstruct import Sigstruct, parse_sigstruct, sign_sigstruct

__all__ = [
    "DEFAULT_LAUNCHER_PATH",
    "SCHEMA",
    "CaCertificateSpec",
    "CertificateSpec",
    "EnclaveManifest",
    "EnclaveSpec",
    "ManagerSpec",
    "SignedManifest",
    "Target",
    "ca_pin_from_certificate",
    "parse_manifest",
    "sign_manifest",
    "verify_signed_manifest",
]

#: Schema identifier written in every manifest; a new incompatible format gets a new one.
SCHEMA: Final = "sanctum.enclave-manifest/v1"
#: Where the converter puts the launcher in the shielded image.
DEFAULT_LAUNCHER_PATH: Final = "/sanctum/launcher"

Target = Literal["simulated", "gramine-sgx"]
_TARGETS: Final = ("simulated", "gramine-sgx")
_SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
_PIN: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
_ENV_NAME: Final = re.compile(r"^[^=\x00]+$")
_KEY_TYPES: Final = {"rsa": (2048, 3072, 4096), "ec": (256, 384)}
_T = TypeVar("_T")


def _fail(message: str, code: str = "manifest.schema") -> ManifestError:
    """Return a schema error (the caller raises it)."""
    return ManifestError(message, code=code)


def _check_path(path: str, what: str) -> str:
    """Return ``path`` if it is an absolute, normalised POSIX path.

    Raises:
        ManifestError: The path is relative, not normalised or holds a NUL byte.
    """
    if (
        not path.startswith("/")
        or "\x00" in path
        or posixpath.normpath(path) != path
        or path.startswith("//")
    ):
        raise _fail(f"{what} {path!r} is not an absolute, normalised path")
    return path


@dataclass(frozen=True, slots=True)
class EnclaveSpec:
    """The enclave's SGX shape and identity.

    Attributes:
        size: Enclave size in bytes (a power of two).
        threads: Maximum number of enclave threads.
        debug: Debug enclave (memory readable by a debugger; never for production).
        isvprodid: Product ID, 0-65535.
        isvsvn: Security version, 0-65535.
    """

    size: int
    threads: int
    debug: bool
    isvprodid: int
    isvsvn: int

    def __post_init__(self) -> None:
        """Check the ranges.

        Raises:
            ManifestError: A value is out of range.
        """
        if self.size <= 0 or self.size & (self.size - 1):
            raise _fail(f"enclave size {self.size} is not a power of two")
        if not 1 <= self.threads <= 65535:
            raise _fail(f"enclave threads {self.threads} is not in 1-65535")
        for name in ("isvprodid", "isvsvn"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFF:
                raise _fail(f"{name} {value} is not in 0-65535")


@dataclass(frozen=True, slots=True)
class ManagerSpec:
    """How the launcher reaches and authenticates the Enclave Manager.

    Attributes:
        url: The manager's HTTPS URL, or ``None`` to take it from ``SANCTUM_MANAGER_URL`` at
            start (safe because the CA pin authenticates whatever answers).
        ca_pin: ``sha256:<hex>`` of the DER SubjectPublicKeyInfo of the manager's CA, or ``None``
            for offline builds (the launcher then refuses to attest until one is configured).
    """

    url: str | None = None
    ca_pin: str | None = None

    def __post_init__(self) -> None:
        """Check the URL scheme and the pin format.

        Raises:
            ManifestError: Not an https URL, or not a ``sha256:`` pin.
        """
        if self.url is not None and not self.url.startswith("https://"):
            raise _fail(f"manager URL {self.url!r} is not an https:// URL")
        if self.ca_pin is not None and not _PIN.match(self.ca_pin):
            raise _fail(f"manager CA pin {self.ca_pin!r} is not 'sha256:' + 64 lowercase hex")


@dataclass(frozen=True, slots=True)
class CertificateSpec:
    """A certificate the launcher obtains from the manager and writes for the app.

    Attributes:
        key_path: Where the private key is written (mode 0600).
        cert_path: Where the leaf certificate is written.
        chain_path: Where the chain is written, or ``None``.
        subject: Common name asked for, or ``None`` to let the manager use the app's domain.
        alt_names: Subject alternative names asked for (``DNS:…``/``IP:…``).
        key_type: ``rsa`` or ``ec``.
        key_size: Bits (RSA 2048/3072/4096; EC 256/384).
        issuer: Issuance strategy; ``MANAGER_CA`` (the account CA) is the only one today.
    """

    key_path: str
    cert_path: str
    chain_path: str | None = None
    subject: str | None = None
    alt_names: tuple[str, ...] = ()
    key_type: str = "ec"
    key_size: int = 256
    issuer: str = "MANAGER_CA"

    def __post_init__(self) -> None:
        """Check paths and key parameters.

        Raises:
            ManifestError: A relative path or an unsupported key type/size.
        """
        _check_path(self.key_path, "certificate keyPath")
        _check_path(self.cert_path, "certificate certPath")
        if self.chain_path is not None:
            _check_path(self.chain_path, "certificate chainPath")
        if self.key_size not in _KEY_TYPES.get(self.key_type, ()):
            raise _fail(f"certificate key {self.key_type}-{self.key_size} is not supported")
        if self.issuer != "MANAGER_CA":
            raise _fail(f"certificate issuer {self.issuer!r} is not supported (MANAGER_CA)")


@dataclass(frozen=True, slots=True)
class CaCertificateSpec:
    """Where the launcher puts the manager's CA certificate for the app.

    Attributes:
        ca_path: File the CA certificate (PEM) is written to, or ``None``.
        system: Also install it into the image's system trust store.
    """

    ca_path: str | None = None
    system: bool = False

    def __post_init__(self) -> None:
        """Check the path.

        Raises:
            ManifestError: A relative path.
        """
        if self.ca_path is not None:
            _check_path(self.ca_path, "caCertificates caPath")


def _frozen_map(items: Mapping[str, str]) -> Mapping[str, str]:
    """Return a read-only copy of ``items`` with sorted keys."""
    return MappingProxyType(dict(sorted(items.items())))


@dataclass(frozen=True, slots=True)
class EnclaveManifest:
    """A Sanctum enclave manifest (``sanctum.enclave-manifest/v1``).

    Attributes:
        target: ``simulated`` or ``gramine-sgx``.
        entrypoint: The original entrypoint (image ENTRYPOINT, or the override).
        args: The original arguments (image CMD, or the override).
        workdir: Working directory of the app.
        user: ``user[:group]`` the app runs as (empty: the image default, root).
        env: The frozen environment (image env + ``manifestEnv``).
        allow_cmdline_args: Whether run-time arguments may replace ``args``.
        host_env_passthrough: Host variables that may pass through to the app.
        encrypted_dirs: Directories encrypted with a key provisioned after attestation.
        rw_dirs: Writable in-enclave directories (tmpfs; never persisted).
        enclave: Size, threads, debug and the SGX identity.
        trusted_files: Path → SHA-256 (hex) of every regular file the app may read.
        symlinks: Path → link target of every symbolic link of the image.
        manager: Manager URL and CA pin.
        certificates: Certificates the launcher obtains and writes.
        ca_certificates: Where the manager's CA goes.
        app: The application name in the manager, if any.
        launcher: Path of the launcher in the image.
    """

    target: Target
    entrypoint: tuple[str, ...]
    args: tuple[str, ...]
    workdir: str
    user: str
    env: Mapping[str, str]
    allow_cmdline_args: bool
    host_env_passthrough: tuple[str, ...]
    encrypted_dirs: tuple[str, ...]
    rw_dirs: tuple[str, ...]
    enclave: EnclaveSpec
    trusted_files: Mapping[str, str]
    symlinks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    manager: ManagerSpec = field(default_factory=ManagerSpec)
    certificates: tuple[CertificateSpec, ...] = ()
    ca_certificates: tuple[CaCertificateSpec, ...] = ()
    app: str | None = None
    launcher: str = DEFAULT_LAUNCHER_PATH

    def __post_init__(self) -> None:
        """Validate and freeze the fields.

        Raises:
            ManifestError: A field breaks the format's rules (code ``manifest.schema``).
        """
        if self.target not in _TARGETS:
            raise _fail(f"target {self.target!r} is not one of {', '.join(_TARGETS)}")
        if not self.entrypoint or not self.entrypoint[0]:
            raise _fail("the manifest has no entrypoint")
        _check_path(self.workdir, "workdir")
        _check_path(self.launcher, "launcher")
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise _fail(f"environment variable name {name!r} is invalid")
        for name in self.host_env_passthrough:
            if not _ENV_NAME.match(name):
                raise _fail(f"host environment variable name {name!r} is invalid")
        for text in (*self.entrypoint, *self.args, *self.env.values(), self.user):
            if "\x00" in text:
                raise _fail("a NUL byte in the entrypoint, arguments, user or environment")
        for directory in (*self.encrypted_dirs, *self.rw_dirs):
            _check_path(directory, "directory")
            if directory == "/":
                raise _fail("the root directory cannot be an encrypted or writable directory")
        overlap = set(self.encrypted_dirs) & set(self.rw_dirs)
        if overlap:
            raise _fail(f"directories both encrypted and writable: {sorted(overlap)}")
        for path, digest in self.trusted_files.items():
            _check_path(path, "trusted file")
            if not _SHA256_HEX.match(digest):
                raise _fail(f"trusted file {path} has no lowercase hex SHA-256")
        for path in self.symlinks:
            _check_path(path, "symlink")
        # Freeze mappings and sort the sets, so equal manifests compare and encode equal.
        object.__setattr__(self, "env", _frozen_map(self.env))
        object.__setattr__(self, "trusted_files", _frozen_map(self.trusted_files))
        object.__setattr__(self, "symlinks", _frozen_map(self.symlinks))
        object.__setattr__(self, "entrypoint", tuple(self.entrypoint))
        object.__setattr__(self, "args", tuple(self.args))
        for name in ("host_env_passthrough", "encrypted_dirs", "rw_dirs"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form (camelCase keys), ready for :func:`canonical_json`."""
        return {
            "schema": SCHEMA,
            "target": self.target,
            "app": self.app,
            "entrypoint": list(self.entrypoint),
            "args": list(self.args),
            "workdir": self.workdir,
            "user": self.user,
            "env": dict(self.env),
            "allowCmdlineArgs": self.allow_cmdline_args,
            "hostEnvPassthrough": list(self.host_env_passthrough),
            "encryptedDirs": list(self.encrypted_dirs),
            "rwDirs": list(self.rw_dirs),
            "enclave": {
                "size": self.enclave.size,
                "threads": self.enclave.threads,
                "debug": self.enclave.debug,
                "isvprodid": self.enclave.isvprodid,
                "isvsvn": self.enclave.isvsvn,
            },
            "trustedFiles": dict(self.trusted_files),
            "symlinks": dict(self.symlinks),
            "manager": {"url": self.manager.url, "caPin": self.manager.ca_pin},
            "certificates": [
                {
                    "keyPath": cert.key_path,
                    "certPath": cert.cert_path,
                    "chainPath": cert.chain_path,
                    "subject": cert.subject,
                    "altNames": list(cert.alt_names),
                    "keyType": cert.key_type,
                    "keySize": cert.key_size,
                    "issuer": cert.issuer,
                }
                for cert in self.certificates
            ],
            "caCertificates": [
                {"caPath": ca.ca_path, "system": ca.system} for ca in self.ca_certificates
            ],
            "launcher": self.launcher,
        }

    def canonical_bytes(self) -> bytes:
        """Return the canonical encoding, the exact bytes of ``/sanctum/manifest.json``.

        Raises:
            ManifestError: A string is not NFC or otherwise has no canonical form.
        """
        return canonical_json(self.to_dict())

    def measurement(self) -> bytes:
        """Return the simulated ``mrenclave``: SHA-256 of :meth:`canonical_bytes`.

        Raises:
            ManifestError: The manifest has no canonical form.
        """
        return measure_canonical(self.canonical_bytes())


def ca_pin_from_certificate(certificate: bytes) -> str:
    """Return the manifest's CA pin for a CA certificate: ``sha256:`` + SHA-256 of its SPKI (DER).

    Pinning the public key (not the certificate) keeps the pin valid when the CA certificate is
    re-issued with the same key.

    Args:
        certificate: The CA certificate, PEM or DER.

    Raises:
        ManifestError: The bytes are not an X.509 certificate (code ``manifest.malformed``).
    """
    try:
        cert = (
            x509.load_pem_x509_certificate(certificate)
            if certificate.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(certificate)
        )
    except ValueError as error:
        raise _fail(f"not an X.509 certificate: {error}", "manifest.malformed") from error
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


# Parsing ---------------------------------------------------------------------------------------

_TOP_KEYS: Final = frozenset(EnclaveManifest(
    target="simulated", entrypoint=("/x",), args=(), workdir="/", user="", env={},
    allow_cmdline_args=False, host_env_passthrough=(), encrypted_dirs=(), rw_dirs=(),
    enclave=EnclaveSpec(size=1, threads=1, debug=False, isvprodid=0, isvsvn=0),
    trusted_files={},
).to_dict())  # fmt: skip


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """Build a JSON object, refusing duplicate keys.

    Raises:
        ManifestError: A key appears twice.
    """
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _fail(f"duplicate key {key!r}", "manifest.malformed")
        out[key] = value
    return out


def _no_float(text: str) -> object:
    """Refuse JSON numbers with a fraction or exponent.

    Raises:
        ManifestError: Always.
    """
    raise _fail(f"floating-point number {text} in the manifest", "manifest.malformed")


def _obj(value: object, where: str, keys: frozenset[str]) -> dict[str, object]:
    """Return ``value`` as an object with exactly ``keys``.

    Raises:
        ManifestError: Not an object, or missing/unknown keys.
    """
    if not isinstance(value, dict):
        raise _fail(f"{where} is not an object")
    found = frozenset(value)
    if found != keys:
        missing, unknown = sorted(keys - found), sorted(found - keys)
        raise _fail(f"{where}: missing keys {missing}, unknown keys {unknown}")
    return cast("dict[str, object]", value)


def _typed(value: object, kind: type[_T], where: str, *, optional: bool = False) -> _T:
    """Return ``value`` if it has type ``kind`` (bool is not an int here).

    Raises:
        ManifestError: Wrong type.
    """
    if value is None and optional:
        return cast("_T", value)
    if isinstance(value, bool) and kind is not bool:
        raise _fail(f"{where} must be {kind.__name__}, not a boolean")
    if not isinstance(value, kind):
        raise _fail(f"{where} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    """Return a JSON array of strings as a tuple.

    Raises:
        ManifestError: Not an array of strings.
    """
    items = _typed(value, list, where)
    return tuple(_typed(item, str, f"{where}[{i}]") for i, item in enumerate(items))


def _string_map(value: object, where: str) -> dict[str, str]:
    """Return a JSON object of strings.

    Raises:
        ManifestError: Not an object of strings.
    """
    items = _typed(value, dict, where)
    return {key: _typed(item, str, f"{where}.{key}") for key, item in items.items()}


def _from_dict(doc: dict[str, object]) -> EnclaveManifest:
    """Build a manifest from its decoded JSON object.

    Raises:
        ManifestError: The object does not follow the schema.
    """
    if doc.get("schema") != SCHEMA:
        raise _fail(f"unsupported manifest schema {doc.get('schema')!r}; expected {SCHEMA!r}")
    top = _obj(doc, "manifest", _TOP_KEYS)
    enclave = _obj(
        top["enclave"], "enclave", frozenset({"size", "threads", "debug", "isvprodid", "isvsvn"})
    )
    manager = _obj(top["manager"], "manager", frozenset({"url", "caPin"}))
    cert_keys = frozenset(
        {"keyPath", "certPath", "chainPath", "subject", "altNames", "keyType", "keySize", "issuer"}
    )
    certificates = []
    for i, raw in enumerate(_typed(top["certificates"], list, "certificates")):
        cert = _obj(raw, f"certificates[{i}]", cert_keys)
        certificates.append(
            CertificateSpec(
                key_path=_typed(cert["keyPath"], str, "keyPath"),
                cert_path=_typed(cert["certPath"], str, "certPath"),
                chain_path=_typed(cert["chainPath"], str, "chainPath", optional=True),
                subject=_typed(cert["subject"], str, "subject", optional=True),
                alt_names=_strings(cert["altNames"], "altNames"),
                key_type=_typed(cert["keyType"], str, "keyType"),
                key_size=_typed(cert["keySize"], int, "keySize"),
                issuer=_typed(cert["issuer"], str, "issuer"),
            )
        )
    cas = []
    for i, raw in enumerate(_typed(top["caCertificates"], list, "caCertificates")):
        ca = _obj(raw, f"caCertificates[{i}]", frozenset({"caPath", "system"}))
        cas.append(
            CaCertificateSpec(
                ca_path=_typed(ca["caPath"], str, "caPath", optional=True),
                system=_typed(ca["system"], bool, "system"),
            )
        )
    target = _typed(top["target"], str, "target")
    if target not in _TARGETS:
        raise _fail(f"target {target!r} is not one of {', '.join(_TARGETS)}")
    return EnclaveManifest(
        target=cast("Target", target),
        app=_typed(top["app"], str, "app", optional=True),
        entrypoint=_strings(top["entrypoint"], "entrypoint"),
        args=_strings(top["args"], "args"),
        workdir=_typed(top["workdir"], str, "workdir"),
        user=_typed(top["user"], str, "user"),
        env=_string_map(top["env"], "env"),
        allow_cmdline_args=_typed(top["allowCmdlineArgs"], bool, "allowCmdlineArgs"),
        host_env_passthrough=_strings(top["hostEnvPassthrough"], "hostEnvPassthrough"),
        encrypted_dirs=_strings(top["encryptedDirs"], "encryptedDirs"),
        rw_dirs=_strings(top["rwDirs"], "rwDirs"),
        enclave=EnclaveSpec(
            size=_typed(enclave["size"], int, "enclave.size"),
            threads=_typed(enclave["threads"], int, "enclave.threads"),
            debug=_typed(enclave["debug"], bool, "enclave.debug"),
            isvprodid=_typed(enclave["isvprodid"], int, "enclave.isvprodid"),
            isvsvn=_typed(enclave["isvsvn"], int, "enclave.isvsvn"),
        ),
        trusted_files=_string_map(top["trustedFiles"], "trustedFiles"),
        symlinks=_string_map(top["symlinks"], "symlinks"),
        manager=ManagerSpec(
            url=_typed(manager["url"], str, "manager.url", optional=True),
            ca_pin=_typed(manager["caPin"], str, "manager.caPin", optional=True),
        ),
        certificates=tuple(certificates),
        ca_certificates=tuple(cas),
        launcher=_typed(top["launcher"], str, "launcher"),
    )


def parse_manifest(data: bytes) -> EnclaveManifest:
    """Parse an enclave manifest and check that ``data`` is its canonical encoding.

    Args:
        data: The bytes of ``manifest.json``.

    Returns:
        The manifest.

    Raises:
        ManifestError: Not UTF-8 JSON, duplicate keys or floats (``manifest.malformed``), not the
            schema (``manifest.schema``), or not byte-for-byte canonical
            (``manifest.not_canonical``).
    """
    try:
        doc = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_float=_no_float
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _fail(f"the manifest is not UTF-8 JSON: {error}", "manifest.malformed") from error
    if not isinstance(doc, dict):
        raise _fail("the manifest is not a JSON object", "manifest.malformed")
    manifest = _from_dict(doc)
    if manifest.canonical_bytes() != data:
        raise _fail(
            "the manifest bytes are not its canonical encoding (re-serialised or edited?)",
            "manifest.not_canonical",
        )
    return manifest


# Signing and verification ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedManifest:
    """A manifest with the exact bytes written to the image and its SIGSTRUCT.

    Attributes:
        manifest: The manifest.
        manifest_bytes: Its canonical encoding (``/sanctum/manifest.json``).
        sigstruct: The SIGSTRUCT (``/sanctum/manifest.sigstruct``).
    """

    manifest: EnclaveManifest
    manifest_bytes: bytes
    sigstruct: Sigstruct

    @property
    def mrenclave(self) -> bytes:
        """The enclave measurement the SIGSTRUCT signs."""
        return self.sigstruct.mrenclave

    @property
    def mrsigner(self) -> bytes:
        """The signer identity (SHA-256 of the modulus, little-endian)."""
        return self.sigstruct.mrsigner


def sign_manifest(
    manifest: EnclaveManifest, *, key: rsa.RSAPrivateKey, date: dt.date
) -> SignedManifest:
    """Sign a simulated-target manifest: SIGSTRUCT.ENCLAVEHASH = SHA-256(canonical manifest).

    Gramine-target manifests are signed by ``gramine-sgx-sign`` (see
    :mod:`sanctum.converter.gramine`), whose MRENCLAVE covers the manifest as a trusted file.

    Args:
        manifest: The manifest (target ``simulated``).
        key: RSA-3072, exponent-3 signing key.
        date: Date written into the SIGSTRUCT.

    Returns:
        The signed manifest.

    Raises:
        ManifestError: The manifest is for another target or has no canonical form.
        SigningKeyError: The key cannot sign SGX enclaves.
    """
    if manifest.target != "simulated":
        raise _fail(
            f"only simulated manifests are signed directly; {manifest.target} uses its tools"
        )
    data = manifest.canonical_bytes()
    sigstruct = sign_sigstruct(
        key=key,
        enclavehash=measure_canonical(data),
        isvprodid=manifest.enclave.isvprodid,
        isvsvn=manifest.enclave.isvsvn,
        debug=manifest.enclave.debug,
        date=date,
    )
    return SignedManifest(manifest=manifest, manifest_bytes=data, sigstruct=sigstruct)


def verify_signed_manifest(
    manifest_bytes: bytes,
    sigstruct_bytes: bytes,
    *,
    expected_mrsigner: bytes | None = None,
) -> EnclaveManifest:
    """Verify a manifest against its SIGSTRUCT and return it.

    Checks, in order: the SIGSTRUCT parses and its RSA signature and q1/q2 verify; the manifest is
    canonical and follows the schema; isvprodid, isvsvn and debug agree between both; on the
    simulated target, SIGSTRUCT.ENCLAVEHASH equals SHA-256 of the manifest bytes (on
    ``gramine-sgx`` the MRENCLAVE is Gramine's page measurement, which covers the manifest as a
    trusted file and is enforced by the hardware); finally, when given, MRSIGNER equals
    ``expected_mrsigner`` (compared in constant time).

    Args:
        manifest_bytes: The bytes of ``manifest.json``.
        sigstruct_bytes: The bytes of ``manifest.sigstruct``.
        expected_mrsigner: The signer the caller trusts, if it pins one.

    Returns:
        The verified manifest.

    Raises:
        SigstructError: The SIGSTRUCT is malformed or badly signed.
        ManifestError: The manifest is malformed (``manifest.malformed``, ``manifest.schema``,
            ``manifest.not_canonical``), its identity differs from the SIGSTRUCT's
            (``manifest.identity_mismatch``), its measurement differs
            (``manifest.measurement_mismatch``) or the signer is not the expected one
            (``manifest.signer_mismatch``).
    """
    sigstruct = parse_sigstruct(sigstruct_bytes)
    manifest = parse_manifest(manifest_bytes)
    identity = (manifest.enclave.isvprodid, manifest.enclave.isvsvn, manifest.enclave.debug)
    if identity != (sigstruct.isvprodid, sigstruct.isvsvn, sigstruct.debug):
        raise ManifestError(
            f"the manifest says isvprodid/isvsvn/debug = {identity}, the SIGSTRUCT says "
            f"{(sigstruct.isvprodid, sigstruct.isvsvn, sigstruct.debug)}",
            code="manifest.identity_mismatch",
        )
    if manifest.target == "simulated" and not hmac.compare_digest(
        measure_canonical(manifest_bytes), sigstruct.mrenclave
    ):
        raise ManifestError(
            "the manifest's measurement is not the MRENCLAVE its SIGSTRUCT signs "
            "(the manifest or the SIGSTRUCT was replaced)",
            code="manifest.measurement_mismatch",
        )
    if expected_mrsigner is not None and not hmac.compare_digest(
        sigstruct.mrsigner, expected_mrsigner
    ):
        raise ManifestError(
            f"the manifest is signed by MRSIGNER {sigstruct.mrsigner.hex()}, not the expected "
            f"{expected_mrsigner.hex()}",
            code="manifest.signer_mismatch",
        )
    return manifest
