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

import pytest

from sanctum.converter.analysis import _gunzip_members, _inflate
from sanctum.converter.oci.compression import INFLATE_ERRORS

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
