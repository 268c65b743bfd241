"""Encrypted directories: throughput against the same disk unencrypted, in the same run.

Workloads (1 GiB by default, ``--size-mib`` to change):

- ``write``: sequential 1 MiB writes, then ``fsync`` (the commit);
- ``read cache``: sequential 1 MiB reads right after the write (what the page cache holds:
  for FUSE with ``page_cache`` the decrypted pages, for the API only the ciphertext);
- ``read disk``: the same after evicting every file involved from the page cache (the backing
  files and the mount's own pages, with ``posix_fadvise(DONTNEED)``; ``--drop-caches`` also
  writes 3 to ``/proc/sys/vm/drop_caches``, which needs root and slows everyone else down);
- ``random cache``: ``--random-reads`` reads of 4 KiB at random offsets, the file cached;
- ``random disk``: the same after evicting again.

Targets: a plain file (the baseline), the ``EncryptedDirectory`` API and, when FUSE works here,
a FUSE mount (``mount_encrypted``) with its defaults and, for comparison, "uncached" as before
ADR 0113 (``page_cache=False, writeback_cache=False, readahead_kb=None``: no kernel caching
across opens, synchronous writes, the kernel's 128 KiB read-ahead).

Each round runs one workload on every target back to back before the next workload, so the
plaintext baseline and the encrypted targets see nearly the same machine load; each ratio is
taken against the plaintext of the same round. The report gives median ratios with their
spread over the rounds, the load average, and the CPU time spent per GiB (the benchmark
process plus, for FUSE, the server process): unlike throughput, CPU cost hardly moves with
other jobs on the machine. Goal: sequential throughput >= 50% of plaintext.
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sanctum.encfs import EncryptedDirectory, fuse_available, mount_encrypted

BLOCK = 1024 * 1024
SMALL = 4096
KEY = bytes(range(32))
METRICS = ("write", "read cache", "read disk", "random cache", "random disk")


def _evict(paths: list[Path], *, drop_caches: bool) -> None:
    """Drop the page cache of ``paths`` (files, or every file under a directory)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
        elif path.exists():
            files.append(path)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if drop_caches:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def _cpu_seconds(pid: int | None) -> float:
    """Return the CPU time (user + system) of this process, plus that of ``pid`` if given."""
    times = os.times()
    total = times.user + times.system
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Target:
    """One way of storing the file: the workloads as callables, and what to evict."""

    name: str
    write: Callable[[], None]
    read: Callable[[], None]
    random_read: Callable[[], None]
    evict_paths: list[Path]
    server_pid: int | None = None
    times: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def run(self, metric: str) -> None:
        """Run and time one workload."""
        action = {
            "write": self.write,
            "read cache": self.read,
            "read disk": self.read,
            "random cache": self.random_read,
            "random disk": self.random_read,
        }[metric]
        cpu = _cpu_seconds(self.server_pid)
        start = time.perf_counter()
        action()
        self.times[metric] = time.perf_counter() - start
        self.cpu[metric] = _cpu_seconds(self.server_pid) - cpu


def _file_target(
    name: str, path: Path, size: int, data: bytes, offsets: list[int], *, evict: list[Path]
) -> Target:
    """Return the workloads on a regular file (plain disk, or a file in a FUSE mount)."""

    def write() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for _offset in range(0, size, BLOCK):
                os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            while os.read(fd, BLOCK):
                pass
        finally:
            os.close(fd)

    def random_read() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset in offsets:
                os.pread(fd, SMALL, offset)
        finally:
            os.close(fd)

    return Target(name, write, read, random_read, [*evict, path])


def _api_target(
    directory: EncryptedDirectory, host: Path, size: int, data: bytes, offsets: list[int]
) -> Target:
    directory.create("big")

    def write() -> None:
        for offset in range(0, size, BLOCK):
            directory.write("big", offset, data)
        directory.flush("big")

    def read() -> None:
        for offset in range(0, size, BLOCK):
            directory.read("big", offset, BLOCK)

    def random_read() -> None:
        for offset in offsets:
            directory.read("big", offset, SMALL)

    return Target("API", write, read, random_read, [host])


def _fuse_variants() -> dict[str, dict[str, Any]]:
    """Return the FUSE configurations to measure (only the defaults on older code)."""
    variants: dict[str, dict[str, Any]] = {"FUSE": {}}
    parameters = inspect.signature(mount_encrypted).parameters
    if "writeback_cache" in parameters:
        variants["FUSE uncached"] = {
            "page_cache": False,
            "writeback_cache": False,
            "readahead_kb": None,
        }
    return variants


