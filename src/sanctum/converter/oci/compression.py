"""Layer (de)compression: gzip, zstd or none, as streams with bounded memory.

gzip layers are inflated by ISA-L (:mod:`isal.isal_zlib`) when it is installed: the same
``decompressobj`` interface as :mod:`zlib`, the same output and the same checks (header,
CRC-32, length), about twice as fast on typical layers (ADR 0072). :mod:`zlib` is the
fallback.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Protocol, cast

import zstandard

from sanctum.converter.errors import ImageError
from sanctum.converter.oci.model import Compression

_inflate_module: Any
try:
    from isal import isal_zlib as _inflate_module
except ImportError:  # pragma: no cover (isal is a dependency; this keeps zlib as a fallback)
    _inflate_module = zlib

#: Exceptions a gzip inflater raises on corrupt data.
INFLATE_ERRORS: Final[tuple[type[Exception], ...]] = (zlib.error, _inflate_module.error)
_DECOMPRESSION_ERRORS: Final[tuple[type[Exception], ...]] = (
    zstandard.ZstdError,
    EOFError,
    gzip.BadGzipFile,
    *INFLATE_ERRORS,
)

__all__ = [
    "INFLATE_ERRORS",
    "Readable",
    "decompression_errors",
    "gzip_inflater",
    "open_decompressed",
    "sniff_compression",
]

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"


class Readable(Protocol):
    """Anything with ``read(size)`` returning bytes (b"" at EOF)."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes."""
        ...


def sniff_compression(head: bytes) -> Compression:
    """Return the compression of a stream starting with ``head`` (at least 4 bytes)."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


def gzip_inflater() -> Any:
    """Return a new inflater of one gzip member (``decompressobj(31)``: ISA-L, else zlib)."""
    return _inflate_module.decompressobj(31)


def open_decompressed(kind: Compression, source: Readable) -> Readable:
    """Return a stream of the decompressed bytes of ``source``.

    Wrap reads in :func:`decompression_errors` to turn codec failures into ``ImageError``.
    """
    if kind == "gzip":
        return gzip.GzipFile(fileobj=cast("Any", source), mode="rb")
    if kind == "zstd":
        reader: Callable[..., Readable] = zstandard.ZstdDecompressor().stream_reader
        return reader(source, read_across_frames=True, closefd=False)
    return source


@contextmanager
def decompression_errors(what: str) -> Iterator[None]:
    """Turn gzip/zstd failures inside the block into ``ImageError(image.malformed)``.

    Raises:
        ImageError: The compressed data is corrupt or truncated (``image.malformed``).
    """
    try:
        yield
    except _DECOMPRESSION_ERRORS as exc:
        raise ImageError(
            f"{what} does not decompress: {type(exc).__name__}: {exc}", code="image.malformed"
        ) from None
