"""Layer (de)compression: gzip, zstd or none, as streams with bounded memory.

gzip layers are inflated by ISA-L when it is installed: :func:`gzip_member_decompressor`
gives ISA-L's ``IgzipDecompressor`` (one gzip member, header, CRC-32 and length checked, output
of a bounded size per call built in a single buffer), and :func:`gzip_inflater` its
``decompressobj`` with :mod:`zlib`'s interface; ISA-L is about twice as fast as zlib on typical
layers (ADR 0072), and the ``IgzipDecompressor`` saves the joining copy of each output chunk
that ``decompressobj`` makes (ADR 0125). :mod:`zlib` is the fallback.
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
_igzip: Any
try:
    from isal import igzip_lib as _igzip
    from isal import isal_zlib as _inflate_module
except ImportError:  # pragma: no cover (isal is a dependency; this keeps zlib as a fallback)
    _inflate_module = zlib
    _igzip = None

#: Exceptions a gzip inflater raises on corrupt data.
INFLATE_ERRORS: Final[tuple[type[Exception], ...]] = (
    zlib.error,
    _inflate_module.error,
    *((_igzip.IsalError,) if _igzip is not None else ()),
)
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
    "gzip_member_decompressor",
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


def gzip_member_decompressor() -> Any | None:
    """Return ISA-L's decompressor of one gzip member, or None without ISA-L.

    It has the interface of :class:`bz2.BZ2Decompressor`: ``decompress(data, max_length)``,
    ``needs_input``, ``eof`` and ``unused_data``; it checks the member's header, CRC-32 and
    length (raising one of :data:`INFLATE_ERRORS`).
    """
    if _igzip is None:  # pragma: no cover (isal is a dependency)
        return None
    return _igzip.IgzipDecompressor(_igzip.DECOMP_GZIP)


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