def _round(
    root: Path,
    size: int,
    data: bytes,
    offsets: list[int],
    args: argparse.Namespace,
    *,
    number: int,
) -> list[Target]:
    """Measure every workload on every target once (workload by workload)."""
    with ExitStack() as stack:
        (root / "plain").mkdir()
        targets = [_file_target("plaintext", root / "plain" / "big", size, data, offsets, evict=[])]
        if not args.no_api:
            directory = stack.enter_context(EncryptedDirectory.open(root / "api", KEY, create=True))
            targets.append(_api_target(directory, root / "api", size, data, offsets))
        if not args.no_fuse and fuse_available() is None:
            for variant, (name, options) in enumerate(_fuse_variants().items()):
                host, mountpoint = root / f"fuse{variant}", root / f"mnt{variant}"
                mountpoint.mkdir()
                mount = stack.enter_context(mount_encrypted(host, mountpoint, KEY, **options))
                target = _file_target(
                    name, mountpoint / "big", size, data, offsets, evict=[host, mountpoint / "big"]
                )
                target.server_pid = mount.pid
                targets.append(target)
        # Each round starts with another target, so none always pays for what the round before
        # left to the disk; before each write, the disk is flushed (untimed) for the same reason.
        order = targets[number % len(targets) :] + targets[: number % len(targets)]
        for metric in METRICS:
            if metric.endswith("disk"):
                _evict([p for t in targets for p in t.evict_paths], drop_caches=args.drop_caches)
            for target in order:
                if metric == "write":
                    os.sync()
                target.run(metric)
        return targets


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--random-reads", type=int, default=20000)
    parser.add_argument("--dir", type=Path, default=None, help="Work directory (on the disk).")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds (medians are reported).")
    parser.add_argument("--no-fuse", action="store_true")
    parser.add_argument("--no-api", action="store_true")
    parser.add_argument(
        "--drop-caches", action="store_true", help="Also drop all caches (root) when evicting."
    )
    args = parser.parse_args()
    size = args.size_mib * BLOCK
    data = os.urandom(BLOCK)
    rng = random.Random(7)
    offsets = [rng.randrange(0, size - SMALL) for _ in range(args.random_reads)]
    reason = "disabled" if args.no_fuse else fuse_available()
    if reason is not None:
        print(f"FUSE skipped: {reason}")
    print(f"load average before: {_load()}")

    # Warm-up: the first large write of a run pays for reclaiming page cache; do it untimed.
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-encfs-") as temp:
        _file_target("warm-up", Path(temp) / "warm-up", size, data, offsets[:1], evict=[]).write()

    rounds: list[dict[str, Target]] = []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-encfs-") as temp:
            targets = _round(Path(temp), size, data, offsets, args, number=number)
            rounds.append({target.name: target for target in targets})
    _report(rounds, args)
    print(f"load average after: {_load()}")


def _report(rounds: list[dict[str, Target]], args: argparse.Namespace) -> None:
    """Print medians (MiB/s or reads/s), median ratios with their spread, and CPU costs."""
    mib = args.size_mib
    print(
        f"\nsize {mib} MiB, {args.random_reads} random 4 KiB reads, {len(rounds)} rounds; "
        "medians (sequential MiB/s, random reads/s)"
    )
    print(f"{'':14}" + "".join(f"{metric:>14}" for metric in METRICS))
    for name in rounds[0]:
        cells = []
        for metric in METRICS:
            work = mib if not metric.startswith("random") else args.random_reads
            rates = [work / r[name].times[metric] for r in rounds]
            cells.append(f"{statistics.median(rates):14.0f}")
        print(f"{name:14}" + "".join(cells))
    print("\nratio to plaintext of the same round: median [min-max]")
    print(f"{'':14}" + "".join(f"{metric:>18}" for metric in METRICS))
    medians: dict[str, dict[str, float]] = {}
    for name in [name for name in rounds[0] if name != "plaintext"]:
        cells = []
        for metric in METRICS:
            ratios = [r["plaintext"].times[metric] / r[name].times[metric] for r in rounds]
            medians.setdefault(name, {})[metric] = statistics.median(ratios)
            cells.append(
                f"{statistics.median(ratios):7.2f} [{min(ratios):.2f}-{max(ratios):.2f}]".rjust(18)
            )
        print(f"{name:14}" + "".join(cells))
    print("\nCPU seconds per GiB (sequential) or per 10 000 random reads, median (app + server)")
    print(f"{'':14}" + "".join(f"{metric:>14}" for metric in METRICS))
    for name in rounds[0]:
        cells = []
        for metric in METRICS:
            per = 10000 / args.random_reads if metric.startswith("random") else 1024 / mib
            cells.append(f"{statistics.median(r[name].cpu[metric] * per for r in rounds):14.2f}")
        print(f"{name:14}" + "".join(cells))
    print()
    for name, ratio in medians.items():
        met = min(ratio["write"], ratio["read disk"]) >= 0.5
        print(
            f"goal (sequential >= 50% of plaintext) {name}: write {ratio['write']:.0%}, read "
            f"from disk {ratio['read disk']:.0%} -> {'met' if met else 'NOT met'}; read from "
            f"page cache {ratio['read cache']:.0%}, random 4 KiB {ratio['random cache']:.0%} "
            f"(cached) / {ratio['random disk']:.0%} (from disk)"
        )


if __name__ == "__main__":
    main()
