"""Evidence from Intel SGX enclaves running under the Gramine LibOS.

Inside a Gramine enclave the pseudo-file system ``/dev/attestation`` is the interface to the
quoting enclave: ``attestation_type`` says which scheme the manifest enabled (``dcap``, ``epid``
or ``none``), writing 64 bytes to ``user_report_data`` sets the report data of the next report,
and reading ``quote`` returns a quote over it (Gramine asks the platform's QE through aesmd).
The backend checks every step: the attestation type, that the driver took all 64 bytes, that the
quote is complete, and that it carries the report data just written. The last check matters
because ``/dev/attestation`` is per process, not per thread: two threads quoting at once would
otherwise each get the other's quote. A lock serialises quoting within one source object.

The root is configurable so tests run against a fake tree; see ``tests/platforms/``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final

from sanctum.platforms._devio import DeviceIO, OsDeviceIO
from sanctum.platforms._framing import check_quote_framing, pad_report_data
from sanctum.platforms.errors import PlatformConfigurationError, PlatformUnavailableError
from sanctum.platforms.evidence import PlatformInfo

__all__ = ["GramineEvidenceSource", "read_attestation_type"]

_ATTESTATION_DIR: Final = Path("dev/attestation")
_SUPPORTED_TYPE: Final = "dcap"


def read_attestation_type(root: Path, io: DeviceIO | None = None) -> str:
    """Return the attestation type Gramine reports under ``root`` (``dcap``, ``epid``, ``none``).

    Args:
        root: The file-system root (``/`` in production).
        io: File operations (the real ones by default).

    Raises:
        PlatformUnavailableError: ``platform.unavailable`` when ``/dev/attestation`` is missing
            or unreadable (not running inside a Gramine SGX enclave).
    """
    path = root / _ATTESTATION_DIR / "attestation_type"
    try:
        raw = (io or OsDeviceIO()).read(path)
    except OSError as error:
        reason = (
            f"not inside a Gramine SGX enclave ({path} is missing)"
            if isinstance(error, FileNotFoundError)
            else f"cannot read {path}: {error.strerror or error}"
        )
        raise PlatformUnavailableError(
            reason,
            code="platform.unavailable",
            hint="Gramine's /dev/attestation exists only inside a Gramine SGX enclave "
            "(gramine-sgx) with remote attestation enabled in the manifest.",
            details={"path": str(path)},
        ) from error
    return raw.decode("ascii", errors="replace").strip()


class GramineEvidenceSource:
    """An :class:`~sanctum.platforms.evidence.EvidenceSource` backed by Gramine's pseudo files.

    Args:
        root: The file-system root under which ``dev/attestation`` lives.
        io: File operations; the default performs real system calls.
    """

    def __init__(self, root: Path = Path("/"), *, io: DeviceIO | None = None) -> None:
        """Create a source reading ``<root>/dev/attestation``."""
        self._dir = root / _ATTESTATION_DIR
        self._root = root
        self._io: DeviceIO = io or OsDeviceIO()
        self._lock = threading.Lock()

    @property
    def info(self) -> PlatformInfo:
        """Describe the platform: SGX through Gramine, never simulated."""
        return PlatformInfo(
            name="gramine",
            tee="sgx",
            simulated=False,
            details={"device": str(self._dir), "attestation_type": _SUPPORTED_TYPE},
        )

    def check(self) -> None:
        """Check that Gramine is present and configured for DCAP attestation.

        Raises:
            PlatformUnavailableError: ``platform.unavailable`` when ``/dev/attestation`` is missing.
            PlatformConfigurationError: ``platform.attestation_type_unsupported`` when the type is
                not ``dcap``.
        """
        kind = read_attestation_type(self._root, self._io)
        if kind != _SUPPORTED_TYPE:
            raise PlatformConfigurationError(
                f"Gramine's attestation type is {kind!r}; Sanctum needs 'dcap'",
                code="platform.attestation_type_unsupported",
                hint='Set sgx.remote_attestation = "dcap" in the Gramine manifest '
                "(EPID attestation is retired by Intel).",
                details={"attestation_type": kind},
            )

    def quote(self, report_data: bytes) -> bytes:
        """Return a DCAP quote from the platform's QE over ``report_data``.

        Raises:
            UsageError: ``platform.report_data_too_long`` when ``report_data`` exceeds 64 bytes.
            PlatformUnavailableError: ``platform.unavailable`` (device missing or I/O error),
                ``platform.short_write``, ``platform.empty_quote``, ``platform.short_read``,
                ``platform.bad_quote``, or ``platform.report_data_mismatch`` when the quote
                carries other report data (another writer in this process).
            PlatformConfigurationError: ``platform.attestation_type_unsupported``.
        """
        padded = pad_report_data(report_data)
        with self._lock:
            self.check()
            target = self._dir / "user_report_data"
            try:
                written = self._io.write(target, padded)
            except OSError as error:
                raise self._io_error("write", target, error) from error
            if written != len(padded):
                raise PlatformUnavailableError(
                    f"{target} took {written} of {len(padded)} bytes of report data",
                    code="platform.short_write",
                    details={"written": written, "expected": len(padded)},
                )
            source = self._dir / "quote"
            try:
                data = self._io.read(source)
            except OSError as error:
                raise self._io_error("read", source, error) from error
        framing = check_quote_framing(data, source=str(source))
        if framing.tee != "sgx":
            raise PlatformUnavailableError(
                f"{source} returned a {framing.tee.upper()} quote; Gramine quotes are SGX quotes",
                code="platform.bad_quote",
            )
        if framing.report_data != padded:
            raise PlatformUnavailableError(
                f"the quote read from {source} carries different report data than was written; "
                "another thread or process is using /dev/attestation",
                code="platform.report_data_mismatch",
                hint="Serialise quoting in the enclave (one EvidenceSource per process) and retry.",
            )
        return data

    @staticmethod
    def _io_error(action: str, path: Path, error: OSError) -> PlatformUnavailableError:
        return PlatformUnavailableError(
            f"cannot {action} {path}: {error.strerror or error}",
            code="platform.unavailable",
            hint="Is this process running inside a Gramine SGX enclave with DCAP enabled?",
            details={"path": str(path)},
        )
