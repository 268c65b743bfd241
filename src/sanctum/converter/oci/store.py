"""Image stores: the small Protocols every image source and sink implements, and a fake.

An :class:`ImageSource` hands out a manifest (resolved to linux/amd64), the image config, and
blob streams that verify their digest when they reach EOF; an :class:`ImageSink` accepts blobs
and manifests. The registry, OCI layout and docker-archive stores implement these Protocols, and
:class:`MemoryImageStore` is an in-memory fake of both for tests and for pure callers.

Every read is verified: :class:`BlobReader` counts and hashes what passes through it and raises
:class:`~sanctum.converter.errors.ImageError` (``image.digest_mismatch``) at EOF (or as soon as
too many bytes arrive) instead of returning unverified bytes silently. A consumer that stops
before EOF (a tar reader stops at the end-of-archive marker) calls :meth:`BlobReader.finish` to
read the rest and verify.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO, Final, Protocol, Self, runtime_checkable

from sanctum.converter.errors import ImageError
from sanctum.converter.oci.model import (
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    digest_of,
    new_hasher,
    parse_manifest_or_index,
)

__all__ = [
    "CHUNK_SIZE",
    "MAX_CONFIG_SIZE",
    "MAX_MANIFEST_SIZE",
    "BaseImageSource",
    "BlobReader",
    "Closing",
    "ImageSink",
    "ImageSource",
    "MemoryImageStore",
    "ProgressCallback",
    "SpooledBlobReader",
    "not_found",
    "read_small_blob",
    "verifying_reader",
]

#: Read size used when streaming blobs.
CHUNK_SIZE: Final = 1 << 20
#: Largest manifest or index accepted (the distribution spec suggests 4 MiB).
MAX_MANIFEST_SIZE: Final = 4 << 20
#: Largest image config accepted; configs are small, this only bounds memory.
MAX_CONFIG_SIZE: Final = 32 << 20

#: Called with the number of bytes just transferred.
ProgressCallback = Callable[[int], None]


class BlobReader(io.RawIOBase):
    """A read-only stream over a blob that checks its size and digest.

    The stream raises :class:`ImageError` (``image.digest_mismatch``) when the underlying data
    is longer than the descriptor says, and at EOF when it is shorter or its digest differs.
    """

    def __init__(
        self,
        source: IO[bytes] | Iterator[bytes],
        descriptor: Descriptor,
        *,
        on_close: Callable[[], None] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Wrap ``source`` (a binary file or an iterator of chunks) for ``descriptor``.

        Raises:
            ImageError: The descriptor's digest is malformed (code ``image.malformed``).
        """
        super().__init__()
        self.descriptor = descriptor
        self._hasher = new_hasher(descriptor.digest)
        # A binary file is also an iterator (of lines), so look for ``read`` first.
        self._read: Callable[[int], bytes] | None = getattr(source, "read", None)
        self._iter: Iterator[bytes] = iter(()) if self._read is not None else iter(source)
        self._pending = b""
        self._offset = 0
        self._count = 0
        self._verified = False
        self._failed: ImageError | None = None
        self._on_close = on_close
        self._progress = progress

    @property
    def verified(self) -> bool:
        """Return True once EOF was reached and size and digest matched."""
        return self._verified

    @property
    def bytes_read(self) -> int:
        """Return how many bytes have passed through the stream."""
        return self._count

    def readable(self) -> bool:
        """Return True: this is a readable stream."""
        return True

    def _next_chunk(self, size: int) -> bytes:
        if self._read is not None:
            return self._read(size)
        return next(self._iter, b"")

    def _fail(self, why: str) -> ImageError:
        self._failed = ImageError(
            f"blob {self.descriptor.digest} does not match its descriptor: {why}",
            code="image.digest_mismatch",
            hint="the image store returned corrupt or substituted data; nothing was used",
            details={"digest": self.descriptor.digest, "expected_size": self.descriptor.size},
        )
        return self._failed

    def _fill(self, want: int) -> bool:
        """Make sure unread bytes are pending; return False at a verified EOF."""
        if self._failed is not None:
            raise self._failed
        if self._offset < len(self._pending):
            return True
        chunk = self._next_chunk(max(want, CHUNK_SIZE))
        if not chunk:
            self._check_eof()
            return False
        self._count += len(chunk)
        if self._count > self.descriptor.size:
            raise self._fail(f"more than the expected {self.descriptor.size} bytes")
        self._absorb(chunk)
        if self._progress is not None:
            self._progress(len(chunk))
        self._pending = chunk
        self._offset = 0
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Read into ``buffer``; return 0 only at a verified EOF.

        Raises:
            ImageError: The data does not match the descriptor (``image.digest_mismatch``).
        """
        want = len(buffer)
        if want == 0 or not self._fill(want):
            return 0
        take = min(want, len(self._pending) - self._offset)
        buffer[:take] = memoryview(self._pending)[self._offset : self._offset + take]
        self._offset += take
        return take

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all remaining when negative).

        Raises:
            ImageError: The data does not match the descriptor (``image.digest_mismatch``).
        """
        if size is None or size < 0:
            return self.readall()
        if type(self).readinto is not BlobReader.readinto:
            # A subclass that filters ``readinto`` (a tee, say) must see every byte.
            buf = bytearray(size)
            count = self.readinto(buf)
            return bytes(memoryview(buf)[:count])
        if size == 0 or not self._fill(size):
            return b""
        end = min(len(self._pending), self._offset + size)
        if self._offset == 0 and end == len(self._pending):
            data = self._pending  # A whole chunk: hand it over without copying.
        else:
            data = self._pending[self._offset : end]
        self._offset = end
        return data

    def readall(self) -> bytes:
        """Read and return everything that is left (verified at EOF).

        Raises:
            ImageError: The data does not match the descriptor (``image.digest_mismatch``).
        """
        parts = []
        while chunk := self.read(CHUNK_SIZE):
            parts.append(chunk)
        return b"".join(parts)

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the remaining data in chunks; the last chunk is yielded only after verification.

        Raises:
            ImageError: The data does not match the descriptor (``image.digest_mismatch``).
        """
        held = b""
        while chunk := self.read(size):
            if held:
                yield held
            held = chunk
        if held:
            yield held

    def finish(self) -> int:
        """Read what is left, discard it, and verify; return the total size.

        Raises:
            ImageError: The data does not match the descriptor (``image.digest_mismatch``).
        """
        buf = bytearray(CHUNK_SIZE)
        while self.readinto(buf):
            pass
        return self._count

    def _check_eof(self) -> None:
        if self._verified:
            return
        if self._count != self.descriptor.size:
            raise self._fail(f"{self._count} bytes instead of {self.descriptor.size}")
        self._check_digest()
        self._verified = True

    def _absorb(self, chunk: bytes) -> None:
        """Add a chunk that passed through the stream to the digest."""
        self._hasher.update(chunk)

    def _check_digest(self) -> None:
        """Compare the digest of everything read with the descriptor's (at EOF)."""
        actual = f"{self.descriptor.digest.partition(':')[0]}:{self._hasher.hexdigest()}"
        if actual != self.descriptor.digest:
            raise self._fail(f"the content digest is {actual}")

    def close(self) -> None:
        """Close the stream and release the underlying connection or file."""
        if not self.closed:
            try:
                if self._on_close is not None:
                    self._on_close()
            finally:
                super().close()


