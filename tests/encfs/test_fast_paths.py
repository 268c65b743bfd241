"""The throughput paths (ADR 0113): ``read_into``, whole chunks sealed straight from a write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sanctum.encfs import EncfsIntegrityError, EncfsUsageError, EncryptedDirectory

Opener = Callable[..., EncryptedDirectory]

CHUNK = 64  # The chunk size of the ``open_dir`` fixture (conftest).


def _content(size: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


def test_read_into_matches_read_across_holes_dirty_and_committed_chunks(open_dir: Opener) -> None:
    ed = open_dir(cache_chunks=2)
    ed.write_file("f", _content(10 * CHUNK + 5))
    ed.truncate("f", 14 * CHUNK)  # A hole of zeros past the old end.
    ed.write("f", 3 * CHUNK + 10, b"dirty")  # Buffered, not committed.
    size = ed.stat("f").size
    for offset, length in [(0, size), (5, 3 * CHUNK), (CHUNK, CHUNK), (size - 7, 50), (0, 1)]:
        out = memoryview(bytearray(length))
        got = ed.read_into("f", offset, out)
        assert got == min(length, size - offset)
        assert bytes(out[:got]) == ed.read("f", offset, length)
    assert ed.read_into("f", size + 10, memoryview(bytearray(8))) == 0
    with pytest.raises(EncfsUsageError) as caught:
        ed.read_into("f", -1, memoryview(bytearray(8)))
    assert caught.value.code == "encfs.invalid_argument"
    ed.close()


def test_whole_chunks_sealed_from_a_write_survive_a_truncation_that_makes_one_final(
    open_dir: Opener,
) -> None:
    data = _content(20 * CHUNK + 3)
    with open_dir(cache_chunks=1) as ed:
        ed.create("f")
        ed.write("f", 0, data)  # Chunks 0..19 are sealed directly, 20 stays buffered.
        ed.flush("f")
        ed.truncate("f", 7 * CHUNK + 9)  # Chunk 7, sealed as non-final, becomes the last.
        ed.flush("f")
    with open_dir() as again:
        assert again.read_file("f") == data[: 7 * CHUNK + 9]
        assert again.verify() == 1


def test_rewriting_whole_chunks_keeps_the_committed_version_until_the_commit(
    open_dir: Opener, host: Path
) -> None:
    first, second = _content(8 * CHUNK), bytes(reversed(_content(8 * CHUNK)))
    ed = open_dir(cache_chunks=1)
    ed.write_file("f", first)
    ed.write("f", 0, second)  # Sealed into the free slot, not committed.
    assert ed.read_file("f") == second
    del ed  # The process dies before any commit.
    with open_dir() as again:
        assert again.read_file("f") == first
        again.write("f", 0, second)
        again.flush("f")
    with open_dir() as third:
        assert third.read_file("f") == second


def test_a_directly_sealed_chunk_is_still_authenticated(open_dir: Opener, host: Path) -> None:
    with open_dir(cache_chunks=1) as ed:
        ed.create("f")
        ed.write("f", 0, _content(6 * CHUNK))
        ed.flush("f")
        file_id = ed.stat("f").file_id
    slot = host / f"{file_id}.0"
    raw = bytearray(slot.read_bytes())
    raw[2 * CHUNK + 3] ^= 1
    slot.write_bytes(bytes(raw))
    with open_dir() as ed:
        assert ed.read("f", 0, CHUNK) == _content(CHUNK)
        with pytest.raises(EncfsIntegrityError) as caught:
            ed.read("f", 2 * CHUNK, CHUNK)
        assert caught.value.code == "encfs.tampered"
