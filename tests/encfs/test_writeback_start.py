"""Early writeback of ciphertext (ADR 0113): started every few MiB, durable directories only."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sanctum.encfs import EncryptedDirectory, _file

Opener = Callable[..., EncryptedDirectory]

CHUNK = 64  # The chunk size of the ``open_dir`` fixture (conftest).


def _content(size: int) -> bytes:
    return bytes((i * 13 + i // 253) % 256 for i in range(size))


def _record(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []
    real = _file.start_writeback

    def spy(fd: int, offset: int, length: int) -> None:
        calls.append((fd, offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(_file, "start_writeback", spy)
    monkeypatch.setattr(_file, "_WRITEBACK", 4 * CHUNK)
    return calls


def test_sync_file_range_is_found_on_linux() -> None:
    if sys.platform != "linux":
        pytest.skip("sync_file_range is Linux-only")
    assert _file._sync_file_range is not None


def test_sequential_writes_start_writeback_of_every_range_written(
    open_dir: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record(monkeypatch)
    ed = open_dir(durable=True)
    ed.create("f")
    data = _content(40 * CHUNK + 9)
    for offset in range(0, len(data), 3 * CHUNK):  # Partial and whole chunks, buffered and not.
        ed.write("f", offset, data[offset : offset + 3 * CHUNK])
    ed.flush("f")
    assert calls
    covered: set[int] = set()
    for _fd, offset, length in calls:
        assert offset % CHUNK == 0
        assert length % CHUNK == 0
        assert length >= 4 * CHUNK
        covered.update(range(offset // CHUNK, (offset + length) // CHUNK))
    # Every chunk but those sealed since the last start (at most the threshold's worth) was
    # handed to the host's writeback before the commit's fsync.
    assert len(covered) >= 41 - 4
    assert ed.read("f") == data
    ed.close()
    again = open_dir(durable=True)
    assert again.read("f") == data
    again.close()


def test_random_rewrites_are_bounded_and_read_back(
    open_dir: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record(monkeypatch)
    ed = open_dir(durable=True, cache_chunks=2)
    model = bytearray(_content(30 * CHUNK))
    ed.write_file("f", bytes(model))
    for step in range(60):
        offset = (step * 7919) % (29 * CHUNK)
        piece = bytes([step]) * (CHUNK + step % 5)
        ed.write("f", offset, piece)
        model[offset : offset + len(piece)] = piece
    ed.flush("f")
    size = 30 * CHUNK
    assert calls
    assert all(offset >= 0 and offset + length <= size for _fd, offset, length in calls)
    assert ed.read("f") == bytes(model)
    ed.close()


def test_no_writeback_is_started_without_durability(
    open_dir: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record(monkeypatch)
    ed = open_dir(durable=False)
    ed.write_file("f", _content(40 * CHUNK))
    ed.close()
    assert calls == []


def test_start_writeback_is_best_effort(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "x", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"y" * 8192, 0)
        _file.start_writeback(fd, 0, 8192)
    finally:
        os.close(fd)
    _file.start_writeback(fd, 0, 8192)  # A closed descriptor: nothing raised, nothing done.