class SpooledBlobReader(BlobReader):
    """A stream over a private spool copy of a blob whose digest was verified as it was written.

    A converter copies each layer it reads from the source into a temporary file of its own
    (``0600`` in a ``0700`` directory) through a :class:`BlobReader`, and uses the file only once
    that reader reached a verified EOF. Reading the file back is not reading image content from
    a store: hashing it again would only re-check bytes this process wrote itself. So this reader
    checks the size (too long, or short at EOF, raises ``image.digest_mismatch`` like
    :class:`BlobReader`) and does not hash; a registry still checks the digest when the upload
    is committed. Use it for nothing else.
    """

    def _absorb(self, chunk: bytes) -> None:
        """Hash nothing: the bytes were hashed when the spool file was written."""

    def _check_digest(self) -> None:
        """Check nothing more than the size (see the class docstring)."""


def read_small_blob(reader: BlobReader, limit: int, what: str) -> bytes:
    """Read a whole (small) verified blob, refusing anything larger than ``limit``.

    Raises:
        ImageError: The blob is larger than ``limit`` (``image.malformed``) or does not match
            its digest (``image.digest_mismatch``).
    """
    with reader:
        if reader.descriptor.size > limit:
            raise ImageError(
                f"the {what} is {reader.descriptor.size} bytes, more than the {limit} accepted",
                code="image.malformed",
            )
        return reader.readall()


