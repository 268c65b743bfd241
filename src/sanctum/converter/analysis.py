"""The final filesystem of an image, computed by streaming its layers (nothing is unpacked).

Each layer is read once through its digest-verifying stream, decompressed on the fly (gzip, zstd
or none, detected from the bytes and checked against the media type family), and walked as a
tar stream. Whiteouts (``.wh.NAME``) delete a path of the lower layers, opaque markers
(``.wh..wh..opq``) empty a directory of its lower-layer content, later entries replace earlier
ones, and a non-directory replacing a directory removes the directory's subtree, as the OCI
image spec's changeset rules say. The uncompressed stream is hashed and checked against the
config's ``rootfs.diff_ids``, and the compressed blob against its digest, so the listing is only
ever computed from verified content.

Speed (ADR 0064): the layers are independent until they are stacked, so :func:`analyse_image`
can read several at once in worker threads (``workers``); each worker produces the layer's
changeset, and the changesets are applied strictly in order, in the calling thread. The hot
path works on 1 MiB buffers only: gzip is inflated directly by ISA-L (or :mod:`zlib`; either
checks the CRC-32 and length trailer itself), the tar headers are parsed by
:class:`tarfile.TarFile` over a chunked stream, and file contents are hashed from
``memoryview`` slices of the decompressed chunks, so inflate and hashlib run without the GIL
and no byte is copied through Python's small reads. A hard link whose target is in a lower
layer is resolved when its layer is applied.

The result, :class:`FileSystemListing`, maps absolute paths to :class:`FileEntry` records with
the SHA-256 of every regular file (hard links carry their target's hash; symlinks are recorded
as links and never followed).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import posixpath
import re
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

import zstandard

from sanctum.converter.errors import ImageError
from sanctum.converter.oci.compression import (
    INFLATE_ERRORS,
    Readable,
    decompression_errors,
    gzip_inflater,
    gzip_member_decompressor,
    sniff_compression,
)
from sanctum.converter.oci.model import Descriptor, ImageConfig, layer_compression
from sanctum.converter.oci.store import CHUNK_SIZE, ImageSource

__all__ = ["FileEntry", "FileKind", "FileSystemListing", "LayerProgress", "analyse_image"]

FileKind = Literal["file", "dir", "symlink", "hardlink", "chardev", "blockdev", "fifo"]

#: Called with the layer being read and the number of (compressed) bytes just read.
LayerProgress = Callable[[Descriptor, int], None]

_WHITEOUT: Final = ".wh."
_OPAQUE: Final = ".wh..wh..opq"
_XATTR: Final = "SCHILY.xattr."
_NO_XATTRS: Final[Mapping[str, bytes]] = MappingProxyType({})
#: Most compressed bytes read at a time: larger than a source's chunks (about 1 MiB), so a
#: read takes a whole chunk without copying it.
_READ_SIZE: Final = 2 * CHUNK_SIZE
#: Most decompressed bytes produced at a time.
_OUT_SIZE: Final = CHUNK_SIZE
#: Compressed bytes given to zlib at a time.
_FEED_SIZE: Final = 256 << 10
#: Compressed bytes given first to a new gzip member's inflater, doubled on each call up to
#: :data:`_FEED_SIZE`: the input an inflater hands back after its member's end
#: (``unused_data``, a copy) is then never much larger than the member, so a stream of many
#: tiny members costs time linear in its size (ADR 0125, "Hardening").
_FIRST_FEED: Final = 64
#: Most gzip members in one layer (an eStargz layer has one per file and a few more).
_MAX_GZIP_MEMBERS: Final = 1 << 21
#: The first byte that is not zero padding between gzip members.
_NOT_PADDING: Final = re.compile(rb"[^\x00]")
#: Largest single read tarfile may ask for (a PAX or GNU long-name header): bounds memory.
_MAX_READ: Final = 64 << 20


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One path of the final filesystem.

    Attributes:
        path: Absolute path, for example ``/bin/busybox``.
        kind: What the path is.
        mode: Permission bits including setuid/setgid/sticky (``mode & 0o7777``); a hard link
            shares its target's inode, so it has the target's mode, uid and gid.
        uid: Owner user id.
        gid: Owner group id.
        size: Size in bytes of a regular file (or a hard link's target); 0 otherwise.
        sha256: Hex SHA-256 of a regular file's content (or a hard link's target); else None.
        link_target: Target of a symlink (as written) or hard link (absolute); else None.
        layer: Index of the layer that provided this entry (-1 for implied parent directories).
        xattrs: Extended attributes from the tar's ``SCHILY.xattr.*`` PAX records, by name
            (``security.capability`` grants file capabilities); a hard link has its target's.
    """

    path: str
    kind: FileKind
    mode: int
    uid: int
    gid: int
    size: int
    sha256: str | None
    link_target: str | None
    layer: int
    xattrs: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class FileSystemListing:
    """The final filesystem of an image and the facts needed to run it.

    Attributes:
        manifest_digest: Digest of the (linux/amd64) image manifest analysed.
        config: The image config (entrypoint, cmd, env, workdir, user...).
        files: Every path except ``/``, sorted, mapped to its entry.
        layer_count: How many layers were applied.
    """

    manifest_digest: str
    config: ImageConfig
    files: Mapping[str, FileEntry]
    layer_count: int

    @property
    def total_size(self) -> int:
        """Return the summed size of all regular files (hard links counted once)."""
        return sum(e.size for e in self.files.values() if e.kind == "file")


