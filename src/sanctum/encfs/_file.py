"""One open encrypted file: chunk cache, copy-on-write slots and commits (internal).

An :class:`OpenFile` holds the committed table of a file (as in its authenticated file record)
and the current table (with chunks written since). Plaintext chunks being modified stay in a
small write-back cache and are sealed when evicted or at commit. A new version of chunk ``i`` is
always written to the slot file that the *committed* record of ``i`` does not use, so the
committed version stays intact until the next file record and index replace it atomically.

Invariant kept for the final-chunk flag: every chunk on the host for ``i < chunk_count`` was
sealed with ``final == (i == chunk_count - 1)``. Whenever the chunk count changes, the chunk whose
flag changes is first brought into the write-back cache (decrypted under the old count), so it
is re-sealed with the right flag. Bytes past the length in the last chunk are always zeros.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sanctum.encfs.errors import EncfsIntegrityError, EncfsIOError, integrity_failure
from sanctum.encfs.format import (
    HOLE,
    NONCE_SIZE,
    TAG_SIZE,
    ChunkRecord,
    FileRecord,
    chunk_count,
    decode_file_record,
    encode_file_record,
    open_chunk,
    seal_chunk,
)

__all__ = [
    "FileContext",
    "OpenFile",
    "host_names",
    "host_open",
    "host_read",
    "host_size",
    "read_record",
    "write_atomic",
]

_POOL = 8
_BATCH = 16
_PREFETCH = 4 * 1024 * 1024
# Ciphertext written since the host kernel was last asked to start writing it to the device.
_WRITEBACK = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Return libc's ``sync_file_range`` (Linux), or ``None`` where it is missing."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the host kernel to start writing ``length`` bytes of ``fd`` to the device now.

    Asynchronous (``SYNC_FILE_RANGE_WRITE``: it waits for nothing and guarantees nothing): the
    ``fsync`` at commit still makes the data durable, it just finds most of it already written
    instead of writing a whole file's worth at that moment. Best effort: ignored where the call
    does not exist.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def host_names(file_id: bytes) -> tuple[str, str, str]:
    """Return the host names of a file's record and of its two slot files."""
    stem = file_id.hex()
    return f"{stem}.m", f"{stem}.0", f"{stem}.1"


@dataclass(frozen=True, slots=True)
class FileContext:
    """What an open file needs from its directory.

    Host files are always reached relative to ``dir_fd``, a descriptor of the host directory
    opened before any mount: the FUSE server may mount the plaintext view over the very
    directory that holds the ciphertext (as Gramine does), and paths would then lead back into
    the mount.
    """

    host_dir: Path
    dir_fd: int
    dir_id: bytes
    chunk_size: int
    writable: bool
    durable: bool
    cache_chunks: int
    random_bytes: Callable[[int], bytes]


def host_open(ctx: FileContext, name: str, flags: int) -> int:
    """Open the host file ``name`` of the directory (relative to its descriptor).

    Raises:
        OSError: As :func:`os.open`.
    """
    return os.open(name, flags, 0o600, dir_fd=ctx.dir_fd)


def host_read(ctx: FileContext, name: str) -> bytes:
    """Return the content of the host file ``name``.

    Raises:
        OSError: As :func:`os.open` and :func:`os.read`.
    """
    fd = host_open(ctx, name, os.O_RDONLY)
    try:
        parts: list[bytes] = []
        while block := os.read(fd, 1024 * 1024):
            parts.append(block)
        return b"".join(parts)
    finally:
        os.close(fd)


def host_size(ctx: FileContext, name: str) -> int:
    """Return the size of the host file ``name`` (0 when it does not exist).

    Raises:
        OSError: The file exists but cannot be examined.
    """
    try:
        return os.stat(name, dir_fd=ctx.dir_fd).st_size
    except FileNotFoundError:
        return 0


