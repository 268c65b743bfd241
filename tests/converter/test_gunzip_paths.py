"""Both gzip inflate paths of the analysis give gzip's answer (ADR 0125).

The analysis inflates layers with ISA-L's one-member ``IgzipDecompressor`` and keeps the
``decompressobj`` path (ISA-L or zlib) for when ISA-L is missing; both must accept and refuse
exactly what :mod:`gzip` does, whatever the read sizes.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sanctum.converter import analysis
from sanctum.converter.analysis import _gunzip_members, _inflate
from sanctum.converter.errors import ImageError
from sanctum.converter.oci.compression import (
    INFLATE_ERRORS,
    gzip_inflater,
    gzip_member_decompressor,
)

Inflate = Callable[[io.BytesIO, bytes], Iterator[bytes]]
PATHS: list[Inflate] = [_gunzip_members, _inflate]
PLAIN = os.urandom(300_000) + bytes(700_000) + os.urandom(5000)


def _members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part, compresslevel=1, mtime=0) for part in parts)


def _run(path: Inflate, blob: bytes) -> bytes:
    source = io.BytesIO(blob)
    head = source.read(4)
    chunks = list(path(source, head))
    assert all(len(chunk) <= 1 << 20 for chunk in chunks)
    return b"".join(chunks)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "blob",
    [
        _members(PLAIN),
        _members(PLAIN[:10], PLAIN[10:500_000], PLAIN[500_000:]),
        _members(PLAIN) + bytes(5000),
        _members(PLAIN[:1000]) + bytes(3) + _members(PLAIN[1000:]),
        _members(b""),
    ],
)
def test_members_and_padding_inflate_as_gzip_does(path: Inflate, blob: bytes) -> None:
    assert _run(path, blob) == gzip.decompress(blob)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "mangle",
    [
        lambda blob: blob[:-3],
        lambda blob: blob[: len(blob) // 3],
        lambda blob: blob + b"\x1f",
        lambda blob: blob + b"not gzip",
        lambda blob: blob[:-8] + bytes(4) + blob[-4:],
        lambda blob: blob[:-4] + b"\x01\x00\x00\x00",
    ],
)
def test_broken_streams_are_refused(path: Inflate, mangle: Callable[[bytes], bytes]) -> None:
    blob = mangle(_members(PLAIN))
    with pytest.raises((EOFError, gzip.BadGzipFile, *INFLATE_ERRORS)):
        gzip.decompress(blob)  # The reference refuses it too.
    with pytest.raises((EOFError, *INFLATE_ERRORS)):
        _run(path, blob)


class _Counting:
    """A gzip inflater that counts the compressed bytes it is given (input copies included)."""

    fed = 0

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def decompress(self, data: bytes | memoryview, max_length: int) -> bytes:
        _Counting.fed += len(data)
        out: bytes = self._inner.decompress(data, max_length)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _SmallReads(io.BytesIO):
    """A source whose reads return at most ``size`` bytes (members span reads)."""

    def __init__(self, data: bytes, size: int) -> None:
        super().__init__(data)
        self._size = size

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(self._size if size is None or size < 0 else min(size, self._size))


@pytest.mark.parametrize("read_size", [None, 1000, 4093])
@pytest.mark.parametrize("path", PATHS)
def test_many_tiny_members_cost_work_linear_in_the_stream(
    monkeypatch: pytest.MonkeyPatch, path: Inflate, read_size: int | None
) -> None:
    # 20,000 empty members (400 KB), some with padding after them, then one with data: every
    # inflater call gets bytes of the stream once, or a small multiple of it, never the rest
    # of the read buffer again at each member's end (which was quadratic).
    empty = gzip.compress(b"", mtime=0)
    blob = (empty * 10 + bytes(3)) * 2000 + _members(PLAIN[:50_000])
    monkeypatch.setattr(_Counting, "fed", 0)
    monkeypatch.setattr(
        analysis, "gzip_member_decompressor", lambda: _Counting(gzip_member_decompressor())
    )
    monkeypatch.setattr(analysis, "gzip_inflater", lambda: _Counting(gzip_inflater()))
    source = io.BytesIO(blob) if read_size is None else _SmallReads(blob, read_size)
    head = source.read(4)
    assert b"".join(path(source, head)) == gzip.decompress(blob) == PLAIN[:50_000]
    assert len(blob) <= _Counting.fed <= 4 * len(blob)


@pytest.mark.parametrize("path", PATHS)
def test_a_layer_with_too_many_members_is_refused(
    monkeypatch: pytest.MonkeyPatch, path: Inflate
) -> None:
    monkeypatch.setattr(analysis, "_MAX_GZIP_MEMBERS", 10)
    assert _run(path, _members(*[b"x"] * 10)) == b"x" * 10
    with pytest.raises(ImageError, match="more than 10 members") as refused:
        _run(path, _members(*[b"x"] * 11))
    assert refused.value.code == "image.malformed"