@runtime_checkable
class ImageSource(Protocol):
    """Somewhere an image can be read from."""

    def manifest(self) -> Manifest:
        """Return the image manifest, resolved to linux/amd64 when the reference is an index.

        Raises:
            ImageError: The image is absent, malformed or has no linux/amd64 variant.
            RegistryUnavailable: The registry could not be reached.
            RegistryAuthError: The registry refused the credentials.
        """
        ...

    def index(self) -> Index | None:
        """Return the index the reference pointed to, or None if it named a manifest.

        Raises:
            ImageError: The image is absent or malformed.
        """
        ...

    def config(self) -> ImageConfig:
        """Return the parsed (digest-verified) image config.

        Raises:
            ImageError: The config is absent, malformed or does not match its digest.
        """
        ...

    def open_blob(
        self, descriptor: Descriptor, *, progress: ProgressCallback | None = None
    ) -> BlobReader:
        """Open a stream of the blob ``descriptor`` points to, verified at EOF.

        Raises:
            ImageError: The blob does not exist (``image.not_found``).
        """
        ...

    def blob_exists(self, digest: str) -> bool:
        """Return whether the store holds the blob ``digest``."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class ImageSink(Protocol):
    """Somewhere an image can be written to."""

    def has_blob(self, digest: str) -> bool:
        """Return whether the sink already holds blob ``digest`` (so it need not be sent)."""
        ...

    def put_blob(
        self,
        descriptor: Descriptor,
        stream: IO[bytes] | BlobReader,
        *,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Store the blob read from ``stream``; nothing is kept unless its digest matches.

        Raises:
            ImageError: The streamed bytes do not match ``descriptor``.
        """
        ...

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Try to link ``digest`` from another repository of the same registry.

        Returns False (without error) where mounting is impossible, so the caller uploads.
        """
        ...

    def put_manifest(self, manifest_bytes: bytes, media_type: str, tag: str | None = None) -> str:
        """Store the exact ``manifest_bytes`` and return their digest.

        ``tag`` defaults to the tag of the sink's reference.

        Raises:
            ImageError: The manifest is malformed or references blobs the sink lacks.
        """
        ...

    def close(self) -> None:
        """Finish writing and release connections and files."""
        ...


def verifying_reader(
    stream: IO[bytes] | BlobReader, descriptor: Descriptor, progress: ProgressCallback | None
) -> BlobReader:
    """Return ``stream`` if it already verifies ``descriptor``, else wrap it in a BlobReader."""
    if (
        isinstance(stream, BlobReader)
        and stream.descriptor.digest == descriptor.digest
        and stream.descriptor.size == descriptor.size
        and progress is None
    ):
        return stream
    return BlobReader(stream, descriptor, progress=progress)


class Closing:
    """Mixin: ``with store:`` closes the store at the end of the block."""

    def close(self) -> None:
        """Release resources (overridden by stores that hold some)."""

    def __enter__(self) -> Self:
        """Return the store itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()


class BaseImageSource(Closing, abc.ABC):
    """Shared logic of image sources: resolve the manifest to linux/amd64, cache and verify."""

    def __init__(self) -> None:
        """Start with nothing fetched."""
        self._manifest: Manifest | None = None
        self._index: Index | None = None
        self._config: ImageConfig | None = None
        self._resolved = False

    @abc.abstractmethod
    def _top_level(self) -> tuple[bytes, str | None]:
        """Return the bytes and media-type hint of what the reference names (verified).

        Raises:
            ImageError: The image is absent or its bytes do not match a known digest.
        """

    @abc.abstractmethod
    def open_blob(
        self, descriptor: Descriptor, *, progress: ProgressCallback | None = None
    ) -> BlobReader:
        """Open a verified stream of a blob.

        Raises:
            ImageError: The blob does not exist (``image.not_found``).
        """

    @abc.abstractmethod
    def blob_exists(self, digest: str) -> bool:
        """Return whether the store holds the blob ``digest``."""

    def _manifest_bytes(self, descriptor: Descriptor) -> bytes:
        """Fetch the manifest an index entry points to, verified against the descriptor.

        Raises:
            ImageError: Absent, too large or not matching its digest.
        """
        return read_small_blob(self.open_blob(descriptor), MAX_MANIFEST_SIZE, "manifest")

    def _resolve(self) -> None:
        if self._resolved:
            return
        raw, hint = self._top_level()
        top = parse_manifest_or_index(raw, hint)
        if isinstance(top, Index):
            entry = top.select("linux", "amd64")
            self._index = top
            self._manifest = Manifest.parse(self._manifest_bytes(entry), entry.media_type)
        else:
            self._manifest = top
        self._resolved = True

    def manifest(self) -> Manifest:
        """Return the image manifest, resolved to linux/amd64.

        Raises:
            ImageError: The image is absent, malformed or lacks a linux/amd64 variant.
        """
        self._resolve()
        if self._manifest is None:  # pragma: no cover (_resolve sets it or raises)
            raise ImageError("the image manifest could not be resolved", code="image.malformed")
        return self._manifest

    def index(self) -> Index | None:
        """Return the index the reference pointed to, or None.

        Raises:
            ImageError: The image is absent or malformed.
        """
        self._resolve()
        return self._index

    def config(self) -> ImageConfig:
        """Return the digest-verified image config.

        Raises:
            ImageError: The config is absent, too large, malformed or corrupt.
        """
        if self._config is None:
            desc = self.manifest().config
            raw = read_small_blob(self.open_blob(desc), MAX_CONFIG_SIZE, "image config")
            self._config = ImageConfig.parse(raw)
        return self._config