def host_truncate(ctx: FileContext, name: str, size: int) -> None:
    """Cut the host file ``name`` to ``size`` bytes.

    Raises:
        OSError: As :func:`os.truncate`.
    """
    fd = host_open(ctx, name, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def write_atomic(ctx: FileContext, name: str, data: bytes) -> None:
    """Replace the host file ``name`` with ``data`` atomically (temp file, fsync, rename).

    Raises:
        EncfsIOError: The host file system failed.
    """
    temp = f"{name}.tmp"
    try:
        fd = host_open(ctx, temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if ctx.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=ctx.dir_fd, dst_dir_fd=ctx.dir_fd)
    except OSError as error:
        raise EncfsIOError(
            f"cannot write {ctx.host_dir / name}: {error.strerror or error}"
        ) from None


def read_record(
    ctx: FileContext, aead: AESGCM, file_id: bytes, *, entry: str, quiet: bool = False
) -> FileRecord:
    """Read and authenticate the file record of ``file_id`` (``quiet``: raise without logging).

    Raises:
        EncfsIntegrityError: Missing, not authentic (tampered or another file's record).
        EncfsIOError: The host file system failed.
    """
    name = host_names(file_id)[0]
    facts = {"file_id": file_id.hex(), "entry": entry}
    try:
        data = host_read(ctx, name)
    except FileNotFoundError:
        if quiet:
            raise EncfsIntegrityError("missing", code="encfs.missing") from None
        raise integrity_failure(
            "encfs.missing",
            f"the host file record of {entry!r} is missing (deleted or renamed on the host)",
            host_dir=str(ctx.host_dir),
            facts=facts,
        ) from None
    except OSError as error:
        raise EncfsIOError(f"cannot read {name}: {error.strerror or error}") from None
    try:
        return decode_file_record(aead, ctx.dir_id, file_id, data)
    except (InvalidTag, ValueError, IndexError, struct.error):
        if quiet:
            raise EncfsIntegrityError("not authentic", code="encfs.tampered") from None
        raise integrity_failure(
            "encfs.tampered",
            f"the file record of {entry!r} does not authenticate (modified on the host, or "
            "replaced by another file's)",
            host_dir=str(ctx.host_dir),
            facts=facts,
        ) from None


class OpenFile:
    """The in-memory state of one file of an open directory (not thread-safe on its own)."""

    def __init__(self, ctx: FileContext, aead: AESGCM, record: FileRecord, *, entry: str) -> None:
        """Start from the committed ``record`` (already authenticated and checked)."""
        self.ctx = ctx
        self.aead = aead
        self.file_id = record.file_id
        self.entry = entry
        self.generation = record.generation
        self.length = record.length
        self.slot_sizes = record.slot_sizes
        self.committed: list[ChunkRecord] = list(record.chunks)
        self.current: list[ChunkRecord] = list(record.chunks)
        self.dirty: OrderedDict[int, bytearray] = OrderedDict()
        self.read_cache: OrderedDict[int, tuple[ChunkRecord, bytes | bytearray | memoryview]] = (
            OrderedDict()
        )
        self.fds: list[int | None] = [None, None]
        self.changed = False
        # Scratch space for one sealed chunk, and spare chunk buffers (fewer allocations).
        self._sealed = bytearray(ctx.chunk_size + TAG_SIZE)
        self._pool: list[bytearray] = []
        self._result = bytearray()
        self._batch = bytearray()
        self._next_sequential = -1
        # Per slot: bytes written since the last start_writeback, and the range they span.
        self._unsent = [0, 0]
        self._unsent_range = [(0, 0), (0, 0)]

    # -- Host I/O ------------------------------------------------------------------------------

    def _facts(self, **more: object) -> dict[str, object]:
        return {"file_id": self.file_id.hex(), "entry": self.entry, **more}

    def _fd(self, slot: int) -> int:
        fd = self.fds[slot]
        if fd is not None:
            return fd
        name = host_names(self.file_id)[1 + slot]
        path = self.ctx.host_dir / name
        try:
            if self.ctx.writable:
                fd = host_open(self.ctx, name, os.O_RDWR | os.O_CREAT)
            else:
                fd = host_open(self.ctx, name, os.O_RDONLY)
        except FileNotFoundError:
            raise integrity_failure(
                "encfs.missing",
                f"a host data file of {self.entry!r} is missing (deleted or renamed on the host)",
                host_dir=str(self.ctx.host_dir),
                facts=self._facts(slot=slot),
            ) from None
        except OSError as error:
            raise EncfsIOError(f"cannot open {path}: {error.strerror or error}") from None
        self.fds[slot] = fd
        return fd

    def check_host_sizes(self, *, recovering: bool) -> None:
        """Compare the slot files with the sizes the record expects.

        After an unclean unmount (``recovering``), bytes past the expected size are residue of
        uncommitted writes: they are cut off (left alone when read-only; never read either way).
        Otherwise they mean the file was extended on the host.

        Raises:
            EncfsIntegrityError: ``encfs.truncated`` or ``encfs.extended``.
            EncfsIOError: The host file system failed.
        """
        for slot in (0, 1):
            name = host_names(self.file_id)[1 + slot]
            path = self.ctx.host_dir / name
            expected = self.slot_sizes[slot]
            try:
                actual = host_size(self.ctx, name)
            except OSError as error:
                raise EncfsIOError(f"cannot stat {path}: {error.strerror or error}") from None
            if actual < expected:
                raise integrity_failure(
                    "encfs.truncated",
                    f"{self.entry!r} was truncated on the host ({actual} of {expected} bytes)",
                    host_dir=str(self.ctx.host_dir),
                    facts=self._facts(slot=slot, actual=actual, expected=expected),
                )
            if actual > expected:
                if not recovering:
                    raise integrity_failure(
                        "encfs.extended",
                        f"{self.entry!r} was extended on the host ({actual} bytes, "
                        f"{expected} expected)",
                        host_dir=str(self.ctx.host_dir),
                        facts=self._facts(slot=slot, actual=actual, expected=expected),
                    )
                if self.ctx.writable:
                    try:
                        host_truncate(self.ctx, name, expected)
                    except OSError as error:
                        raise EncfsIOError(
                            f"cannot trim {path}: {error.strerror or error}"
                        ) from None

    def close(self) -> None:
        """Close the host file descriptors (uncommitted changes are dropped)."""
        for slot, fd in enumerate(self.fds):
            if fd is not None:
                os.close(fd)
                self.fds[slot] = None

    # -- Chunks --------------------------------------------------------------------------------

    @property
    def chunks(self) -> int:
        """Return the current number of chunks."""
        return chunk_count(self.length, self.ctx.chunk_size)

    def _decrypt(self, index: int, record: ChunkRecord) -> bytes | bytearray | memoryview:
        """Return chunk ``index`` decrypted (and keep it in the read cache)."""
        size = self.ctx.chunk_size
        cached = self.read_cache.get(index)
        if cached is not None and cached[0] is record:
            self.read_cache.move_to_end(index)
            return cached[1]
        sealed = self._sealed
        try:
            got = os.preadv(self._fd(record.slot), [memoryview(sealed)[:size]], index * size)
        except OSError as error:
            raise EncfsIOError(f"cannot read {self.entry!r}: {error.strerror or error}") from None
        if got != size:
            raise self._diagnose(
                index, "encfs.truncated", f"{self.entry!r} was truncated on the host"
            )
        sealed[size:] = record.tag
        try:
            plain = open_chunk(
                self.aead,
                file_id=self.file_id,
                dir_id=self.ctx.dir_id,
                index=index,
                final=index == self.chunks - 1,
                record=record,
                sealed=sealed,
                out=bytearray(size),
            )
        except InvalidTag:
            raise self._diagnose(
                index,
                "encfs.tampered",
                f"{self.entry!r} does not authenticate (modified, moved or swapped on the host)",
            ) from None
        self.read_cache[index] = (record, plain)
        if len(self.read_cache) > self.ctx.cache_chunks:
            self.read_cache.popitem(last=False)
        return plain

    def _direct(self, index: int) -> bool:
        """Return whether chunk ``index`` should be decrypted straight into a read's result."""
        if index in self.dirty or self.current[index].is_hole:
            return False
        cached = self.read_cache.get(index)
        return cached is None or cached[0] is not self.current[index]

    def _decrypt_run(self, first: int, count: int, slot: int, into: memoryview) -> None:
        """Decrypt ``count`` whole chunks from ``first`` (all in ``slot``) into ``into``.

        One ``preadv`` brings the ciphertexts into private memory (never decrypted in place in
        a host-writable mapping, so the host cannot change bytes between check and use).
        """
        size = self.ctx.chunk_size
        stride = size + TAG_SIZE
        if len(self._batch) < count * stride:
            self._batch = bytearray(count * stride)
        view = memoryview(self._batch)
        fd = self._fd(slot)
        if first == self._next_sequential:
            # Sequential reading: ask the host kernel to fetch what comes next meanwhile.
            os.posix_fadvise(fd, (first + count) * size, _PREFETCH, os.POSIX_FADV_WILLNEED)
        self._next_sequential = first + count
        try:
            got = os.preadv(
                self._fd(slot),
                [view[i * stride : i * stride + size] for i in range(count)],
                first * size,
            )
        except OSError as error:
            raise EncfsIOError(f"cannot read {self.entry!r}: {error.strerror or error}") from None
        if got != count * size:
            raise self._diagnose(
                first + got // size, "encfs.truncated", f"{self.entry!r} was truncated on the host"
            )
        last = self.chunks - 1
        for i in range(count):
            index = first + i
            record = self.current[index]
            view[i * stride + size : (i + 1) * stride] = record.tag
            try:
                open_chunk(
                    self.aead,
                    file_id=self.file_id,
                    dir_id=self.ctx.dir_id,
                    index=index,
                    final=index == last,
                    record=record,
                    sealed=view[i * stride : (i + 1) * stride],
                    out=into[i * size : (i + 1) * size],
                )
            except InvalidTag:
                raise self._diagnose(
                    index,
                    "encfs.tampered",
                    f"{self.entry!r} does not authenticate (modified, moved or swapped on the "
                    "host)",
                ) from None

    def _diagnose(self, index: int, code: str, message: str) -> EncfsIntegrityError:
        """Explain a chunk that cannot be read: an older file version, else ``code``."""
        try:
            on_disk: FileRecord | None = read_record(
                self.ctx, self.aead, self.file_id, entry=self.entry, quiet=True
            )
        except (EncfsIntegrityError, EncfsIOError):
            on_disk = None
        if on_disk is not None and on_disk.generation < self.generation:
            return integrity_failure(
                "encfs.rollback",
                f"{self.entry!r} was replaced on the host by an older version of itself "
                f"(generation {on_disk.generation}, expected {self.generation})",
                host_dir=str(self.ctx.host_dir),
                facts=self._facts(chunk=index, found=on_disk.generation, expected=self.generation),
            )
        return integrity_failure(
            code,
            f"{message} (chunk {index})",
            host_dir=str(self.ctx.host_dir),
            facts=self._facts(chunk=index),
        )

    def _plain(self, index: int) -> bytes | bytearray | memoryview:
        buffered = self.dirty.get(index)
        if buffered is not None:
            return buffered
        record = self.current[index]
        if record.is_hole:
            return bytes(self.ctx.chunk_size)
        return self._decrypt(index, record)

    def _buffer(self, index: int, *, whole: bool = False) -> bytearray:
        """Return the write-back buffer of chunk ``index``, loading it unless ``whole``."""
        buffered = self.dirty.get(index)
        if buffered is not None:
            self.dirty.move_to_end(index)
            return buffered
        if whole:
            buffered = self._pool.pop() if self._pool else bytearray(self.ctx.chunk_size)
        else:
            buffered = bytearray(self._plain(index))
        self.dirty[index] = buffered
        self.read_cache.pop(index, None)
        while len(self.dirty) > self.ctx.cache_chunks:
            oldest = next(iter(self.dirty))
            self._seal(oldest)
        return buffered

    def _seal(self, index: int) -> None:
        """Encrypt the buffered chunk ``index`` into its free slot and drop the buffer."""
        plain = self.dirty.pop(index)
        size = self.ctx.chunk_size
        slot = 0
        if index < len(self.committed) and not self.committed[index].is_hole:
            slot = 1 - self.committed[index].slot
        record = seal_chunk(
            self.aead,
            file_id=self.file_id,
            dir_id=self.ctx.dir_id,
            index=index,
            generation=self.generation + 1,
            final=index == self.chunks - 1,
            slot=slot,
            nonce=self.ctx.random_bytes(NONCE_SIZE),
            plaintext=plain,
            out=self._sealed,
        )
        if len(self._pool) < _POOL:
            self._pool.append(plain)
        try:
            os.pwrite(self._fd(slot), memoryview(self._sealed)[:size], index * size)
        except OSError as error:
            raise EncfsIOError(f"cannot write {self.entry!r}: {error.strerror or error}") from None
        self.current[index] = record
        self._written(slot, index * size, size)

    def _written(self, slot: int, offset: int, length: int) -> None:
        """Note ciphertext written to ``slot``; start its writeback every few MiB (durable only).

        The commit's ``fsync`` then finds most of a large write already on its way to the
        device, instead of starting to write all of it at that moment.
        """
        if not self.ctx.durable:
            return
        low, high = self._unsent_range[slot]
        if self._unsent[slot]:
            low, high = min(low, offset), max(high, offset + length)
        else:
            low, high = offset, offset + length
        self._unsent[slot] += length
        self._unsent_range[slot] = (low, high)
        if self._unsent[slot] >= _WRITEBACK:
            self._unsent[slot] = 0
            start_writeback(self._fd(slot), low, high - low)

    # -- Operations ----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        """Return up to ``size`` bytes from ``offset`` (short at the end of the file).

        Raises:
            EncfsIntegrityError: A chunk read does not authenticate.
            EncfsIOError: The host file system failed.
        """
        wanted = max(0, min(self.length, offset + size) - offset)
        if len(self._result) < wanted:
            self._result = bytearray(wanted)
        with memoryview(self._result) as view:
            got = self.read_into(offset, view[:wanted])
            return bytes(view[:got])

    def read_into(self, offset: int, out: memoryview) -> int:
        """Fill ``out`` with the bytes from ``offset``; return how many (short at the end).

        Whole chunks are decrypted straight into ``out`` (the FUSE server passes the kernel's
        reply buffer, so a read costs no copy of the plaintext); partial chunks come from the
        read cache, so small sequential reads decrypt each chunk once.

        Raises:
            EncfsIntegrityError: A chunk read does not authenticate.
            EncfsIOError: The host file system failed.
        """
        end = min(self.length, offset + len(out))
        if offset >= end:
            return 0
        chunk = self.ctx.chunk_size
        view = out
        position = offset
        while position < end:
            index, start = divmod(position, chunk)
            stop = min(chunk, end - index * chunk)
            at = position - offset
            if (start, stop) == (0, chunk) and self._direct(index):
                slot = self.current[index].slot
                count = 1
                while (
                    count < _BATCH
                    and (index + count + 1) * chunk <= end
                    and self._direct(index + count)
                    and self.current[index + count].slot == slot
                ):
                    count += 1
                self._decrypt_run(index, count, slot, view[at : at + count * chunk])
                position = (index + count) * chunk
                continue
            if index not in self.dirty and self.current[index].is_hole:
                view[at : at + stop - start] = bytes(stop - start)
            else:
                view[at : at + stop - start] = memoryview(self._plain(index))[start:stop]
            position = index * chunk + stop
        return end - offset

    def set_length(self, length: int) -> None:
        """Truncate or extend (with zeros) to ``length`` bytes.

        Raises:
            EncfsIntegrityError: A chunk that must be re-sealed does not authenticate.
            EncfsIOError: The host file system failed.
        """
        if length == self.length:
            return
        chunk = self.ctx.chunk_size
        old_count, new_count = self.chunks, chunk_count(length, chunk)
        if length < self.length:
            if new_count:
                last = self._buffer(new_count - 1)
                cut = length - (new_count - 1) * chunk
                last[cut:] = bytes(chunk - cut)
            for index in [i for i in self.dirty if i >= new_count]:
                del self.dirty[index]
            for index in [i for i in self.read_cache if i >= new_count]:
                del self.read_cache[index]
            del self.current[new_count:]
        else:
            if new_count > old_count and old_count and not self.current[old_count - 1].is_hole:
                self._buffer(old_count - 1)
            self.current.extend([HOLE] * (new_count - old_count))
        self.length = length
        self.changed = True

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at ``offset`` (extending the file with zeros if past its end).

        Raises:
            EncfsIntegrityError: A chunk partly overwritten does not authenticate.
            EncfsIOError: The host file system failed.
        """
        view = memoryview(data).cast("B")
        if not view:
            return 0
        end = offset + len(view)
        if end > self.length:
            self.set_length(end)
        chunk = self.ctx.chunk_size
        last = self.chunks - 1  # The length no longer changes in this call.
        position = offset
        while position < end:
            index, start = divmod(position, chunk)
            stop = min(chunk, end - index * chunk)
            if start == 0 and stop == chunk and index < last:
                # Whole chunks that are not the last one: seal them straight from the request
                # (the final-chunk flag of these cannot change without the chunk being reloaded,
                # see the module docstring), in runs written with one system call.
                count = 1
                slot = self._free_slot(index)
                while (
                    count < _BATCH
                    and (index + count + 1) * chunk <= end
                    and index + count < last
                    and self._free_slot(index + count) == slot
                ):
                    count += 1
                at = position - offset
                self._seal_run(index, count, slot, view[at : at + count * chunk])
                position = (index + count) * chunk
                continue
            buffered = self._buffer(index, whole=start == 0 and stop == chunk)
            buffered[start:stop] = view[position - offset : position - offset + stop - start]
            position = index * chunk + stop
        self.changed = True
        return len(view)

    def _free_slot(self, index: int) -> int:
        """Return the slot a new version of chunk ``index`` goes to (not the committed one)."""
        if index < len(self.committed) and not self.committed[index].is_hole:
            return 1 - self.committed[index].slot
        return 0

    def _seal_run(self, first: int, count: int, slot: int, plain: memoryview) -> None:
        """Seal ``count`` whole non-final chunks from ``first`` into ``slot`` with one write.

        Raises:
            EncfsIOError: The host file system failed.
        """
        size = self.ctx.chunk_size
        stride = size + TAG_SIZE
        if len(self._batch) < count * stride:
            self._batch = bytearray(count * stride)
        generation = self.generation + 1
        nonces = self.ctx.random_bytes(NONCE_SIZE * count)  # One call for the whole run.
        with memoryview(self._batch) as batch:
            records = []
            for i in range(count):
                index = first + i
                if self.dirty:
                    stale = self.dirty.pop(index, None)
                    if stale is not None and len(self._pool) < _POOL:
                        self._pool.append(stale)
                if self.read_cache:
                    self.read_cache.pop(index, None)
                records.append(
                    seal_chunk(
                        self.aead,
                        file_id=self.file_id,
                        dir_id=self.ctx.dir_id,
                        index=index,
                        generation=generation,
                        final=False,
                        slot=slot,
                        nonce=nonces[i * NONCE_SIZE : (i + 1) * NONCE_SIZE],
                        plaintext=plain[i * size : (i + 1) * size],
                        out=batch[i * stride : (i + 1) * stride],
                    )
                )
            parts = [batch[i * stride : i * stride + size] for i in range(count)]
            try:
                written = os.pwritev(self._fd(slot), parts, first * size)
                while written < count * size:  # A short write: finish it chunk by chunk.
                    done, part = divmod(written, size)
                    written += os.pwrite(self._fd(slot), parts[done][part:], first * size + written)
            except OSError as error:
                raise EncfsIOError(
                    f"cannot write {self.entry!r}: {error.strerror or error}"
                ) from None
            finally:
                for part_view in parts:
                    part_view.release()
        self.current[first : first + count] = records
        self._written(slot, first * size, count * size)

    def _needed_sizes(self) -> tuple[int, int]:
        sizes = [0, 0]
        for index, record in enumerate(self.current):
            if not record.is_hole:
                sizes[record.slot] = (index + 1) * self.ctx.chunk_size
        return sizes[0], sizes[1]

    def commit(self) -> FileRecord | None:
        """Seal buffered chunks, sync them and replace the file record (new generation).

        The caller must then write the index naming the new generation, and only after that
        call :meth:`trim`. Returns the new record, or ``None`` when nothing changed.

        Raises:
            EncfsIOError: The host file system failed.
        """
        if not self.changed:
            return None
        for index in list(self.dirty):
            self._seal(index)
        if self.ctx.durable:
            for fd in self.fds:
                if fd is not None:
                    os.fsync(fd)
        record = FileRecord(
            file_id=self.file_id,
            generation=self.generation + 1,
            length=self.length,
            slot_sizes=self._needed_sizes(),
            chunks=tuple(self.current),
        )
        data = encode_file_record(
            self.aead, self.ctx.dir_id, record, self.ctx.random_bytes(NONCE_SIZE)
        )
        write_atomic(self.ctx, host_names(self.file_id)[0], data)
        self.committed = list(self.current)
        self.generation = record.generation
        self.slot_sizes = record.slot_sizes
        self.changed = False
        return record

    def trim(self) -> None:
        """Cut the slot files to the committed sizes (after the index names this generation).

        Raises:
            EncfsIOError: The host file system failed.
        """
        for slot in (0, 1):
            name = host_names(self.file_id)[1 + slot]
            path = self.ctx.host_dir / name
            try:
                if host_size(self.ctx, name) > self.slot_sizes[slot]:
                    host_truncate(self.ctx, name, self.slot_sizes[slot])
            except OSError as error:
                raise EncfsIOError(f"cannot trim {path}: {error.strerror or error}") from None