class _AbandonedError(Exception):
    """Raised inside a worker when the analysis was abandoned (another layer failed)."""


class _CorruptStreamError(Exception):
    """A zlib failure, kept from tarfile (which would take it for the end of the archive)."""


class _TarStream:
    """The uncompressed tar stream of a layer, pulled in large chunks and hashed for its diff_id.

    It offers :class:`tarfile.TarFile` what a stream offers it (``read``, ``tell`` and forward
    ``seek``), and :meth:`feed` hands member data to a hasher as ``memoryview`` slices of the
    chunks, without copying. Every byte pulled from the decompressor is hashed once, in order,
    into :attr:`hasher` (the diff_id).
    """

    def __init__(self, chunks: Iterator[bytes], cancelled: Callable[[], bool]) -> None:
        self._chunks = chunks
        self._cancelled = cancelled
        self._buf = b""
        self._view = memoryview(self._buf)
        self._pos = 0
        self._base = 0
        self.hasher = hashlib.sha256()
        self.count = 0

    def _advance(self) -> bool:
        """Replace the exhausted current chunk by the next one; return False at EOF.

        Raises:
            _AbandonedError: The analysis was abandoned.
            _CorruptStreamError: The compressed data is corrupt.
        """
        if self._cancelled():
            raise _AbandonedError
        try:
            for chunk in self._chunks:
                if chunk:
                    self.hasher.update(chunk)
                    self.count += len(chunk)
                    self._base += len(self._buf)
                    self._buf = chunk
                    self._view = memoryview(chunk)
                    self._pos = 0
                    return True
        except INFLATE_ERRORS as exc:
            raise _CorruptStreamError(f"{type(exc).__name__}: {exc}") from None
        return False

    def tell(self) -> int:
        """Return the stream position."""
        return self._base + self._pos

    def read(self, size: int = -1, /) -> bytes:
        """Read ``size`` bytes (fewer only at EOF).

        Raises:
            tarfile.ReadError: ``size`` is negative or larger than any tar header may be.
        """
        if size < 0 or size > _MAX_READ:
            raise tarfile.ReadError(f"refusing to read a {size}-byte tar header")
        end = self._pos + size
        if end <= len(self._buf):
            data = self._buf[self._pos : end]
            self._pos = end
            return data
        parts = [self._buf[self._pos :]]
        need = size - len(parts[0])
        self._pos = len(self._buf)
        while need > 0 and self._advance():
            take = min(need, len(self._buf))
            parts.append(self._buf[:take])
            self._pos = take
            need -= take
        return b"".join(parts)

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Skip forward to ``offset`` (or to EOF if it is shorter); return the new position.

        Raises:
            tarfile.StreamError: ``offset`` is behind the current position.
        """
        if whence != 0 or offset < self.tell():
            raise tarfile.StreamError("seeking backwards is not allowed")
        self.feed(None, offset - self.tell())
        return self.tell()

    def feed(self, hasher: _Hasher | None, size: int) -> int:
        """Pass the next ``size`` bytes to ``hasher`` (or skip them); return how many there were."""
        left = size
        while left > 0:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._advance():
                    break
                continue
            take = min(avail, left)
            if hasher is not None:
                hasher.update(self._view[self._pos : self._pos + take])
            self._pos += take
            left -= take
        return size - left

    def drain(self) -> None:
        """Read (and hash) the rest of the stream, past the end-of-archive blocks."""
        self._pos = len(self._buf)
        while self._advance():
            self._pos = len(self._buf)


class _Hasher(Protocol):
    """What :meth:`_TarStream.feed` needs of a hashlib object."""

    def update(self, data: bytes | memoryview, /) -> None: ...


def _gunzip(source: Readable, head: bytes) -> Iterator[bytes]:
    """Yield the decompressed bytes of a gzip stream in chunks of at most 1 MiB.

    Concatenated members and zero padding after a member are accepted, as :mod:`gzip` accepts
    them; each member's header, CRC-32 and length are checked. ISA-L's member decompressor is
    used when installed (:func:`_gunzip_members`), else zlib's interface (:func:`_inflate`).

    Raises:
        zlib.error: The data is not gzip or is corrupt (or ISA-L's equivalent error).
        EOFError: The stream ends inside a member.
    """
    if gzip_member_decompressor() is None:  # pragma: no cover (isal is a dependency)
        return _inflate(source, head)
    return _gunzip_members(source, head)


def _skip_padding(buf: memoryview, pos: int) -> int:
    """Return the position of the first non-zero byte of ``buf`` at or after ``pos``.

    The search reads ``buf`` in place (no copy), so its cost is the padding's length.
    """
    found = _NOT_PADDING.search(buf, pos)
    return len(buf) if found is None else found.start()


def _count_member(members: int) -> int:
    """Return ``members + 1`` (one more gzip member began).

    Raises:
        ImageError: The layer has more than :data:`_MAX_GZIP_MEMBERS` (``image.malformed``).
    """
    if members >= _MAX_GZIP_MEMBERS:
        raise ImageError(
            f"a gzip layer has more than {_MAX_GZIP_MEMBERS} members", code="image.malformed"
        )
    return members + 1


def _gunzip_members(source: Readable, head: bytes) -> Iterator[bytes]:
    """:func:`_gunzip` with ISA-L's one-member decompressor (output built in one buffer).

    Raises:
        igzip_lib.IsalError: The data is not gzip or is corrupt.
        EOFError: The stream ends inside a member.
        ImageError: Too many members (``image.malformed``).
    """
    buf = memoryview(head)
    pos = 0
    member: Any = None
    feed = _FIRST_FEED
    members = 0
    while True:
        if member is not None and not member.needs_input:
            # Output (or input it holds) is pending: take it before giving more input.
            out = member.decompress(b"", _OUT_SIZE)
        elif pos == len(buf):
            data = source.read(_READ_SIZE)
            if not data:
                if member is not None:
                    msg = "Compressed file ended before the end-of-stream marker was reached"
                    raise EOFError(msg)
                return
            buf, pos = memoryview(data), 0
            continue
        else:
            if member is None:
                # Between members: skip zero padding, then a new member must start.
                pos = _skip_padding(buf, pos)
                if pos == len(buf):
                    continue
                members = _count_member(members)
                member = gzip_member_decompressor()
                feed = _FIRST_FEED
            # Slices of at most _FEED_SIZE: input the decompressor cannot take within the
            # output limit is kept as a copy inside it, so small slices keep that copying small.
            piece = buf[pos : pos + feed]
            pos += len(piece)
            feed = min(2 * feed, _FEED_SIZE)
            out = member.decompress(piece, _OUT_SIZE)
        if member.eof:
            rest = member.unused_data
            member = None
            if rest:
                # Bytes after the member's end (padding or another member) come next: go back
                # to them in ``buf``. Only when they began in an earlier read are they joined
                # with the rest of ``buf`` (a copy at most once per read).
                start = pos - len(rest)
                if start >= 0 and buf[start:pos] == rest:
                    pos = start
                else:
                    buf, pos = memoryview(rest + bytes(buf[pos:])), 0
        if out:
            yield out


def _inflate(source: Readable, head: bytes) -> Iterator[bytes]:
    """:func:`_gunzip` with zlib's ``decompressobj`` interface (the fallback without ISA-L).

    Raises:
        zlib.error: The data is not gzip or is corrupt.
        EOFError: The stream ends inside a member.
        ImageError: Too many members (``image.malformed``).
    """
    buf = memoryview(head)
    pos = 0
    member: Any = None
    feed = _FIRST_FEED
    members = 0
    while True:
        if pos == len(buf):
            # zlib may hold back output of input it already took: get it before reading more.
            if member is not None and (out := member.decompress(b"", _OUT_SIZE)):
                yield out
                continue
            data = source.read(_READ_SIZE)
            if not data:
                if member is not None:
                    msg = "Compressed file ended before the end-of-stream marker was reached"
                    raise EOFError(msg)
                return
            buf, pos = memoryview(data), 0
            continue
        if member is None:
            # Between members: skip zero padding, then a new member must start.
            pos = _skip_padding(buf, pos)
            if pos == len(buf):
                continue
            members = _count_member(members)
            member = gzip_inflater()
            feed = _FIRST_FEED
        # Slices of at most _FEED_SIZE: input zlib cannot take within the output limit comes
        # back as a copy (``unconsumed_tail``, and ``unused_data`` after the member's end), so
        # small slices keep that copying small.
        piece = buf[pos : pos + feed]
        feed = min(2 * feed, _FEED_SIZE)
        out = member.decompress(piece, _OUT_SIZE)
        if member.eof:
            pos += len(piece) - len(member.unused_data)
            member = None
        else:
            pos += len(piece) - len(member.unconsumed_tail)
        if out:
            yield out


def _unzstd(source: Readable, head: bytes) -> Iterator[bytes]:
    """Yield the decompressed bytes of a zstd stream (all frames) in chunks of at most 1 MiB.

    Raises:
        zstandard.ZstdError: The data is corrupt or truncated.
    """
    open_reader: Callable[..., Readable] = zstandard.ZstdDecompressor().stream_reader
    reader = open_reader(
        _PrefixedReader(head, source),
        read_size=_READ_SIZE,
        read_across_frames=True,
        closefd=False,
    )
    while chunk := reader.read(_OUT_SIZE):
        yield chunk


def _plain(source: Readable, head: bytes) -> Iterator[bytes]:
    """Yield an uncompressed stream in chunks."""
    yield head
    while chunk := source.read(_READ_SIZE):
        yield chunk


_DECOMPRESSORS: Final[dict[str, Callable[[Readable, bytes], Iterator[bytes]]]] = {
    "gzip": _gunzip,
    "zstd": _unzstd,
    "none": _plain,
}


class _PrefixedReader:
    """A reader that first returns ``prefix`` and then the rest of ``source``."""

    def __init__(self, prefix: bytes, source: Readable) -> None:
        self._prefix = prefix
        self._source = source

    def read(self, size: int = -1, /) -> bytes:
        if self._prefix:
            if size < 0:
                data, self._prefix = self._prefix + self._source.read(), b""
                return data
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return self._source.read(size)


def _normalise(name: str, layer: int) -> str | None:
    """Return the absolute normalised path of a tar member, None for the root.

    Raises:
        ImageError: The path escapes the root (``image.malformed``).
    """
    path = posixpath.normpath("/" + name.lstrip("/"))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if "\x00" in path:
        raise ImageError(f"layer {layer} has a path with a NUL byte", code="image.malformed")
    return None if path == "/" else path


def _under(path: str, roots: set[str], *, strict: bool) -> bool:
    """Return whether ``path`` is (strictly, if asked) inside one of ``roots``."""
    if not strict and path in roots:
        return True
    parent = posixpath.dirname(path)
    while parent != "/":
        if parent in roots:
            return True
        parent = posixpath.dirname(parent)
    return "/" in roots


@dataclass(slots=True)
class _PendingLink:
    """A hard link to a path of the lower layers, resolved when its layer is applied.

    Attributes:
        path: The link's path.
        linkname: The target as written in the tar (for messages).
        target: The normalised target path.
        via: The pending link the target was at the time (a link to a link), else None.
        resolved: The entry once resolved.
    """

    path: str
    linkname: str
    target: str
    via: _PendingLink | None
    resolved: FileEntry | None = None


def _link_entry(path: str, target: FileEntry, layer: int) -> FileEntry:
    """Return the entry of hard link ``path`` to ``target`` (it shares the target's inode)."""
    return FileEntry(
        path,
        "hardlink",
        target.mode,
        target.uid,
        target.gid,
        target.size,
        target.sha256,
        target.link_target or target.path,
        layer,
        target.xattrs,
    )


class _Layer:
    """The changes one layer makes, gathered while its tar stream is read.

    Reading needs nothing from the lower layers, so layers can be read in parallel; only hard
    links to lower-layer files wait (as :class:`_PendingLink`) until :meth:`apply`.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.entries: dict[str, FileEntry | _PendingLink] = {}
        self.pending: list[_PendingLink] = []
        self.whiteouts: set[str] = set()
        self.opaque: set[str] = set()

    def add(self, member: tarfile.TarInfo, content: Callable[[tarfile.TarInfo], str]) -> None:
        """Record ``member``; ``content`` returns the SHA-256 of a regular file's data.

        Raises:
            ImageError: The member is malformed or of an unsupported type.
        """
        path = _normalise(member.name, self.index)
        if path is None:
            return
        parent, base = posixpath.split(path)
        if base == _OPAQUE:
            self.opaque.add(parent)
            return
        if base.startswith(_WHITEOUT):
            self.whiteouts.add(posixpath.join(parent, base.removeprefix(_WHITEOUT)))
            return

        if member.islnk():
            # A hard link shares its target's inode: content, mode and owner are the target's.
            self.entries[path] = self._hardlink(path, member)
            return

        xattrs = _xattrs(member)

        def make(
            kind: FileKind, size: int = 0, sha256: str | None = None, link: str | None = None
        ) -> FileEntry:
            return FileEntry(
                path,
                kind,
                member.mode & 0o7777,
                member.uid,
                member.gid,
                size,
                sha256,
                link,
                self.index,
                xattrs,
            )

        if member.isfile():
            entry = make("file", member.size, content(member))
        elif member.isdir():
            entry = make("dir")
        elif member.issym():
            entry = make("symlink", link=member.linkname)
        elif member.ischr():
            entry = make("chardev")
        elif member.isblk():
            entry = make("blockdev")
        elif member.isfifo():
            entry = make("fifo")
        else:
            raise ImageError(
                f"layer {self.index}: {path} has unsupported tar type {member.type!r}",
                code="image.malformed",
            )
        self.entries[path] = entry

    def _not_a_file(self, path: str, linkname: str) -> ImageError:
        return ImageError(
            f"layer {self.index}: hard link {path} points to {linkname!r}, "
            "which is not a regular file",
            code="image.malformed",
        )

    def _hardlink(self, path: str, member: tarfile.TarInfo) -> FileEntry | _PendingLink:
        """Return the entry of a hard link, or a pending link when its target is lower.

        Raises:
            ImageError: The target is absent or not a regular file (``image.malformed``).
        """
        target = _normalise(member.linkname, self.index)
        found = self.entries.get(target) if target else None
        if isinstance(found, _PendingLink):
            link = _PendingLink(path, member.linkname, found.target, found)
            self.pending.append(link)
            return link
        if found is None and target is not None and not self._hidden(target):
            # The lower layers are looked at when this layer is applied (whiteouts read so
            # far were checked just now, as they must be).
            link = _PendingLink(path, member.linkname, target, None)
            self.pending.append(link)
            return link
        if found is None or found.kind not in {"file", "hardlink"}:
            raise self._not_a_file(path, member.linkname)
        return _link_entry(path, found, self.index)

    def _resolve(self, link: _PendingLink, lower: Mapping[str, FileEntry]) -> FileEntry:
        """Return the entry of a pending hard link, given the lower layers' state.

        Raises:
            ImageError: The target is absent or not a regular file (``image.malformed``).
        """
        if link.resolved is None:
            if link.via is not None:
                target = self._resolve(link.via, lower)
            else:
                found = lower.get(link.target)
                if found is None or found.kind not in {"file", "hardlink"}:
                    raise self._not_a_file(link.path, link.linkname)
                target = found
            link.resolved = _link_entry(link.path, target, self.index)
        return link.resolved

    def apply(self, state: dict[str, FileEntry]) -> None:
        """Apply the whiteouts to the lower layers, then this layer's entries, to ``state``.

        Raises:
            ImageError: A hard link points to a lower path that is not a regular file.
        """
        for link in self.pending:
            self._resolve(link, state)
        entries = {
            path: entry if isinstance(entry, FileEntry) else self._resolve(entry, state)
            for path, entry in self.entries.items()
        }
        if self.opaque or self.whiteouts:
            for path in [p for p in state if self._hidden(p)]:
                del state[path]
        replaced_dirs = {
            p
            for p, e in entries.items()
            if e.kind != "dir" and p in state and state[p].kind == "dir"
        }
        if replaced_dirs:
            for path in [p for p in state if _under(p, replaced_dirs, strict=True)]:
                del state[path]
        for path, entry in entries.items():
            state[path] = entry
            parent = posixpath.dirname(path)
            while parent != "/" and (parent not in state or state[parent].kind != "dir"):
                state[parent] = FileEntry(parent, "dir", 0o755, 0, 0, 0, None, None, -1)
                parent = posixpath.dirname(parent)

    def _hidden(self, path: str) -> bool:
        return _under(path, self.whiteouts, strict=False) or _under(path, self.opaque, strict=True)


def _xattrs(member: tarfile.TarInfo) -> Mapping[str, bytes]:
    """Return the ``SCHILY.xattr.*`` PAX records of ``member`` as raw bytes, by name."""
    if not member.pax_headers:
        return _NO_XATTRS
    found = {
        key.removeprefix(_XATTR): value.encode("utf-8", "surrogateescape")
        for key, value in member.pax_headers.items()
        if key.startswith(_XATTR)
    }
    return MappingProxyType(dict(sorted(found.items()))) if found else _NO_XATTRS


def _read_members(tar: tarfile.TarFile, stream: _TarStream, layer: _Layer) -> None:
    """Record every member of ``tar`` in ``layer``, hashing regular files from ``stream``.

    Raises:
        ImageError: A member is malformed.
        tarfile.TarError: The tar stream is invalid or truncated.
    """

    def content(member: tarfile.TarInfo) -> str:
        hasher = hashlib.sha256()
        if member.sparse is not None:
            # GNU sparse files (rare) go through tarfile, which fills in the holes.
            handle = tar.extractfile(member)
            if handle is None:  # pragma: no cover (regular members always extract)
                raise ImageError(f"cannot read {member.name}", code="image.malformed")
            while chunk := handle.read(CHUNK_SIZE):
                hasher.update(chunk)
            return hasher.hexdigest()
        stream.seek(member.offset_data)
        if stream.feed(hasher, member.size) != member.size:
            raise tarfile.ReadError("unexpected end of data")
        return hasher.hexdigest()

    while (member := tar.next()) is not None:
        # TarFile keeps every member it read; nothing here needs them, so memory stays flat.
        tar.members.clear()  # type: ignore[attr-defined]
        layer.add(member, content)


def _read_tar(plain: _TarStream, layer: _Layer, what: str) -> None:
    """Record the members of the tar stream ``plain`` in ``layer``.

    A stream without a single byte is an empty layer (some builders emit those).

    Raises:
        ImageError: The stream is not a valid tar stream, or a member is malformed.
        _CorruptStreamError: The compressed data is corrupt.
    """
    try:
        tar = tarfile.TarFile(fileobj=plain, mode="r")  # type: ignore[arg-type]
        _read_members(tar, plain, layer)
    except tarfile.ReadError as exc:
        if plain.count != 0:
            raise ImageError(
                f"{what} is not a valid tar stream: {exc}", code="image.malformed"
            ) from None
    except tarfile.TarError as exc:
        raise ImageError(
            f"{what} is not a valid tar stream: {exc}", code="image.malformed"
        ) from None


def _read_layer(
    source: ImageSource,
    *,
    descriptor: Descriptor,
    diff_id: str,
    index: int,
    progress: LayerProgress | None,
    cancelled: Callable[[], bool],
) -> _Layer:
    """Read one layer into its changeset (runs in a worker thread when layers are parallel).

    Raises:
        ImageError: The layer is missing, corrupt, malformed or not a tar stream.
        sanctum.converter.errors.RegistryUnavailable: The registry could not be reached.
        sanctum.converter.errors.RegistryAuthError: The registry refused access.
        _AbandonedError: The analysis was abandoned.
    """
    declared = layer_compression(descriptor.media_type)

    def advance(count: int) -> None:
        if progress is not None:
            progress(descriptor, count)

    layer = _Layer(index)
    with source.open_blob(descriptor, progress=advance) as blob:
        head = blob.read(4)
        kind = sniff_compression(head)
        if declared not in {kind, "gzip"}:
            # Docker's ".tar.gzip" type is also used for other compressions in the wild.
            raise ImageError(
                f"layer {index} is declared {declared} but its bytes are {kind}",
                code="image.malformed",
            )
        with decompression_errors(f"layer {index} ({descriptor.digest})"):
            plain = _TarStream(_DECOMPRESSORS[kind](blob, head), cancelled)
            try:
                _read_tar(plain, layer, f"layer {index} ({descriptor.digest})")
                plain.drain()
            except _CorruptStreamError as exc:
                raise ImageError(
                    f"layer {index} ({descriptor.digest}) does not decompress: {exc}",
                    code="image.malformed",
                ) from None
        blob.finish()
    actual = f"sha256:{plain.hasher.hexdigest()}"
    if actual != diff_id:
        raise ImageError(
            f"layer {index} uncompresses to {actual}, but the config's diff_id is {diff_id}",
            code="image.digest_mismatch",
        )
    return layer


def _never() -> bool:
    return False


def analyse_image(
    source: ImageSource, *, progress: LayerProgress | None = None, workers: int = 1
) -> FileSystemListing:
    """Compute the final filesystem of ``source``'s (linux/amd64) image without unpacking it.

    Args:
        source: The image to analyse.
        progress: Called as compressed layer bytes are read (from worker threads when
            ``workers`` > 1).
        workers: How many layers to read at the same time. Above 1, ``source.open_blob`` is
            called from several threads at once, so the source must allow that (registries and
            OCI layouts do; a docker-archive shares one file and must use 1). The result is the
            same whatever the number: layers are applied in order.

    Returns:
        The sorted listing of every path with SHA-256 of regular files, and the image config.

    Raises:
        ImageError: A layer is missing, corrupt (``image.digest_mismatch``), not a tar stream or
            escapes the root (``image.malformed``), or has an unsupported media type
            (``image.unsupported_media_type``). With several workers, the error reported is
            that of the first failing layer in order, as when reading one layer at a time.
        sanctum.converter.errors.RegistryUnavailable: The registry could not be reached.
        sanctum.converter.errors.RegistryAuthError: The registry refused access.
    """
    manifest = source.manifest()
    config = source.config()
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageError(
            f"the manifest has {len(manifest.layers)} layers but the config lists "
            f"{len(config.diff_ids)} diff_ids",
            code="image.malformed",
        )
    layers = list(enumerate(zip(manifest.layers, config.diff_ids, strict=True)))
    state: dict[str, FileEntry] = {}
    if workers <= 1 or len(layers) <= 1:
        for index, (descriptor, diff_id) in layers:
            _read_layer(
                source,
                descriptor=descriptor,
                diff_id=diff_id,
                index=index,
                progress=progress,
                cancelled=_never,
            ).apply(state)
    else:
        abandon = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(workers, len(layers)), thread_name_prefix="sanctum-analysis"
        ) as pool:
            futures = [
                pool.submit(
                    _read_layer,
                    source,
                    descriptor=descriptor,
                    diff_id=diff_id,
                    index=index,
                    progress=progress,
                    cancelled=abandon.is_set,
                )
                for index, (descriptor, diff_id) in layers
            ]
            try:
                for future in futures:
                    future.result().apply(state)
            except BaseException:
                abandon.set()
                for future in futures:
                    future.cancel()
                raise
    files = MappingProxyType({path: state[path] for path in sorted(state)})
    return FileSystemListing(
        manifest_digest=manifest.digest,
        config=config,
        files=files,
        layer_count=len(manifest.layers),
    )