def not_found(what: str, where: str) -> ImageError:
    """Return the error for something missing from a store."""
    return ImageError(f"{what} was not found in {where}", code="image.not_found")


class MemoryImageStore(BaseImageSource):
    """An in-memory image store: a source and a sink, for tests and pure callers.

    Attributes:
        blobs: Stored blobs (manifests included) by digest.
        tags: Manifest digest by tag.
        tag: The tag read by :meth:`manifest`.
    """

    def __init__(self, tag: str = "latest") -> None:
        """Create an empty store whose source side reads ``tag``."""
        super().__init__()
        self.blobs: dict[str, bytes] = {}
        self.media_types: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.tag = tag

    def add_blob(self, data: bytes, media_type: str = "application/octet-stream") -> Descriptor:
        """Store ``data`` directly and return its descriptor."""
        digest = digest_of(data)
        self.blobs[digest] = data
        self.media_types[digest] = media_type
        return Descriptor(media_type, digest, len(data))

    def _top_level(self) -> tuple[bytes, str | None]:
        digest = self.tags.get(self.tag)
        if digest is None:
            raise not_found(f"tag {self.tag!r}", "the memory store")
        return self.blobs[digest], self.media_types.get(digest)

    def open_blob(
        self, descriptor: Descriptor, *, progress: ProgressCallback | None = None
    ) -> BlobReader:
        """Open a verified stream of a stored blob.

        Raises:
            ImageError: The blob is not stored (``image.not_found``).
        """
        data = self.blobs.get(descriptor.digest)
        if data is None:
            raise not_found(f"blob {descriptor.digest}", "the memory store")
        return BlobReader(io.BytesIO(data), descriptor, progress=progress)

    def blob_exists(self, digest: str) -> bool:
        """Return whether blob ``digest`` is stored."""
        return digest in self.blobs

    def has_blob(self, digest: str) -> bool:
        """Return whether blob ``digest`` is stored."""
        return digest in self.blobs

    def put_blob(
        self,
        descriptor: Descriptor,
        stream: IO[bytes] | BlobReader,
        *,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Store a blob after verifying it (nothing is stored on a mismatch).

        Raises:
            ImageError: The bytes do not match ``descriptor`` (``image.digest_mismatch``).
        """
        data = verifying_reader(stream, descriptor, progress).readall()
        self.blobs[descriptor.digest] = data
        self.media_types[descriptor.digest] = descriptor.media_type

    def mount_blob(self, digest: str, from_repository: str) -> bool:  # noqa: ARG002
        """Return False: a memory store has no other repositories."""
        return False

    def put_manifest(self, manifest_bytes: bytes, media_type: str, tag: str | None = None) -> str:
        """Store a manifest (after checking its blobs are present) and tag it (default ``tag``).

        Raises:
            ImageError: The manifest is malformed or references missing blobs.
        """
        parsed = parse_manifest_or_index(manifest_bytes, media_type)
        refs = (parsed.config, *parsed.layers) if isinstance(parsed, Manifest) else parsed.manifests
        for ref in refs:
            if ref.digest not in self.blobs and ref.media_type not in MANIFEST_MEDIA_TYPES:
                raise not_found(f"blob {ref.digest} referenced by the manifest", "the sink")
        self.blobs[parsed.digest] = manifest_bytes
        self.media_types[parsed.digest] = parsed.media_type
        self.tags[tag or self.tag] = parsed.digest
        return parsed.digest
