"""Evidence from confidential VMs through the Linux configfs-tsm report interface (Linux ≥ 6.7).

The kernel's ``tsm`` report interface (``Documentation/ABI/testing/configfs-tsm-report``) is a
configfs directory, by default ``/sys/kernel/config/tsm/report``. The contract it defines:

- ``mkdir <root>/<name>`` creates a report entry; the kernel populates its attributes.
- ``provider`` (read-only) names the format of ``outblob``: ``tdx_guest`` (an Intel TDX DCAP
  quote) or ``sev_guest`` (an AMD SEV-SNP attestation report).
- ``inblob`` (write-only) takes up to 64 bytes of report data; each write to ``inblob`` or to any
  option attribute increments ``generation``.
- ``outblob`` (read-only): reading it makes the kernel produce the report for the current
  ``inblob``.
- ``generation`` (read-only) lets a reader detect a concurrent writer: the entry is shared by
  every process that can open it, so the reader compares the generation before its writes with
  the one after reading ``outblob`` and checks that the difference is exactly its own writes.
- ``rmdir`` removes the entry.

This backend follows that contract with a uniquely named entry per quote, refuses a raced
report with the retryable ``platform.concurrent_writer``, checks the framing of the result and
that it carries the report data written, and removes its entry afterwards.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from sanctum.platforms._devio import DeviceIO, OsDeviceIO
from sanctum.platforms._framing import check_quote_framing, pad_report_data
from sanctum.platforms.errors import PlatformConfigurationError, PlatformUnavailableError
from sanctum.platforms.evidence import PlatformInfo, TeeKind

__all__ = ["DEFAULT_TSM_ROOT", "PROVIDERS", "ConfigfsTsmEvidenceSource"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Where the kernel mounts the report interface (configfs at /sys/kernel/config).
DEFAULT_TSM_ROOT: Final = Path("/sys/kernel/config/tsm/report")

#: Providers whose ``outblob`` format Sanctum knows, and the TEE each one describes.
PROVIDERS: Final[dict[str, TeeKind]] = {"tdx_guest": "tdx", "sev_guest": "sev-snp"}

# AMD SEV-SNP ATTESTATION_REPORT (SEV-SNP ABI spec, table 21): 1184 bytes, REPORT_DATA at 0x50.
_SNP_REPORT_SIZE: Final = 0x4A0
_SNP_REPORT_DATA: Final = 0x50


class ConfigfsTsmEvidenceSource:
    """An :class:`~sanctum.platforms.evidence.EvidenceSource` backed by configfs-tsm.

    Args:
        root: The report directory (``/sys/kernel/config/tsm/report`` in production).
        io: File operations; the default performs real system calls.
        entry_prefix: Prefix of the report entries this source creates.
    """

    def __init__(
        self,
        root: Path = DEFAULT_TSM_ROOT,
        *,
        io: DeviceIO | None = None,
        entry_prefix: str = "sanctum",
    ) -> None:
        """Create a source using report entries under ``root``."""
        self._root = root
        self._io: DeviceIO = io or OsDeviceIO()
        self._prefix = entry_prefix
        self._provider: str | None = None

    @property
    def info(self) -> PlatformInfo:
        """Describe the platform (probing the provider on first use).

        Raises:
            PlatformUnavailableError: The report interface is missing or unusable.
            PlatformConfigurationError: ``platform.provider_unsupported``.
        """
        provider = self._provider or self.probe()
        return PlatformInfo(
            name="configfs-tsm",
            tee=PROVIDERS[provider],
            simulated=False,
            details={"provider": provider, "report_root": str(self._root)},
        )

    def probe(self) -> str:
        """Create and remove one report entry to learn the provider; return its name.

        Raises:
            PlatformUnavailableError: ``platform.unavailable`` when the interface is missing.
            PlatformConfigurationError: ``platform.provider_unsupported``.
        """
        entry = self._create_entry()
        try:
            return self._read_provider(entry)
        finally:
            self._remove_entry(entry)

    def quote(self, report_data: bytes) -> bytes:
        """Return the provider's evidence (a TDX quote or an SNP report) over ``report_data``.

        Raises:
            UsageError: ``platform.report_data_too_long`` when ``report_data`` exceeds 64 bytes.
            PlatformUnavailableError: ``platform.unavailable`` (interface missing, I/O error),
                ``platform.bad_generation``, ``platform.short_write``, ``platform.empty_quote``,
                ``platform.short_read``, ``platform.bad_quote``,
                ``platform.concurrent_writer`` (another writer changed the entry; retry) or
                ``platform.report_data_mismatch``.
            PlatformConfigurationError: ``platform.provider_unsupported``.
        """
        padded = pad_report_data(report_data)
        entry = self._create_entry()
        try:
            provider = self._read_provider(entry)
            before = self._read_generation(entry)
            inblob = entry / "inblob"
            written = self._call("write", inblob, lambda: self._io.write(inblob, padded))
            if written != len(padded):
                raise PlatformUnavailableError(
                    f"{inblob} took {written} of {len(padded)} bytes of report data",
                    code="platform.short_write",
                    details={"written": written, "expected": len(padded)},
                )
            outblob = entry / "outblob"
            data = self._call("read", outblob, lambda: self._io.read(outblob))
            after = self._read_generation(entry)
        finally:
            self._remove_entry(entry)
        if after != before + 1:
            raise PlatformUnavailableError(
                f"report entry {entry.name} changed from generation {before} to {after} while "
                "one write was expected: another process wrote to it concurrently",
                code="platform.concurrent_writer",
                hint="Retry; the evidence read may belong to the other writer's report data.",
                details={"before": before, "after": after},
            )
        self._check_evidence(provider, data, padded, str(outblob))
        return data

    def _check_evidence(self, provider: str, data: bytes, padded: bytes, source: str) -> None:
        """Check the framing and report data of ``data`` for ``provider``.

        Raises:
            PlatformUnavailableError: The evidence is empty, short, malformed or carries other
                report data.
        """
        if provider == "tdx_guest":
            framing = check_quote_framing(data, source=source)
            if framing.tee != "tdx":
                raise PlatformUnavailableError(
                    f"{source} returned an SGX quote from the tdx_guest provider",
                    code="platform.bad_quote",
                )
            carried = framing.report_data
        else:
            if not data:
                raise PlatformUnavailableError(
                    f"{source} returned an empty report", code="platform.empty_quote"
                )
            if len(data) < _SNP_REPORT_SIZE:
                raise PlatformUnavailableError(
                    f"{source} returned {len(data)} bytes; an SEV-SNP report has "
                    f"{_SNP_REPORT_SIZE}",
                    code="platform.short_read",
                    details={"bytes": len(data)},
                )
            carried = data[_SNP_REPORT_DATA : _SNP_REPORT_DATA + 64]
        if carried != padded:
            raise PlatformUnavailableError(
                f"the evidence read from {source} carries different report data than was written",
                code="platform.report_data_mismatch",
                hint="Another writer used the same report entry; retry.",
            )

    def _create_entry(self) -> Path:
        """Create a uniquely named report entry and return its path.

        Raises:
            PlatformUnavailableError: ``platform.unavailable``.
        """
        name = f"{self._prefix}-{os.getpid()}-{secrets.token_hex(8)}"
        entry = self._root / name
        try:
            self._io.mkdir(entry)
        except FileNotFoundError as error:
            raise PlatformUnavailableError(
                f"the configfs-tsm report interface {self._root} does not exist",
                code="platform.unavailable",
                hint="configfs-tsm needs Linux >= 6.7 in a TDX or SEV-SNP guest with configfs "
                "mounted on /sys/kernel/config.",
                details={"path": str(self._root)},
            ) from error
        except OSError as error:
            raise PlatformUnavailableError(
                f"cannot create report entry {entry}: {error.strerror or error}",
                code="platform.unavailable",
                details={"path": str(entry)},
            ) from error
        return entry

    def _remove_entry(self, entry: Path) -> None:
        """Remove ``entry``; a failure is logged, since the evidence itself is unaffected."""
        try:
            self._io.rmdir(entry)
        except OSError as error:
            _log.warning("could not remove configfs-tsm report entry %s: %s", entry, error)

    def _read_provider(self, entry: Path) -> str:
        """Return the provider of ``entry`` if Sanctum knows its format.

        Raises:
            PlatformUnavailableError: ``platform.unavailable`` on I/O errors.
            PlatformConfigurationError: ``platform.provider_unsupported``.
        """
        path = entry / "provider"
        provider = self._call("read", path, lambda: self._io.read(path))
        name = provider.decode("ascii", errors="replace").strip()
        if name not in PROVIDERS:
            raise PlatformConfigurationError(
                f"configfs-tsm provider {name!r} is not supported "
                f"(known: {', '.join(sorted(PROVIDERS))})",
                code="platform.provider_unsupported",
                details={"provider": name},
            )
        self._provider = name
        return name

    def _read_generation(self, entry: Path) -> int:
        """Return the generation counter of ``entry``.

        Raises:
            PlatformUnavailableError: ``platform.unavailable`` on I/O errors,
                ``platform.bad_generation`` when the value is not a decimal number.
        """
        path = entry / "generation"
        raw = self._call("read", path, lambda: self._io.read(path)).strip()
        if not raw.isdigit():
            raise PlatformUnavailableError(
                f"{path} holds {raw[:32]!r}, not a generation number",
                code="platform.bad_generation",
            )
        return int(raw)

    @staticmethod
    def _call(action: str, path: Path, operation: Callable[[], _T]) -> _T:
        """Run one I/O ``operation`` on ``path``, mapping OS errors to Sanctum errors.

        Raises:
            PlatformUnavailableError: ``platform.unavailable``.
        """
        try:
            return operation()
        except OSError as error:
            raise PlatformUnavailableError(
                f"cannot {action} {path}: {error.strerror or error}",
                code="platform.unavailable",
                details={"path": str(path)},
            ) from error
