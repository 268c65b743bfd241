"""``sanctum inspect``: look at a running workload the way a privileged attacker on the host would.

``sanctum inspect memory --pid PID --find TEXT`` reads every readable mapping of the process
(``/proc/PID/maps`` + ``/proc/PID/mem``, which needs root or ptrace rights over it) and reports
where TEXT appears. It is Data Shield's "privileged attacker" demonstration made honest:

- on the **simulated platform** there is no enclave, so the secret sits in ordinary memory and
  the tool finds it, and says plainly that simulation gives no memory encryption;
- on **SGX hardware** the enclave's pages are mapped from ``/dev/sgx_enclave`` but read back as
  ``0xFF`` bytes (the abort-page semantics of enclave memory accessed from outside), so a secret
  that lives only inside the enclave is not found; the tool counts those pages and checks they
  read as ``0xFF``.

The scan itself (:func:`scan_memory`) is a pure function over parsed regions and a read
callback; only :func:`read_process` touches ``/proc``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import click

from sanctum.cli._base import SanctumGroup, emit_json, json_option, stdout_console
from sanctum.errors import NotFoundError, PermissionDeniedError, UsageError

__all__ = ["MemoryScan", "Region", "group", "parse_maps", "read_process", "scan_memory"]

_ENCLAVE_DEVICES: Final = ("/dev/sgx_enclave", "/dev/sgx/enclave", "/dev/isgx")
_CHUNK: Final = 4 << 20
_MAX_MATCHES: Final = 50


@dataclass(frozen=True, slots=True)
class Region:
    """One line of ``/proc/PID/maps``.

    Attributes:
        start: First address.
        end: One past the last address.
        perms: Permission string (``r-xp``...).
        path: Backing file or pseudo-name (``[heap]``), empty for anonymous memory.
    """

    start: int
    end: int
    perms: str
    path: str

    @property
    def readable(self) -> bool:
        """Whether the mapping is readable."""
        return self.perms.startswith("r")

    @property
    def enclave(self) -> bool:
        """Whether the mapping is SGX enclave memory."""
        return self.path.startswith(_ENCLAVE_DEVICES)


def parse_maps(text: str) -> list[Region]:
    """Parse the text of ``/proc/PID/maps``.

    Raises:
        UsageError: A line is malformed (``inspect.maps_malformed``).
    """
    regions = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(maxsplit=5)
        try:
            start, end = (int(value, 16) for value in parts[0].split("-"))
            perms = parts[1]
        except (ValueError, IndexError) as error:
            raise UsageError(
                f"malformed maps line: {line!r}", code="inspect.maps_malformed"
            ) from error
        regions.append(Region(start, end, perms, parts[5].strip() if len(parts) > 5 else ""))
    return regions


@dataclass(frozen=True, slots=True)
class Match:
    """Where the text was found.

    Attributes:
        address: Virtual address of the first byte.
        region: The mapping's path or pseudo-name (``anonymous`` when empty).
        perms: The mapping's permissions.
        encoding: ``utf-8`` or ``utf-16-le``.
    """

    address: int
    region: str
    perms: str
    encoding: str


@dataclass(frozen=True, slots=True)
class MemoryScan:
    """Result of a memory scan.

    Attributes:
        found: Whether the text appears anywhere readable.
        matches: The first matches (at most 50).
        regions_scanned: Readable regions read.
        bytes_scanned: Bytes read.
        unreadable_regions: Readable-looking regions the kernel refused to read.
        enclave_regions: SGX enclave mappings seen.
        enclave_bytes: Bytes of enclave memory read.
        enclave_all_ff: Whether every enclave byte read back as 0xFF.
    """

    found: bool
    matches: tuple[Match, ...]
    regions_scanned: int
    bytes_scanned: int
    unreadable_regions: int
    enclave_regions: int
    enclave_bytes: int
    enclave_all_ff: bool


def scan_memory(
    regions: Iterable[Region], read: Callable[[int, int], bytes], text: str
) -> MemoryScan:
    """Search ``text`` (UTF-8 and UTF-16-LE) in every readable region.

    Args:
        regions: The process's mappings.
        read: Returns ``size`` bytes at an address; raises ``OSError`` when refused.
        text: What to look for (non-empty).

    Returns:
        The scan result.

    Raises:
        UsageError: ``text`` is empty (``inspect.text_empty``).
    """
    if not text:
        raise UsageError("give a non-empty text to find", code="inspect.text_empty")
    needles = {"utf-8": text.encode("utf-8"), "utf-16-le": text.encode("utf-16-le")}
    overlap = max(len(needle) for needle in needles.values()) - 1
    matches: list[Match] = []
    scanned = bytes_scanned = unreadable = enclaves = enclave_bytes = 0
    all_ff = True
    for region in regions:
        if region.enclave:
            enclaves += 1
        if not region.readable:
            continue
        scanned += 1
        tail = b""
        address = region.start
        while address < region.end:
            size = min(_CHUNK, region.end - address)
            try:
                data = read(address, size)
            except OSError:
                unreadable += 1
                break
            bytes_scanned += len(data)
            if region.enclave:
                enclave_bytes += len(data)
                all_ff = all_ff and data.count(0xFF) == len(data)
            window = tail + data
            base = address - len(tail)
            for encoding, needle in needles.items():
                position = window.find(needle)
                while position != -1 and len(matches) < _MAX_MATCHES:
                    matches.append(
                        Match(base + position, region.path or "anonymous", region.perms, encoding)
                    )
                    position = window.find(needle, position + 1)
            tail = window[-overlap:] if overlap else b""
            address += size
    unique = tuple(dict.fromkeys(matches))
    return MemoryScan(
        found=bool(unique),
        matches=unique,
        regions_scanned=scanned,
        bytes_scanned=bytes_scanned,
        unreadable_regions=unreadable,
        enclave_regions=enclaves,
        enclave_bytes=enclave_bytes,
        enclave_all_ff=all_ff and enclave_bytes > 0,
    )


def read_process(pid: int, text: str, *, proc: Path = Path("/proc")) -> MemoryScan:
    """Scan the memory of process ``pid`` for ``text``.

    Raises:
        NotFoundError: No such process (``inspect.no_process``).
        PermissionDeniedError: Its memory may not be read (``inspect.permission_denied``).
        UsageError: ``text`` is empty.
    """
    base = proc / str(pid)
    try:
        regions = parse_maps((base / "maps").read_text())
        fd = os.open(base / "mem", os.O_RDONLY)
    except FileNotFoundError as error:
        raise NotFoundError(f"no process {pid}", code="inspect.no_process") from error
    except PermissionError as error:
        raise PermissionDeniedError(
            f"cannot read the memory of process {pid}",
            code="inspect.permission_denied",
            hint="run as root (or with CAP_SYS_PTRACE), as a privileged attacker would",
        ) from error
    try:
        return scan_memory(regions, lambda address, size: os.pread(fd, size, address), text)
    finally:
        os.close(fd)


def verdict(scan: MemoryScan) -> tuple[str, str]:
    """Return a one-line verdict and its explanation."""
    if scan.enclave_regions:
        explanation = (
            f"{scan.enclave_regions} SGX enclave mappings; {scan.enclave_bytes} bytes read from "
            "them came back as "
            + ("0xFF only (abort-page semantics: enclave memory is encrypted and inaccessible "
               "from outside)" if scan.enclave_all_ff else "data other than 0xFF (a debug "
               "enclave, or not enclave memory?)")
        )  # fmt: skip
    else:
        explanation = (
            "no SGX enclave memory in this process: on the simulated platform (or outside an "
            "enclave) memory is NOT encrypted, so anything the workload holds is readable by "
            "a privileged attacker on the host. Simulation gives no memory encryption."
        )
    if scan.found:
        head = f"FOUND: the text is readable in {len(scan.matches)} place(s) of process memory"
    else:
        head = "NOT FOUND: the text does not appear in any readable memory of the process"
    return head, explanation


@click.group(cls=SanctumGroup)
def group() -> None:
    """Inspect running workloads from the host, as a privileged attacker would."""


@group.command()
@click.option("--pid", type=int, required=True, help="Process to inspect.")
@click.option("--find", "text", required=True, help="Text to look for (UTF-8 and UTF-16).")
@json_option
def memory(pid: int, text: str, as_json: bool) -> None:
    """Search a process's readable memory for TEXT (needs root or ptrace rights).

    Exit status 0 whether or not the text is found: this is a report, not a check.
    """
    scan = read_process(pid, text)
    head, explanation = verdict(scan)
    if as_json:
        doc = asdict(scan)
        doc["matches"] = [
            {**asdict(match), "address": hex(match.address)} for match in scan.matches
        ]
        doc.update({"pid": pid, "verdict": head, "explanation": explanation})
        emit_json(doc)
        return
    console = stdout_console()
    console.print(f"[bold]{'[red]' if scan.found else '[green]'}{head}[/][/]")
    for match in scan.matches[:10]:
        console.print(f"  {match.address:#x}  {match.perms}  {match.region}  ({match.encoding})")
    if len(scan.matches) > 10:
        console.print(f"  … and {len(scan.matches) - 10} more")
    console.print(
        f"[dim]{scan.regions_scanned} regions, {scan.bytes_scanned / 1e6:.1f} MB read, "
        f"{scan.unreadable_regions} unreadable[/]"
    )
    console.print(f"[yellow]{explanation}[/]")
