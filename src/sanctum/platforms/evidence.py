"""The evidence-source Protocol: something that turns 64 bytes of report data into a quote."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = ["REPORT_DATA_SIZE", "EvidenceSource", "PlatformInfo", "TeeKind"]

#: Size of the report-data field every quote carries (SGX and TDX).
REPORT_DATA_SIZE = 64

TeeKind = Literal["sgx", "tdx", "sev-snp"]


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """What an evidence source is.

    Attributes:
        name: Backend name, for example ``simulated``, ``gramine`` or ``configfs-tsm``.
        tee: The kind of trusted execution environment the quotes describe.
        simulated: True when the evidence comes from software with no hardware protection.
        details: Backend facts for operators (device paths, provider names, versions).
    """

    name: str
    tee: TeeKind
    simulated: bool
    details: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class EvidenceSource(Protocol):
    """A source of attestation evidence (quotes) bound to caller-chosen report data."""

    @property
    def info(self) -> PlatformInfo:
        """Describe the platform the quotes come from."""
        ...

    def quote(self, report_data: bytes) -> bytes:
        """Return a quote whose report-data field is ``report_data``.

        ``report_data`` is at most :data:`REPORT_DATA_SIZE` bytes; shorter input is padded with
        zero bytes to that size.

        Raises:
            sanctum.errors.UsageError: ``report_data`` is longer than 64 bytes.
            sanctum.errors.UnavailableError: The platform could not produce a quote.
        """
        ...
