"""Which evidence sources this machine offers, and why the others are not there.

:func:`detect_platforms` probes every backend without side effects beyond what the backends
themselves need (configfs-tsm requires creating and removing one report entry to learn its
provider) and returns one :class:`PlatformStatus` per backend, with an operator-facing reason
either way. :func:`open_hardware_source` picks the first usable hardware backend; the simulated
platform is listed for completeness but never picked implicitly, because its evidence carries no
hardware protection and must be asked for explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sanctum.errors import SanctumError
from sanctum.platforms._devio import DeviceIO, OsDeviceIO
from sanctum.platforms.configfs_tsm import DEFAULT_TSM_ROOT, ConfigfsTsmEvidenceSource
from sanctum.platforms.errors import PlatformUnavailableError
from sanctum.platforms.evidence import EvidenceSource, PlatformInfo
from sanctum.platforms.gramine import GramineEvidenceSource

__all__ = [
    "SIMULATED_INFO",
    "PlatformStatus",
    "detect_platforms",
    "open_hardware_source",
]

#: How the simulated platform describes itself in detection results.
SIMULATED_INFO: Final = PlatformInfo(
    name="simulated",
    tee="sgx",
    simulated=True,
    details={"tees": "sgx,tdx", "trust_anchor": "Sanctum simulation root CA"},
)

_SGX_DEVICES: Final = (Path("dev/sgx_enclave"), Path("dev/sgx/enclave"))


@dataclass(frozen=True, slots=True)
class PlatformStatus:
    """Whether one backend can produce evidence here.

    Attributes:
        name: Backend name (``gramine``, ``sgx-device``, ``configfs-tsm``, ``simulated``).
        available: True when the backend can produce evidence now.
        reason: Why it is or is not available, for operators.
        info: The platform description when available, else None.
        code: A dotted code for the reason it is unavailable (empty when available).
    """

    name: str
    available: bool
    reason: str
    info: PlatformInfo | None
    code: str = ""

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form used by ``sanctum platform info --json``."""
        out: dict[str, object] = {
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "simulated": bool(self.info and self.info.simulated),
        }
        if self.code:
            out["code"] = self.code
        if self.info is not None:
            out["tee"] = self.info.tee
            out["details"] = dict(self.info.details)
        return out


def _available(name: str, reason: str, info: PlatformInfo) -> PlatformStatus:
    return PlatformStatus(name=name, available=True, reason=reason, info=info)


def _unavailable(name: str, reason: str, code: str) -> PlatformStatus:
    return PlatformStatus(name=name, available=False, reason=reason, info=None, code=code)


def _gramine_status(dev_root: Path, io: DeviceIO) -> PlatformStatus:
    source = GramineEvidenceSource(dev_root, io=io)
    try:
        source.check()
    except SanctumError as error:
        return _unavailable("gramine", error.message, error.code)
    return _available("gramine", "inside a Gramine SGX enclave with DCAP attestation", source.info)


def _sgx_device_status(dev_root: Path, *, gramine: bool) -> PlatformStatus:
    present = [dev_root / device for device in _SGX_DEVICES if (dev_root / device).exists()]
    if not present:
        return _unavailable(
            "sgx-device",
            f"no SGX device ({dev_root / _SGX_DEVICES[0]} is missing)",
            "platform.unavailable",
        )
    if gramine:
        reason = f"SGX device {present[0]} present; evidence comes through Gramine"
    else:
        reason = (
            f"SGX device {present[0]} present, but quotes come from inside an enclave: "
            "run the workload under Gramine (gramine-sgx)"
        )
    return _unavailable("sgx-device", reason, "platform.enclave_required")


def _tsm_status(tsm_root: Path, io: DeviceIO) -> PlatformStatus:
    source = ConfigfsTsmEvidenceSource(tsm_root, io=io)
    try:
        provider = source.probe()
    except SanctumError as error:
        return _unavailable("configfs-tsm", error.message, error.code)
    return _available(
        "configfs-tsm", f"configfs-tsm report interface, provider {provider}", source.info
    )


def detect_platforms(
    *,
    dev_root: Path = Path("/"),
    tsm_root: Path = DEFAULT_TSM_ROOT,
    io: DeviceIO | None = None,
) -> list[PlatformStatus]:
    """Probe every evidence backend and say which can produce evidence here.

    Args:
        dev_root: Root under which ``dev/attestation`` and ``dev/sgx_enclave`` are looked up.
        tsm_root: The configfs-tsm report directory.
        io: File operations (the real ones by default).

    Returns:
        One status per backend, hardware first, the simulated platform last.
    """
    device_io: DeviceIO = io or OsDeviceIO()
    gramine = _gramine_status(dev_root, device_io)
    return [
        gramine,
        _sgx_device_status(dev_root, gramine=gramine.available),
        _tsm_status(tsm_root, device_io),
        _available(
            "simulated",
            "software simulation without hardware protection; used only when asked for "
            "explicitly (--simulated) and accepted only where simulated evidence is allowed",
            SIMULATED_INFO,
        ),
    ]


def open_hardware_source(
    *,
    dev_root: Path = Path("/"),
    tsm_root: Path = DEFAULT_TSM_ROOT,
    io: DeviceIO | None = None,
) -> EvidenceSource:
    """Return the first available hardware evidence source (Gramine, then configfs-tsm).

    Raises:
        PlatformUnavailableError: ``platform.none_available`` when no hardware backend can
            produce evidence; the details carry each backend's reason.
    """
    device_io: DeviceIO = io or OsDeviceIO()
    statuses = detect_platforms(dev_root=dev_root, tsm_root=tsm_root, io=device_io)
    for status in statuses:
        if status.available and status.name == "gramine":
            return GramineEvidenceSource(dev_root, io=device_io)
        if status.available and status.name == "configfs-tsm":
            return ConfigfsTsmEvidenceSource(tsm_root, io=device_io)
    reasons = {s.name: s.reason for s in statuses if not (s.info and s.info.simulated)}
    raise PlatformUnavailableError(
        "no hardware attestation platform is available here: "
        + "; ".join(f"{name}: {reason}" for name, reason in reasons.items()),
        code="platform.none_available",
        hint="Run inside a Gramine SGX enclave or a TDX/SEV-SNP guest, or use the simulated "
        "platform explicitly (--simulated) for development.",
        details=reasons,
    )
