"""The launcher's sequence: verify, attest, provision, then ``execve`` the app.

:func:`prepare` does everything up to the exec and returns a :class:`LaunchPlan`;
:func:`exec_plan` replaces the process with the app. Side effects sit behind parameters
(evidence source factory, manager link factory, clock, sleep, exec) so that tests run the real
sequence with fakes or a local TLS server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sanctum import __version__
from sanctum.converter.manifest import EnclaveManifest, verify_signed_manifest
from sanctum.converter.sigstruct import Sigstruct, parse_sigstruct
from sanctum.errors import EvidenceError, SanctumError, UnavailableError
from sanctum.launcher.errors import (
    AttestationRefusedError,
    LauncherConfigError,
)
from sanctum.launcher.files import check_trusted_files, in_root, install_system_ca, write_atomic
from sanctum.launcher.manager_link import (
    ManagerLink,
    find_pinned_ca,
    peer_chain,
    pinned_ssl_context,
)
from sanctum.launcher.policy import (
    AppUser,
    build_argv,
    build_env,
    check_secret_paths,
    enclave_protected_dirs,
    resolve_user,
    split_san,
)
from sanctum.platforms.evidence import EvidenceSource
from sanctum.protocol.messages import AttestRequest, AttestResponse, Collateral
from sanctum.protocol.workload import (
    WorkloadKey,
    WorkloadKeyKind,
    build_csr,
    generate_workload_key,
    workload_report_data,
)

if TYPE_CHECKING:
    # Imported when a manifest lists encrypted directories (FUSE and its stack cost start-up).
    from sanctum.launcher.encrypted import OpenedDirectory

__all__ = [
    "MANIFEST_PATH",
    "SIGSTRUCT_PATH",
    "LaunchPlan",
    "LauncherSettings",
    "RenewalContext",
    "StepLog",
    "certificate_not_before",
    "choose_evidence_source",
    "exec_plan",
    "prepare",
    "read_image_file",
    "renew_once",
]

MANIFEST_PATH: Final = "/sanctum/manifest.json"
SIGSTRUCT_PATH: Final = "/sanctum/manifest.sigstruct"
_PLATFORMS: Final = ("auto", "gramine", "configfs-tsm", "simulated")
_RETRYABLE_REFUSALS: Final = frozenset({"attest.nonce_invalid"})
_log = logging.getLogger(__name__)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class LauncherSettings:
    """Run-time settings of the launcher (from its environment and options).

    Attributes:
        root: Root directory the image's paths are resolved under (``/`` in a container).
        manager_url: ``SANCTUM_MANAGER_URL``; wins over the manifest's URL (the CA pin
            authenticates whatever answers, so redirecting is safe).
        manager_ca_file: ``SANCTUM_MANAGER_CA``: a PEM file offering the manager's CA (checked
            against the pin like the one the handshake presents).
        platform: ``SANCTUM_PLATFORM``: ``auto``, ``gramine``, ``configfs-tsm`` or ``simulated``.
        sim_qe: ``SANCTUM_SIM_QE``: the host's simulated quoting service (``unix:PATH`` or a
            loopback ``http://`` URL).
        instance: ``SANCTUM_INSTANCE``: stable id of this workload instance (default hostname).
        dry_run: Verify and show the plan; no network, no writes, no exec.
        unsafe_offline: ``SANCTUM_UNSAFE_OFFLINE``: skip attestation entirely (no certificate, no
            secrets); for converter tests and debugging only.
        max_attempts: Attempts for retryable failures (at least 1).
        backoff_initial: First retry delay in seconds (doubles each time).
        backoff_max: Largest retry delay in seconds.
        timeout: Network timeout in seconds.
        runtime_args: Arguments for the app given at run time.
        token_file: ``SANCTUM_TOKEN_FILE``: image path where the attestation result token is
            written (mode 0600), for relying parties and demos; not written when unset.
        renew: ``SANCTUM_RENEW``: run the renewal supervisor, which re-attests when two thirds
            of the certificate's lifetime have passed and rewrites the files atomically.
    """

    root: Path = Path("/")
    manager_url: str | None = None
    manager_ca_file: str | None = None
    platform: str = "auto"
    sim_qe: str | None = None
    instance: str | None = None
    dry_run: bool = False
    unsafe_offline: bool = False
    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    timeout: float = 15.0
    runtime_args: tuple[str, ...] = ()
    token_file: str | None = None
    renew: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> LauncherSettings:
        """Read the settings from ``env`` (``SANCTUM_*`` variables); ``overrides`` win.

        Raises:
            LauncherConfigError: A value is invalid (``launcher.config_invalid``).
        """
        platform = env.get("SANCTUM_PLATFORM", "auto") or "auto"
        if platform not in _PLATFORMS:
            raise LauncherConfigError(
                f"SANCTUM_PLATFORM={platform!r} is not one of {', '.join(_PLATFORMS)}"
            )
        try:
            attempts = int(env.get("SANCTUM_ATTEST_ATTEMPTS", "5"))
        except ValueError as error:
            raise LauncherConfigError("SANCTUM_ATTEST_ATTEMPTS must be an integer") from error
        settings = cls(
            root=Path(env.get("SANCTUM_ROOT", "/") or "/"),
            manager_url=env.get("SANCTUM_MANAGER_URL") or None,
            manager_ca_file=env.get("SANCTUM_MANAGER_CA") or None,
            platform=platform,
            sim_qe=env.get("SANCTUM_SIM_QE") or None,
            instance=env.get("SANCTUM_INSTANCE") or None,
            dry_run=_truthy(env.get("SANCTUM_DRY_RUN")),
            unsafe_offline=_truthy(env.get("SANCTUM_UNSAFE_OFFLINE")),
            max_attempts=max(1, min(attempts, 20)),
            token_file=env.get("SANCTUM_TOKEN_FILE") or None,
            renew=_truthy(env.get("SANCTUM_RENEW")),
        )
        return dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]


class StepLog:
    """Short, timed log lines on standard error: ``sanctum-launcher: [  12 ms] what``."""

    def __init__(
        self, stream: TextIO | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        """Log to ``stream`` (standard error) with ``clock`` (``time.perf_counter``)."""
        self._stream = stream or sys.stderr
        self._clock = clock or time.perf_counter
        self.started = self._clock()
        self.timings: dict[str, float] = {}

    def line(self, text: str) -> None:
        """Write one line with the time since start."""
        elapsed = (self._clock() - self.started) * 1000
        self._stream.write(f"sanctum-launcher: [{elapsed:6.0f} ms] {text}\n")
        self._stream.flush()

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Time a step; the caller appends its result text to the yielded list."""
        begin = self._clock()
        result: list[str] = []
        yield result
        took = (self._clock() - begin) * 1000
        self.timings[name] = took
        suffix = f": {result[0]}" if result else ""
        self.line(f"{name}{suffix} ({took:.0f} ms)")


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """What the launcher is about to exec.

    Attributes:
        path: The executable's path (inside the image).
        argv: The app's argv.
        env: The app's environment.
        workdir: Working directory.
        user: Numeric user to switch to (None: stay as is).
        written: Image paths the launcher wrote (certificates, secrets).
        simulated: Whether the evidence was simulated.
        token: The attestation result token (None offline or in dry runs).
        renewal: What the renewal supervisor needs (None unless renewal is on).
        encrypted_dirs: The encrypted directories opened for the app (FUSE mounts stay up
            until the app exits).
    """

    path: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    user: AppUser | None
    written: tuple[str, ...] = ()
    simulated: bool = False
    token: str | None = field(default=None, repr=False)
    renewal: RenewalContext | None = field(default=None, repr=False)
    encrypted_dirs: tuple[OpenedDirectory, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class RenewalContext:
    """What the renewal supervisor needs to re-attest with the same in-memory key.

    Attributes:
        settings: The launcher settings.
        manifest: The verified manifest.
        source: The evidence source.
        link_factory: Builds the pinned link to the manager.
        url: The manager URL.
        pin: The manager CA pin.
        app: The app name.
        key: The workload key (never written anywhere but the configured key path).
        csr: The CSR for ``key``.
        owner: The app's user (file ownership).
        expires_at: When the current certificate expires.
        issued_at: When the current certificate became valid.
    """

    settings: LauncherSettings
    manifest: EnclaveManifest
    source: EvidenceSource
    link_factory: LinkFactory
    url: str
    pin: str
    app: str
    key: WorkloadKey = field(repr=False)
    csr: str = field(repr=False)
    owner: AppUser | None
    expires_at: dt.datetime
    issued_at: dt.datetime


class LinkFactory(Protocol):
    """Builds the link to the manager (tests inject their own)."""

    def __call__(self, url: str, pin: str, settings: LauncherSettings) -> ManagerLink:
        """Return a link to ``url`` authenticated by ``pin``."""
        ...


def pinned_link(url: str, pin: str, settings: LauncherSettings) -> ManagerLink:
    """Return a :class:`ManagerLink` whose only trust anchor is the CA matching ``pin``.

    Raises:
        ManagerUnavailableError: The manager cannot be reached.
        EvidenceError: No offered CA matches the pin (``launcher.ca_pin_mismatch``).
        LauncherConfigError: ``SANCTUM_MANAGER_CA`` cannot be read.
    """
    candidates: list[x509.Certificate] = []
    if settings.manager_ca_file:
        try:
            candidates += x509.load_pem_x509_certificates(
                Path(settings.manager_ca_file).read_bytes()
            )
        except (OSError, ValueError) as error:
            raise LauncherConfigError(
                f"SANCTUM_MANAGER_CA={settings.manager_ca_file} is not a readable PEM file",
                code="launcher.manager_ca_invalid",
            ) from error
    try:
        ca = find_pinned_ca(candidates, pin)
    except EvidenceError:
        ca = find_pinned_ca(peer_chain(url, timeout=settings.timeout), pin)
    return ManagerLink(url, pinned_ssl_context(ca), timeout=settings.timeout)


def _key_kind(manifest: EnclaveManifest) -> WorkloadKeyKind:
    """Return the workload key type the manifest's first certificate asks for.

    Raises:
        LauncherConfigError: An unsupported type (``launcher.key_type_unsupported``).
    """
    if not manifest.certificates:
        return "ec-p256"
    spec = manifest.certificates[0]
    kinds: dict[tuple[str, int], WorkloadKeyKind] = {
        ("ec", 256): "ec-p256",
        ("rsa", 2048): "rsa-2048",
        ("rsa", 3072): "rsa-3072",
    }
    kind = kinds.get((spec.key_type, spec.key_size))
    if kind is None:
        raise LauncherConfigError(
            f"certificate key {spec.key_type}-{spec.key_size} cannot be attested "
            "(supported: ec-256, rsa-2048, rsa-3072)",
            code="launcher.key_type_unsupported",
        )
    others = {(c.key_type, c.key_size) for c in manifest.certificates[1:]}
    if others - {(spec.key_type, spec.key_size)}:
        raise LauncherConfigError(
            "all certificates of a workload share one attested key; use one key type",
            code="launcher.key_type_unsupported",
        )
    return kind


def _names(manifest: EnclaveManifest, app: str) -> tuple[str, list[str]]:
    """Return the CSR's common name and SANs (the union over all certificate specs)."""
    sans = list(
        dict.fromkeys(split_san(name) for spec in manifest.certificates for name in spec.alt_names)
    )
    subject = next((spec.subject for spec in manifest.certificates if spec.subject), None)
    common_name = subject or (sans[0] if sans else app)
    return common_name[:64], sans


class SourceFactory(Protocol):
    """Chooses the evidence source (tests inject their own)."""

    def __call__(
        self, settings: LauncherSettings, manifest: EnclaveManifest, sigstruct: Sigstruct
    ) -> EvidenceSource:
        """Return the evidence source for this workload."""
        ...


def choose_evidence_source(
    settings: LauncherSettings, manifest: EnclaveManifest, sigstruct: Sigstruct
) -> EvidenceSource:
    """Return the evidence source: Gramine, configfs-tsm, or the simulated quoting service.

    ``auto`` prefers hardware; it falls back to the simulated service only for a
    ``simulated``-target manifest and only when ``SANCTUM_SIM_QE`` names one.

    Raises:
        LauncherConfigError: No source is usable (``launcher.platform_unavailable``).
        UnavailableError: The chosen hardware backend failed its check.
    """
    from sanctum.platforms.sim_qe import QuoteIdentity, SimQeEvidenceSource  # noqa: PLC0415

    def simulated() -> EvidenceSource:
        if not settings.sim_qe:
            raise LauncherConfigError(
                "the simulated platform needs the host's simulated quoting service",
                code="launcher.platform_unavailable",
                hint="run `sanctum platform sim-qe serve --socket PATH` on the host and pass "
                "SANCTUM_SIM_QE=unix:PATH (bind-mount the socket into the container)",
            )
        identity = QuoteIdentity(
            mr_enclave=sigstruct.mrenclave,
            mr_signer=sigstruct.mrsigner,
            isv_prod_id=sigstruct.isvprodid,
            isv_svn=sigstruct.isvsvn,
            debug=sigstruct.debug,
        )
        return SimQeEvidenceSource(settings.sim_qe, identity, timeout=settings.timeout)

    if settings.platform == "simulated":
        return simulated()
    if settings.platform == "gramine":
        from sanctum.platforms.gramine import GramineEvidenceSource  # noqa: PLC0415

        source = GramineEvidenceSource()
        source.check()
        return source
    if settings.platform == "configfs-tsm":
        from sanctum.platforms.configfs_tsm import ConfigfsTsmEvidenceSource  # noqa: PLC0415

        tsm = ConfigfsTsmEvidenceSource()
        tsm.probe()
        return tsm
    from sanctum.platforms.detect import open_hardware_source  # noqa: PLC0415

    try:
        return open_hardware_source()
    except SanctumError as error:
        if manifest.target == "simulated" and settings.sim_qe:
            return simulated()
        raise LauncherConfigError(
            f"no evidence source: {error.message}",
            code="launcher.platform_unavailable",
            hint="on SGX hardware run under Gramine; for development set SANCTUM_SIM_QE to the "
            "host's simulated quoting service",
        ) from error


def read_image_file(root: Path, path: str) -> bytes:
    """Read an image file.

    Raises:
        LauncherConfigError: It cannot be read (``launcher.manifest_missing``).
    """
    try:
        return in_root(root, path).read_bytes()
    except OSError as error:
        raise LauncherConfigError(
            f"cannot read {path}: {error.strerror}",
            code="launcher.manifest_missing",
            hint="is this a shielded image? (convert it with `sanctum convert`)",
        ) from error


def _read_text(root: Path, path: str) -> str:
    try:
        return in_root(root, path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _which(root: Path, command: str, env: Mapping[str, str]) -> str:
    """Return the image path of ``command`` (PATH lookup in the app's environment).

    Raises:
        LauncherConfigError: Not found (``launcher.entrypoint_missing``).
    """
    if "/" in command:
        return command
    for directory in (env.get("PATH") or "/usr/local/bin:/usr/bin:/bin").split(":"):
        candidate = f"{directory.rstrip('/')}/{command}"
        host = in_root(root, candidate)
        if directory and host.is_file() and os.access(host, os.X_OK):
            return candidate
    raise LauncherConfigError(
        f"entrypoint {command!r} is not on the app's PATH", code="launcher.entrypoint_missing"
    )


def _attest_once(
    link: ManagerLink,
    source: EvidenceSource,
    *,
    app: str,
    key: WorkloadKey,
    csr: str,
    instance: str | None,
) -> tuple[AttestResponse, bytes]:
    """Run one challenge + quote + attest round; return the answer and the nonce."""
    from sanctum.platforms.sim_qe import (  # noqa: PLC0415
        SimQeEvidenceSource,
        collateral_from_bundle,
    )

    challenge = link.challenge()
    report_data = workload_report_data(challenge.nonce, key)
    collateral: Collateral | None = None
    if isinstance(source, SimQeEvidenceSource):
        simulated = source.quote_with_collateral(report_data)
        quote = simulated.quote
        collateral = Collateral.model_validate(collateral_from_bundle(simulated.collateral))
    else:
        quote = source.quote(report_data)
    request = AttestRequest(
        app=app,
        quote=quote,
        csr=csr,
        nonce=challenge.nonce,
        collateral=collateral,
        instance=instance,
    )
    return link.attest(request), challenge.nonce


def _attest(
    link: ManagerLink,
    source: EvidenceSource,
    *,
    app: str,
    key: WorkloadKey,
    csr: str,
    settings: LauncherSettings,
    log: StepLog,
    sleep: Callable[[float], None],
) -> tuple[AttestResponse, bytes]:
    """Attest, retrying retryable failures with bounded exponential backoff.

    Raises:
        AttestationRefusedError: The manager refused (not retried, except an expired nonce).
        UnavailableError: Still failing after ``max_attempts``.
    """
    delay = settings.backoff_initial
    for attempt in range(1, settings.max_attempts + 1):
        try:
            return _attest_once(link, source, app=app, key=key, csr=csr, instance=settings.instance)
        except (UnavailableError, AttestationRefusedError) as error:
            retryable = error.retryable or error.code in _RETRYABLE_REFUSALS
            if not retryable or attempt == settings.max_attempts:
                raise
            log.line(
                f"attempt {attempt} failed ({error.code}: {error.message}); retry in {delay:g} s"
            )
            sleep(delay)
            delay = min(delay * 2, settings.backoff_max)
    raise AssertionError  # pragma: no cover (the loop returns or raises)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _check_certificate(answer: AttestResponse, key: WorkloadKey) -> None:
    """Check that the issued certificate is for our key.

    Raises:
        EvidenceError: It is not (``launcher.certificate_mismatch``) or does not parse.
    """
    try:
        certificate = x509.load_pem_x509_certificate(answer.certificate.encode("ascii"))
    except ValueError as error:
        raise EvidenceError(
            "the issued certificate does not parse", code="launcher.certificate_mismatch"
        ) from error
    if certificate.public_key() != key.public_key():
        raise EvidenceError(
            "the issued certificate is not for this workload's key",
            code="launcher.certificate_mismatch",
        )


def _file_secrets(answer: AttestResponse) -> dict[str, str]:
    """Return the file-delivered secrets of ``answer``: name to image path."""
    return {
        secret.name: secret.path
        for secret in answer.sealed_secrets
        if secret.delivery == "file" and secret.path
    }


def _provision(
    root: Path,
    manifest: EnclaveManifest,
    *,
    answer: AttestResponse,
    key: WorkloadKey,
    secrets: Mapping[str, bytes],
    owner: AppUser | None,
    gramine: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """Write key, certificate, chain, CA and file secrets; return written paths and env secrets.

    Under Gramine every file secret must go to an enclave-protected directory (checked before
    anything is written, see :func:`~sanctum.launcher.policy.check_secret_paths`).

    Raises:
        LauncherConfigError: Under Gramine, a file secret outside every enclave-protected
            directory (``launcher.secret_path_unprotected``).
        EvidenceError: An env secret is not UTF-8 text without NUL (``launcher.secret_invalid``).
        OSError: A file cannot be written.
    """
    if gramine:
        check_secret_paths(_file_secrets(answer), enclave_protected_dirs(manifest))
    written: list[str] = []
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    leaf = answer.certificate.encode("ascii")
    intermediates = b"".join(pem.encode("ascii") for pem in answer.chain)
    ca = answer.ca.encode("ascii")
    for spec in manifest.certificates:
        write_atomic(in_root(root, spec.key_path), key_pem, owner=owner)
        write_atomic(in_root(root, spec.cert_path), leaf, owner=owner)
        written += [spec.key_path, spec.cert_path]
        if spec.chain_path:
            write_atomic(in_root(root, spec.chain_path), leaf + intermediates, owner=owner)
            written.append(spec.chain_path)
    for ca_spec in manifest.ca_certificates:
        if ca_spec.ca_path:
            write_atomic(in_root(root, ca_spec.ca_path), ca, owner=owner)
            written.append(ca_spec.ca_path)
        if ca_spec.system:
            bundle = install_system_ca(root, ca)
            written.append("/" + str(bundle.relative_to(root)))
    env: dict[str, str] = {}
    by_name = {secret.name: secret for secret in answer.sealed_secrets}
    for name, value in secrets.items():
        secret = by_name[name]
        if secret.delivery == "file" and secret.path:
            write_atomic(in_root(root, secret.path), value, owner=owner)
            written.append(secret.path)
        elif secret.env_name:
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError as error:
                raise EvidenceError(
                    f"secret {name} is not UTF-8 text and cannot go into an environment variable",
                    code="launcher.secret_invalid",
                    hint="deliver binary secrets as files",
                ) from error
            if "\x00" in text:
                raise EvidenceError(
                    f"secret {name} holds a NUL byte and cannot go into an environment variable",
                    code="launcher.secret_invalid",
                )
            env[secret.env_name] = text
    return written, env


def prepare(
    settings: LauncherSettings,
    host_env: Mapping[str, str],
    *,
    log: StepLog | None = None,
    source_factory: SourceFactory = choose_evidence_source,
    link_factory: LinkFactory = pinned_link,
    sleep: Callable[[float], None] = time.sleep,
) -> LaunchPlan:
    """Run the launcher's sequence up to (not including) the exec.

    Args:
        settings: Run-time settings.
        host_env: The launcher's environment (only allowed names reach the app).
        log: Where step lines go.
        source_factory: Chooses the evidence source.
        link_factory: Builds the pinned link to the manager.
        sleep: Waits between retries.

    Returns:
        The plan to exec (in a dry run: the plan it would exec).

    Raises:
        SanctumError: Any failure, typed (configuration, integrity, refusal, unavailability).
        OSError: A file cannot be written.
    """
    log = log or StepLog()
    log.line(f"sanctum launcher {__version__}")
    with log.step("manifest verified") as out:
        manifest_bytes = read_image_file(settings.root, MANIFEST_PATH)
        sigstruct_bytes = read_image_file(settings.root, SIGSTRUCT_PATH)
        manifest = verify_signed_manifest(manifest_bytes, sigstruct_bytes)
        sigstruct = parse_sigstruct(sigstruct_bytes)
        out.append(
            f"target {manifest.target}, mrenclave {sigstruct.mrenclave.hex()[:16]}…, "
            f"mrsigner {sigstruct.mrsigner.hex()[:16]}…"
        )
    owner = resolve_user(
        manifest.user,
        _read_text(settings.root, "/etc/passwd"),
        _read_text(settings.root, "/etc/group"),
    )
    # Only root can give files away; otherwise the launcher already runs as the app's user.
    file_owner = owner if os.geteuid() == 0 else None
    source: EvidenceSource | None = None
    if not settings.unsafe_offline:
        with log.step("evidence source") as out:
            source = source_factory(settings, manifest, sigstruct)
            info = source.info
            warning = ", SIMULATED: no hardware protection" if info.simulated else ""
            out.append(f"{info.name} ({info.tee}{warning})")
    simulated = source is None or source.info.simulated
    if simulated:
        with log.step("trusted files checked") as out:
            count = check_trusted_files(
                settings.root,
                manifest.trusted_files,
                manifest.symlinks,
                skip=(manifest.launcher,),
            )
            out.append(f"{count} entries match the manifest (the launcher is not self-hashed)")
    argv, ignored = build_argv(manifest, settings.runtime_args)
    if ignored:
        log.line("run-time arguments ignored: the manifest does not allow command-line arguments")
    if settings.unsafe_offline or settings.dry_run:
        env = build_env(manifest, host_env, {})
        path = _which(settings.root, argv[0], env)
        if settings.unsafe_offline:
            log.line("UNSAFE offline mode: no attestation, no certificates, no secrets")
            if manifest.encrypted_dirs:
                log.line(
                    "UNSAFE offline mode: encrypted directories NOT opened, the app writes "
                    f"{', '.join(manifest.encrypted_dirs)} in clear"
                )
        plan = LaunchPlan(path, argv, env, manifest.workdir, owner, simulated=simulated)
        if settings.dry_run:
            _describe(log, manifest, settings, plan)
        return plan
    if source is None:  # pragma: no cover (set above unless offline)
        raise AssertionError
    app = manifest.app or host_env.get("SANCTUM_APP") or ""
    if not app:
        raise LauncherConfigError(
            "the manifest names no app and SANCTUM_APP is not set", code="launcher.app_missing"
        )
    url = settings.manager_url or manifest.manager.url
    if not url:
        raise LauncherConfigError(
            "no Enclave Manager URL: set SANCTUM_MANAGER_URL", code="launcher.manager_url_missing"
        )
    pin = manifest.manager.ca_pin
    if not pin:
        raise LauncherConfigError(
            "the manifest pins no manager CA, so the manager cannot be authenticated",
            code="launcher.ca_pin_missing",
            hint="convert with --manager-ca-pin (or through the manager)",
        )
    with log.step("workload key and CSR") as out:
        kind = _key_kind(manifest)
        key = generate_workload_key(kind)
        common_name, sans = _names(manifest, app)
        csr = build_csr(key, common_name=common_name, sans=sans)
        out.append(f"{kind}, CN={common_name}, SANs={','.join(sans) or '-'}")
    with log.step("manager CA pinned") as out:
        link = link_factory(url, pin, settings)
        out.append(f"{url} ({pin[:19]}…)")
    try:
        with log.step("attested") as out:
            answer, nonce = _attest(
                link, source, app=app, key=key, csr=csr, settings=settings, log=log, sleep=sleep
            )
            out.append(f"certificate until {answer.expires_at.isoformat()}")
    finally:
        link.close()
    _check_certificate(answer, key)
    if source.info.name == "gramine":
        # Refused before anything is mounted, provisioned or written (checked again on renewal).
        check_secret_paths(_file_secrets(answer), enclave_protected_dirs(manifest))
    # Encrypted directories are opened first, so that certificates and secrets written into
    # one land in the encrypted file system (never in clear beneath a later mount).
    opened: list[OpenedDirectory] = []
    if manifest.encrypted_dirs:
        from sanctum.launcher.encrypted import open_encrypted_dirs  # noqa: PLC0415
        from sanctum.launcher.epoch_report import (  # noqa: PLC0415
            report_opened,
            start_epoch_reporter,
        )

        with log.step("encrypted directories") as out:
            dir_keys = answer.open_dir_keys(key, expected_nonce=nonce, expected_app=app)
            opened = open_encrypted_dirs(
                settings.root,
                manifest.encrypted_dirs,
                dir_keys,
                gramine=source.info.name == "gramine",
                owner=owner,
                log=log.line,
            )
            report_opened(
                lambda: link_factory(url, pin, settings),
                key,
                answer.certificate,
                opened,
                now=dt.datetime.now(dt.UTC),
                log=log.line,
            )
            start_epoch_reporter(
                lambda: link_factory(url, pin, settings), key, answer.certificate, opened, dir_keys
            )
            out.append(f"{len(opened)} opened ({', '.join(sorted({o.mode for o in opened}))})")
    with log.step("provisioned") as out:
        secrets = answer.open_secrets(key, expected_nonce=nonce, expected_app=app)
        written, secret_env = _provision(
            settings.root,
            manifest,
            answer=answer,
            key=key,
            secrets=secrets,
            owner=file_owner,
            gramine=source.info.name == "gramine",
        )
        if settings.token_file:
            write_atomic(in_root(settings.root, settings.token_file), answer.token.encode())
            written.append(settings.token_file)
        out.append(f"{len(written)} files, {len(secret_env)} env secrets")
    env = build_env(manifest, host_env, secret_env)
    path = _which(settings.root, argv[0], env)
    return LaunchPlan(
        path,
        argv,
        env,
        manifest.workdir,
        owner,
        written=tuple(written),
        simulated=simulated,
        token=answer.token,
        renewal=RenewalContext(
            settings=settings,
            manifest=manifest,
            source=source,
            link_factory=link_factory,
            url=url,
            pin=pin,
            app=app,
            key=key,
            csr=csr,
            owner=file_owner,
            expires_at=answer.expires_at,
            issued_at=certificate_not_before(answer),
        )
        if settings.renew
        else None,
        encrypted_dirs=tuple(opened),
    )


def certificate_not_before(answer: AttestResponse) -> dt.datetime:
    """Return when the issued certificate became valid."""
    certificate = x509.load_pem_x509_certificate(answer.certificate.encode("ascii"))
    return certificate.not_valid_before_utc


def renew_once(context: RenewalContext, *, log: StepLog) -> AttestResponse:
    """Re-attest with the same key and rewrite certificate, chain, CA and file secrets.

    Every file is replaced atomically (:func:`~sanctum.launcher.files.write_atomic`), so the app
    reads either the old or the new certificate, never a torn one; the key does not change.

    Raises:
        SanctumError: The manager refused or could not be reached (after bounded retries).
        OSError: A file cannot be written.
    """
    link = context.link_factory(context.url, context.pin, context.settings)
    try:
        answer, nonce = _attest(
            link,
            context.source,
            app=context.app,
            key=context.key,
            csr=context.csr,
            settings=context.settings,
            log=log,
            sleep=time.sleep,
        )
    finally:
        link.close()
    _check_certificate(answer, context.key)
    secrets = answer.open_secrets(context.key, expected_nonce=nonce, expected_app=context.app)
    _provision(
        context.settings.root,
        context.manifest,
        answer=answer,
        key=context.key,
        secrets=secrets,
        owner=context.owner,
        gramine=context.source.info.name == "gramine",
    )
    return answer


def _describe(
    log: StepLog, manifest: EnclaveManifest, settings: LauncherSettings, plan: LaunchPlan
) -> None:
    """Print what a real run would do (dry run)."""
    url = settings.manager_url or manifest.manager.url or "(unset: SANCTUM_MANAGER_URL)"
    log.line(f"dry run: would attest app {manifest.app or '(SANCTUM_APP)'} at {url}")
    log.line(
        f"dry run: manager CA pin {manifest.manager.ca_pin or '(none: attestation impossible)'}"
    )
    for spec in manifest.certificates:
        log.line(f"dry run: would write key {spec.key_path}, certificate {spec.cert_path}")
    for ca in manifest.ca_certificates:
        log.line(f"dry run: would write CA {ca.ca_path or '-'} (system store: {ca.system})")
    for directory in manifest.encrypted_dirs:
        log.line(f"dry run: would open encrypted directory {directory} with its released key")
    log.line(f"dry run: would exec {plan.path} {' '.join(plan.argv[1:])} in {plan.workdir}")
    log.line(f"dry run: app environment names: {', '.join(sorted(plan.env)) or '-'}")


def exec_plan(
    plan: LaunchPlan,
    root: Path = Path("/"),
    *,
    execve: Callable[[str, list[str], dict[str, str]], object] = os.execve,
) -> None:
    """Replace this process with the app (same PID; signals and exit codes are the app's).

    Drops to the manifest's user first when the launcher runs as root. Under the tmpfs fallback
    of encrypted directories the app runs as the launcher's child instead (ADR 0119).

    Raises:
        LauncherConfigError: The working directory does not exist (``launcher.workdir_missing``).
        OSError: The exec fails.
    """
    try:
        os.chdir(in_root(root, plan.workdir))
    except OSError as error:
        raise LauncherConfigError(
            f"working directory {plan.workdir} is missing", code="launcher.workdir_missing"
        ) from error

    def become_app() -> None:
        if plan.user is not None and os.geteuid() == 0 and plan.user.uid != 0:
            os.setgroups([])
            os.setgid(plan.user.gid)
            os.setuid(plan.user.uid)
        sys.stdout.flush()
        sys.stderr.flush()
        execve(str(in_root(root, plan.path)), plan.argv, plan.env)

    if any(item.session is not None for item in plan.encrypted_dirs):
        # The tmpfs fallback (ADR 0119): the launcher stays the app's parent, syncs and exits
        # like the app; this call does not return.
        from sanctum.launcher.encrypted import run_app_with_fallback  # noqa: PLC0415

        run_app_with_fallback(plan.encrypted_dirs, become_app)
    become_app()
