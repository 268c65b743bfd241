"""Fake device trees for the hardware backends: a fake Gramine and a fake configfs-tsm kernel.

Both sit behind :class:`sanctum.platforms._devio.DeviceIO` and delegate every file operation to
the real :class:`~sanctum.platforms._devio.OsDeviceIO` on a temporary directory, adding only what
the real driver does between the system calls:

- Gramine: reading ``quote`` returns a recorded real SGX quote whose report-data field is what
  was last written to ``user_report_data`` (the QE quotes the enclave report, which carries the
  report data). The signature no longer matches, which the backends never check.
- configfs-tsm (``Documentation/ABI/testing/configfs-tsm-report``): ``mkdir`` of an entry
  populates ``provider``, ``generation`` (0), ``inblob``, ``outblob``; each write to ``inblob``
  increments ``generation``; reading ``outblob`` produces the report for the current ``inblob``
  (a recorded real TDX quote with the report data patched in); ``rmdir`` removes the entry.

Knobs let a test break exactly one step (short write, truncated evidence, a concurrent writer).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sanctum.platforms._devio import OsDeviceIO

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dcap" / "cases"
SGX_QUOTE = (VECTORS / "sgx-v3-phala.quote.bin").read_bytes()
TDX_QUOTE = (VECTORS / "tdx-v4-phala.quote.bin").read_bytes()
SGX_REPORT_DATA_AT = 48 + 320
TDX_REPORT_DATA_AT = 48 + 520


def patch_report_data(quote: bytes, offset: int, report_data: bytes) -> bytes:
    return quote[:offset] + report_data + quote[offset + 64 :]


def make_gramine_tree(root: Path, attestation_type: str = "dcap") -> Path:
    device = root / "dev" / "attestation"
    device.mkdir(parents=True)
    (device / "attestation_type").write_text(attestation_type)
    (device / "user_report_data").write_bytes(b"")
    (device / "quote").write_bytes(b"")
    return root


@dataclass
class FakeGramine(OsDeviceIO):
    """Gramine's /dev/attestation driver behaviour on top of real files."""

    recorded_quote: bytes = SGX_QUOTE
    short_write: int | None = None
    truncate_quote_to: int | None = None
    patch: bool = True
    writes: list[bytes] = field(default_factory=list)

    def write(self, path: Path, data: bytes) -> int:
        if self.short_write is not None:
            data = data[: self.short_write]
        self.writes.append(data)
        return super().write(path, data)

    def read(self, path: Path) -> bytes:
        if path.name == "quote":
            report_data = super().read(path.parent / "user_report_data")
            quote = self.recorded_quote
            if self.patch:
                quote = patch_report_data(quote, SGX_REPORT_DATA_AT, report_data[:64])
            if self.truncate_quote_to is not None:
                quote = quote[: self.truncate_quote_to]
            path.write_bytes(quote)
        return super().read(path)


@dataclass
class FakeTsmKernel(OsDeviceIO):
    """The configfs-tsm report ABI on top of real directories and files."""

    provider: str = "tdx_guest"
    recorded_quote: bytes = TDX_QUOTE
    report_data_at: int = TDX_REPORT_DATA_AT
    short_write: int | None = None
    truncate_outblob_to: int | None = None
    concurrent_writes_during_read: int = 0
    generation_text: str | None = None
    created: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.created.append(path)
        (path / "provider").write_text(self.provider + "\n")
        (path / "generation").write_text("0\n")
        (path / "inblob").write_bytes(b"")
        (path / "outblob").write_bytes(b"")

    def rmdir(self, path: Path) -> None:
        for name in ("provider", "generation", "inblob", "outblob"):
            (path / name).unlink()
        self.removed.append(path)
        super().rmdir(path)

    def _bump(self, entry: Path) -> None:
        generation = int((entry / "generation").read_text())
        (entry / "generation").write_text(f"{generation + 1}\n")

    def write(self, path: Path, data: bytes) -> int:
        if self.short_write is not None:
            data = data[: self.short_write]
        taken = super().write(path, data)
        if path.name == "inblob":
            self._bump(path.parent)
        return taken

    def read(self, path: Path) -> bytes:
        entry = path.parent
        if path.name == "outblob":
            for _ in range(self.concurrent_writes_during_read):
                (entry / "inblob").write_bytes(b"\x55" * 64)
                self._bump(entry)
            report_data = (entry / "inblob").read_bytes()[:64].ljust(64, b"\0")
            blob = patch_report_data(self.recorded_quote, self.report_data_at, report_data)
            if self.truncate_outblob_to is not None:
                blob = blob[: self.truncate_outblob_to]
            path.write_bytes(blob)
        if path.name == "generation" and self.generation_text is not None:
            return self.generation_text.encode()
        return super().read(path)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path)
