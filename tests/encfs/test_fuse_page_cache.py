"""The FUSE mount with the kernel's page cache and writeback cache (ADR 0113).

What the kernel caches was written through the mount or authenticated when it was read; what it
does not hold is authenticated again when read. These tests pin that down, and check that the
writeback cache (writes buffered and reordered by the kernel) keeps the file exactly as a plain
file would be.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sanctum.encfs import EncryptedDirectory
from sanctum.encfs.fuse import fuse_available, mount_encrypted

pytestmark = pytest.mark.fuse

MIB = 1024 * 1024
CHUNK = 65536


@pytest.fixture
def fuse_ok(require_tool: Callable[..., str]) -> None:
    require_tool("fusermount3", package="fuse3")
    reason = fuse_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE should work in CI: {reason}")
        pytest.skip(f"FUSE unavailable: {reason}")


def _evict(path: Path) -> None:
    """Drop the kernel's cached pages of ``path`` (a file in the mount, clean after fsync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _read_until_error(path: Path) -> tuple[bytes, int | None]:
    """Read ``path`` in 1 MiB reads; return what came before an error and its errno."""
    parts: list[bytes] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            try:
                block = os.read(fd, MIB)
            except OSError as error:
                return b"".join(parts), error.errno
            if not block:
                return b"".join(parts), None
            parts.append(block)
    finally:
        os.close(fd)


@pytest.mark.parametrize(("seed", "writeback_cache"), [(1, True), (2, True), (3, False)])
def test_random_writes_through_the_mount_stay_exact(
    fuse_ok: None, tmp_path: Path, key: bytes, seed: int, writeback_cache: bool
) -> None:
    rng = random.Random(seed)
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    mnt.mkdir()
    model = bytearray()
    with mount_encrypted(host, mnt, key, durable=False, writeback_cache=writeback_cache):
        path = mnt / "f"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        for _step in range(60):
            action = rng.random()
            if action < 0.6:
                offset = rng.randrange(0, 3 * CHUNK * 4)
                data = rng.randbytes(rng.choice([1, 100, 4096, CHUNK, 3 * CHUNK + 17, MIB]))
                os.pwrite(fd, data, offset)
                model.extend(bytes(max(0, offset - len(model))))
                model[offset : offset + len(data)] = data
            elif action < 0.7:
                length = rng.randrange(0, max(1, len(model) + CHUNK))
                os.ftruncate(fd, length)
                del model[length:]
                model.extend(bytes(length - len(model)))
            elif action < 0.8:
                os.fsync(fd)
            elif action < 0.9:
                os.close(fd)
                fd = os.open(path, os.O_RDWR)
            else:
                offset = rng.randrange(0, len(model) + 1)
                assert os.pread(fd, 3 * CHUNK, offset) == bytes(model[offset : offset + 3 * CHUNK])
            assert os.fstat(fd).st_size == len(model)
        os.close(fd)
        assert path.read_bytes() == bytes(model)
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        assert ed.read_file("f") == bytes(model)
        assert ed.verify() == 1


def test_cached_pages_are_served_and_evicted_pages_are_authenticated_again(
    fuse_ok: None, tmp_path: Path, key: bytes
) -> None:
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    mnt.mkdir()
    data = os.urandom(4 * CHUNK)
    with mount_encrypted(host, mnt, key):
        (mnt / "f").write_bytes(data)
        slot = next(p for p in host.iterdir() if p.suffix == ".0" and p.stat().st_size)
        _flip(slot, 2 * CHUNK + 100)
        # What the kernel holds was written through the mount: it is served as is (ADR 0113).
        assert (mnt / "f").read_bytes() == data
        _evict(mnt / "f")
        # Evicted, the pages are read from the host again and the change is detected.
        prefix, error = _read_until_error(mnt / "f")
        assert error == errno.EIO
        assert data.startswith(prefix)
        with (mnt / "f").open("rb") as handle:
            assert handle.read(1000) == data[:1000]
            with pytest.raises(OSError) as caught:
                os.pread(handle.fileno(), 10, 2 * CHUNK + 50)
            assert caught.value.errno == errno.EIO


@pytest.mark.parametrize("writeback_cache", [True, False])
def test_without_page_cache_every_open_reads_from_the_host(
    fuse_ok: None, tmp_path: Path, key: bytes, writeback_cache: bool
) -> None:
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    mnt.mkdir()
    data = os.urandom(3 * CHUNK)
    options: dict[str, Any] = {
        "page_cache": False,
        "writeback_cache": writeback_cache,
        "readahead_kb": None,
    }
    with mount_encrypted(host, mnt, key, **options):
        (mnt / "f").write_bytes(data)
        assert (mnt / "f").read_bytes() == data
        slot = next(p for p in host.iterdir() if p.suffix == ".0" and p.stat().st_size)
        _flip(slot, CHUNK + 1)
        prefix, error = _read_until_error(mnt / "f")
        assert error == errno.EIO
        assert data.startswith(prefix)


def test_large_sequential_reads_round_trip_after_eviction(
    fuse_ok: None, tmp_path: Path, key: bytes
) -> None:
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    mnt.mkdir()
    data = os.urandom(5 * MIB + 12345)
    with mount_encrypted(host, mnt, key, durable=False) as mount:
        (mnt / "f").write_bytes(data)
        _evict(mnt / "f")
        assert _read_until_error(mnt / "f") == (data, None)
        entry = Path(f"/sys/class/bdi/{os.major(mnt.stat().st_dev)}:{os.minor(mnt.stat().st_dev)}")
        if os.geteuid() == 0 and (entry / "read_ahead_kb").exists():
            assert (entry / "read_ahead_kb").read_text().strip() == "1024"
        assert mount.pid > 0
