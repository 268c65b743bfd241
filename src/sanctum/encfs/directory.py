"""An encrypted directory on the host, opened with its key: the API of the FUSE layer and CLI.

:class:`EncryptedDirectory` presents a tree of files and directories stored in the format of
:mod:`sanctum.encfs.format`. Names, sizes and contents never reach the host in plaintext. Every
read is authenticated against the in-memory index and file records, which are loaded once per
open and are the reference for the rest of the open's lifetime: a host file that is modified,
cut, extended, moved, swapped, replaced or rolled back is refused with an
:class:`~sanctum.encfs.errors.EncfsIntegrityError` and an audit log line.

Durability: writes are buffered; :meth:`EncryptedDirectory.flush` (FUSE ``fsync``/``flush``, the
CLI at the end) commits them: new chunk versions are written beside the committed ones and
synced, then each changed file record, then the index, are replaced atomically. An interruption
at any point leaves the previous commit readable. Structural changes (create, mkdir, delete,
rename) commit the index at once.

The object is thread-safe (one lock); the I/O edge takes its clock and randomness as arguments.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat as stat_module
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Self

from cryptography.exceptions import InvalidTag

from sanctum.encfs._file import FileContext, OpenFile, host_names, read_record, write_atomic
from sanctum.encfs.errors import EncfsIOError, EncfsUsageError, integrity_failure
from sanctum.encfs.format import (
    DEFAULT_CHUNK_SIZE,
    FILE_ID_SIZE,
    HEADER_NAME,
    INDEX_NAME,
    NONCE_SIZE,
    DirectoryKeys,
    Entry,
    FileRecord,
    Index,
    decode_header,
    decode_index,
    encode_index,
    new_header,
    unlock,
)

__all__ = ["EncryptedDirectory", "Stat", "normalise_path"]

_log = logging.getLogger(__name__)
_DEFAULT_CACHE_CHUNKS = 64


def normalise_path(path: str) -> str:
    """Return ``path`` as a relative POSIX path without leading or trailing slashes.

    ``""`` (or ``"/"``) is the root directory.

    Raises:
        EncfsUsageError: The path has ``.``/``..`` components, empty components or NUL
            (``encfs.invalid_path``).
    """
    stripped = path.strip("/")
    if not stripped:
        return ""
    parts = stripped.split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise EncfsUsageError(f"invalid path {path!r}", code="encfs.invalid_path")
    return "/".join(parts)


def _lock(handle: BinaryIO, root: Path, *, exclusive: bool) -> None:
    """Take the directory's advisory lock: exclusive for a writer, shared for readers.

    Raises:
        EncfsUsageError: Another process has the directory open in a conflicting way
            (``encfs.busy``).
    """
    try:
        fcntl.flock(
            handle.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        )
    except BlockingIOError:
        raise EncfsUsageError(
            f"{root} is open elsewhere ({'a writer or readers' if exclusive else 'a writer'} "
            "holds it); an encrypted directory has one writer at a time",
            code="encfs.busy",
        ) from None


def _open_dir(root: Path) -> int:
    """Open the host directory (every host file is then reached relative to it).

    Raises:
        EncfsIntegrityError: It does not exist (``encfs.missing``).
        EncfsIOError: It cannot be opened.
    """
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise integrity_failure(
            "encfs.missing", f"{root} does not exist", host_dir=str(root)
        ) from None
    except OSError as error:
        raise EncfsIOError(f"cannot open {root}: {error.strerror or error}") from None


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


@dataclass(frozen=True, slots=True)
class Stat:
    """What :meth:`EncryptedDirectory.stat` reports about one name.

    Attributes:
        path: The normalised path.
        kind: ``"file"`` or ``"dir"``.
        size: Length in bytes (0 for directories).
        mode: Permission bits.
        mtime_ns: Modification time in nanoseconds since the epoch.
        file_id: The file's id in hex (its host name), empty for directories.
        generation: The file's committed generation (0 for directories).
    """

    path: str
    kind: Literal["file", "dir"]
    size: int
    mode: int
    mtime_ns: int
    file_id: str
    generation: int

    @property
    def st_mode(self) -> int:
        """Return the POSIX ``st_mode`` (type and permission bits)."""
        kind = stat_module.S_IFDIR if self.kind == "dir" else stat_module.S_IFREG
        return kind | self.mode


class EncryptedDirectory:
    """An open encrypted directory (create with :meth:`initialize`, then :meth:`open`)."""

    def __init__(
        self,
        host_dir: Path,
        dir_fd: int,
        keys: DirectoryKeys,
        index: Index,
        *,
        writable: bool,
        durable: bool,
        cache_chunks: int,
        clock: Callable[[], int],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        """Use :meth:`open`; this constructor takes an index already authenticated."""
        self.host_dir = host_dir
        self._keys = keys
        self.dir_fd = dir_fd
        self._ctx = FileContext(
            host_dir=host_dir,
            dir_fd=dir_fd,
            dir_id=keys.dir_id,
            chunk_size=keys.chunk_size,
            writable=writable,
            durable=durable,
            cache_chunks=cache_chunks,
            random_bytes=random_bytes,
        )
        self._entries: dict[str, Entry] = dict(index.entries)
        self._epoch = index.epoch
        self._recovering = not index.clean
        self._clock = clock
        self._lock = threading.RLock()
        self._files: dict[bytes, OpenFile] = {}
        self._index_dirty = False
        self._doomed: list[bytes] = []
        self._closed = False
        self._lock_file: BinaryIO | None = None

    # -- Opening and closing ---------------------------------------------------------------------

    @classmethod
    def initialize(
        cls,
        host_dir: str | os.PathLike[str],
        key: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        clock: Callable[[], int] = time.time_ns,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """Create an empty encrypted directory in ``host_dir`` (created if missing, else empty).

        Raises:
            EncfsUsageError: ``host_dir`` is not empty, or a bad key or chunk size.
            EncfsIOError: The host file system failed.
        """
        root = Path(host_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
            if any(root.iterdir()):
                raise EncfsUsageError(
                    f"{root} is not empty; an encrypted directory starts in an empty directory",
                    code="encfs.exists",
                )
        except OSError as error:
            raise EncfsIOError(f"cannot create {root}: {error.strerror or error}") from None
        dir_id = random_bytes(16)
        header = new_header(key, dir_id, chunk_size)
        keys = unlock(decode_header(header), key)
        dir_fd = _open_dir(root)
        try:
            ctx = FileContext(
                host_dir=root,
                dir_fd=dir_fd,
                dir_id=dir_id,
                chunk_size=chunk_size,
                writable=True,
                durable=True,
                cache_chunks=1,
                random_bytes=random_bytes,
            )
            root_entry = Entry("dir", 0o755, clock())
            index = Index(epoch=1, clean=True, entries={"": root_entry})
            index_bytes = encode_index(keys.index, dir_id, index, random_bytes(NONCE_SIZE))
            write_atomic(ctx, INDEX_NAME, index_bytes)
            write_atomic(ctx, HEADER_NAME, header)
        finally:
            os.close(dir_fd)

    @classmethod
    def open(
        cls,
        host_dir: str | os.PathLike[str],
        key: bytes,
        *,
        create: bool = False,
        writable: bool = True,
        min_epoch: int = 0,
        durable: bool = True,
        cache_chunks: int = _DEFAULT_CACHE_CHUNKS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        clock: Callable[[], int] = time.time_ns,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> Self:
        """Open the encrypted directory in ``host_dir`` with its 32-byte ``key``.

        Args:
            host_dir: The host directory holding the ciphertext.
            key: The directory's master key.
            create: Initialise the directory first if ``host_dir`` is missing or empty.
            writable: Open for writing (marks the index "in use" until :meth:`close`).
            min_epoch: Refuse an index older than this epoch (a value remembered elsewhere,
                for example by the manager, detects a rollback of the whole directory).
            durable: ``fsync`` data and records at each commit (turn off only for tests).
            cache_chunks: Chunks kept in memory per file (write-back and read caches).
            chunk_size: Chunk size of a directory created by ``create``.
            clock: Nanoseconds since the epoch, for modification times.
            random_bytes: Source of nonces and ids.

        Raises:
            WrongKeyError: The key does not open this directory.
            EncfsFormatError: Not an encrypted directory, or an unsupported version.
            EncfsIntegrityError: The index does not authenticate or is older than ``min_epoch``.
            EncfsUsageError: Another process has it open for writing, or for reading while
                this open is for writing (``encfs.busy``).
            EncfsIOError: The host file system failed.
        """
        root = Path(host_dir)
        if create and (not root.exists() or not any(root.iterdir())):
            cls.initialize(root, key, chunk_size=chunk_size, clock=clock, random_bytes=random_bytes)
        dir_fd = _open_dir(root)
        try:
            try:
                lock = os.fdopen(os.open(HEADER_NAME, os.O_RDONLY, dir_fd=dir_fd), "rb")
            except FileNotFoundError:
                raise integrity_failure(
                    "encfs.missing",
                    f"{root} has no {HEADER_NAME}: not an encrypted directory, or its files "
                    "were removed",
                    host_dir=str(root),
                ) from None
            except OSError as error:
                raise EncfsIOError(f"cannot read {root}: {error.strerror or error}") from None
            try:
                _lock(lock, root, exclusive=writable)
                try:
                    header_bytes = lock.read()
                    index_fd = os.open(INDEX_NAME, os.O_RDONLY, dir_fd=dir_fd)
                    with os.fdopen(index_fd, "rb") as index_file:
                        index_bytes = index_file.read()
                except FileNotFoundError:
                    raise integrity_failure(
                        "encfs.missing",
                        f"{root} has no {INDEX_NAME}: its files were removed",
                        host_dir=str(root),
                    ) from None
                except OSError as error:
                    raise EncfsIOError(f"cannot read {root}: {error.strerror or error}") from None
                return cls._authenticate(
                    root,
                    key,
                    header_bytes,
                    index_bytes,
                    lock=lock,
                    dir_fd=dir_fd,
                    writable=writable,
                    min_epoch=min_epoch,
                    durable=durable,
                    cache_chunks=cache_chunks,
                    clock=clock,
                    random_bytes=random_bytes,
                )
            except BaseException:
                lock.close()
                raise
        except BaseException:
            os.close(dir_fd)
            raise

    @classmethod
    def _authenticate(
        cls,
        root: Path,
        key: bytes,
        header_bytes: bytes,
        index_bytes: bytes,
        *,
        lock: BinaryIO,
        dir_fd: int,
        writable: bool,
        min_epoch: int,
        durable: bool,
        cache_chunks: int,
        clock: Callable[[], int],
        random_bytes: Callable[[int], bytes],
    ) -> Self:
        """Check the key and the index, and build the open directory (``open``'s second half).

        Raises:
            WrongKeyError: The key does not open this directory.
            EncfsFormatError: An unsupported version.
            EncfsIntegrityError: The index does not authenticate or is older than ``min_epoch``.
        """
        keys = unlock(decode_header(header_bytes), key)
        try:
            index = decode_index(keys.index, keys.dir_id, index_bytes)
        except (InvalidTag, ValueError, KeyError, TypeError):
            raise integrity_failure(
                "encfs.tampered",
                "the directory index does not authenticate (modified or replaced on the host)",
                host_dir=str(root),
            ) from None
        if index.epoch < min_epoch:
            raise integrity_failure(
                "encfs.rollback",
                f"the directory index is older than expected (epoch {index.epoch}, at least "
                f"{min_epoch} expected): the host restored an old copy",
                host_dir=str(root),
                facts={"epoch": index.epoch, "min_epoch": min_epoch},
            )
        if not index.clean:
            _log.warning(
                "encrypted directory %s was not closed cleanly; uncommitted writes of the last "
                "mount are discarded",
                root,
            )
        directory = cls(
            root,
            dir_fd,
            keys,
            index,
            writable=writable,
            durable=durable,
            cache_chunks=max(1, cache_chunks),
            clock=clock,
            random_bytes=random_bytes,
        )
        directory._lock_file = lock
        if writable:
            directory._write_index(clean=False)
        return directory

    def close(self) -> None:
        """Commit everything, mark the directory cleanly closed and release host files.

        Raises:
            EncfsIntegrityError: A pending change could not be committed because of tampering.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            if self._closed:
                return
            try:
                if self._ctx.writable:
                    self._commit(None, clean=True)
            finally:
                self._release()

    def __enter__(self) -> Self:
        """Return the directory (closing it on exit)."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the directory (committing pending writes) unless an error is propagating."""
        if exc_type is None:
            self.close()
            return
        with self._lock:
            self._release()

    def _release(self) -> None:
        """Close every host file and the lock (uncommitted changes are dropped)."""
        for state in self._files.values():
            state.close()
        self._files.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        if not self._closed:
            os.close(self.dir_fd)
        self._closed = True

    @property
    def epoch(self) -> int:
        """Return the index epoch of the last commit (remember it to detect a rollback later)."""
        return self._epoch

    @property
    def chunk_size(self) -> int:
        """Return the directory's chunk size."""
        return self._keys.chunk_size

    # -- Internal helpers --------------------------------------------------------------------

    def _check_open(self, *, write: bool = False) -> None:
        if self._closed:
            raise EncfsUsageError("the encrypted directory is closed", code="encfs.closed")
        if write and not self._ctx.writable:
            raise EncfsUsageError(
                "the encrypted directory is open read-only", code="encfs.read_only"
            )

    def _entry(self, path: str) -> Entry:
        entry = self._entries.get(path)
        if entry is None:
            raise EncfsUsageError(f"no such file or directory: {path!r}", code="encfs.not_found")
        return entry

    def _file_entry(self, path: str) -> Entry:
        entry = self._entry(path)
        if entry.kind != "file":
            raise EncfsUsageError(f"{path!r} is a directory", code="encfs.is_directory")
        return entry

    def _check_parent(self, path: str) -> None:
        if not path:
            raise EncfsUsageError("the root directory exists", code="encfs.exists")
        parent = self._entries.get(_parent(path))
        if parent is None:
            raise EncfsUsageError(f"the parent of {path!r} does not exist", code="encfs.not_found")
        if parent.kind != "dir":
            raise EncfsUsageError(
                f"the parent of {path!r} is not a directory", code="encfs.not_directory"
            )

    def _state(self, path: str) -> OpenFile:
        entry = self._file_entry(path)
        state = self._files.get(entry.file_id)
        if state is not None:
            state.entry = path
            return state
        aead = self._keys.file_aead(entry.file_id)
        record = read_record(self._ctx, aead, entry.file_id, entry=path)
        record = self._reconcile(path, entry, record)
        state = OpenFile(self._ctx, aead, record, entry=path)
        state.check_host_sizes(recovering=self._recovering)
        self._files[entry.file_id] = state
        return state

    def _reconcile(self, path: str, entry: Entry, record: FileRecord) -> FileRecord:
        """Check a file record's generation against the index.

        Raises:
            EncfsIntegrityError: ``encfs.rollback`` for an older record, ``encfs.tampered``
                for a record newer than any commit could have left.
        """
        facts = {"file_id": entry.file_id.hex(), "entry": path}
        if record.generation == entry.generation:
            if record.length != entry.size:
                raise integrity_failure(
                    "encfs.tampered",
                    f"the file record of {path!r} disagrees with the index",
                    host_dir=str(self.host_dir),
                    facts=facts,
                )
            return record
        if record.generation < entry.generation:
            raise integrity_failure(
                "encfs.rollback",
                f"{path!r} was replaced on the host by an older version of itself (generation "
                f"{record.generation}, the index expects {entry.generation})",
                host_dir=str(self.host_dir),
                facts={**facts, "found": record.generation, "expected": entry.generation},
            )
        if record.generation == entry.generation + 1 and self._recovering:
            # The last mount committed this file but stopped before writing the index: the
            # record is authentic and complete, so roll the index forward.
            _log.warning("encrypted file %r: completing an interrupted commit", path)
            self._entries[path] = replace(entry, generation=record.generation, size=record.length)
            self._index_dirty = True
            return record
        raise integrity_failure(
            "encfs.rollback",
            f"the directory index is older than the record of {path!r} (generation "
            f"{record.generation}, the index says {entry.generation}): the host restored an "
            "old index",
            host_dir=str(self.host_dir),
            facts={**facts, "found": record.generation, "expected": entry.generation},
        )

    def _write_index(self, *, clean: bool) -> None:
        epoch = self._epoch + 1
        index = Index(epoch=epoch, clean=clean, entries=self._entries)
        data = encode_index(
            self._keys.index, self._keys.dir_id, index, self._ctx.random_bytes(NONCE_SIZE)
        )
        write_atomic(self._ctx, INDEX_NAME, data)
        if self._ctx.durable:
            try:
                os.fsync(self.dir_fd)
            except OSError as error:
                raise EncfsIOError(
                    f"cannot sync {self.host_dir}: {error.strerror or error}"
                ) from None
        self._epoch = epoch
        self._index_dirty = False
        for file_id in self._doomed:
            for name in host_names(file_id):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=self.dir_fd)
        self._doomed.clear()

    def _commit(self, path: str | None, *, clean: bool = False) -> None:
        if path is None:
            states = list(self._files.values())
        else:
            entry = self._file_entry(path)
            state = self._files.get(entry.file_id)
            states = [state] if state is not None else []
        committed: list[OpenFile] = []
        for state in states:
            record = state.commit()
            if record is None:
                continue
            committed.append(state)
            entry = self._entries[state.entry]
            self._entries[state.entry] = replace(
                entry, generation=record.generation, size=record.length
            )
            self._index_dirty = True
        if self._index_dirty or clean:
            self._write_index(clean=clean)
        for state in committed:
            state.trim()

    def _new_file_id(self) -> bytes:
        return self._ctx.random_bytes(FILE_ID_SIZE)

    def _touch(self, path: str) -> None:
        entry = self._entries[path]
        self._entries[path] = replace(entry, mtime_ns=self._clock())
        self._index_dirty = True

    # -- Reading -----------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        """Return whether ``path`` names a file or directory."""
        with self._lock:
            return normalise_path(path) in self._entries

    def stat(self, path: str) -> Stat:
        """Return what is known about ``path``.

        Raises:
            EncfsUsageError: ``encfs.not_found``.
        """
        with self._lock:
            self._check_open()
            name = normalise_path(path)
            entry = self._entry(name)
            size = entry.size
            if entry.kind == "file" and entry.file_id in self._files:
                size = self._files[entry.file_id].length
            return Stat(
                path=name,
                kind=entry.kind,
                size=size,
                mode=entry.mode,
                mtime_ns=entry.mtime_ns,
                file_id=entry.file_id.hex(),
                generation=entry.generation,
            )

    def list(self, path: str = "") -> list[str]:
        """Return the names directly inside the directory ``path``, sorted.

        Raises:
            EncfsUsageError: ``encfs.not_found`` or ``encfs.not_directory``.
        """
        with self._lock:
            self._check_open()
            name = normalise_path(path)
            if self._entry(name).kind != "dir":
                raise EncfsUsageError(f"{name!r} is not a directory", code="encfs.not_directory")
            prefix = f"{name}/" if name else ""
            return sorted(
                other[len(prefix) :]
                for other in self._entries
                if other and other.startswith(prefix) and "/" not in other[len(prefix) :]
            )

    def walk(self) -> Iterator[Stat]:
        """Yield every file and directory except the root, in path order."""
        with self._lock:
            names = sorted(name for name in self._entries if name)
        for name in names:
            yield self.stat(name)

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        """Return ``size`` bytes (all if negative) of the file ``path`` from ``offset``.

        Raises:
            EncfsUsageError: Not found, or a directory.
            EncfsIntegrityError: The ciphertext on the host was tampered with.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open()
            state = self._state(normalise_path(path))
            if size < 0:
                size = max(0, state.length - offset)
            return state.read(offset, size)

    def read_into(self, path: str, offset: int, out: memoryview) -> int:
        """Fill ``out`` with bytes of the file ``path`` from ``offset``; return how many.

        Fewer than ``len(out)`` only at the end of the file. The FUSE server passes the
        kernel's reply buffer, so the plaintext is decrypted where the kernel takes it from.

        Raises:
            EncfsUsageError: Not found, a directory, or a negative offset.
            EncfsIntegrityError: The ciphertext on the host was tampered with.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open()
            if offset < 0:
                raise EncfsUsageError("negative offset", code="encfs.invalid_argument")
            return self._state(normalise_path(path)).read_into(offset, out)

    def read_file(self, path: str) -> bytes:
        """Return the whole content of the file ``path``.

        Raises:
            EncfsUsageError: Not found, or a directory.
            EncfsIntegrityError: The ciphertext on the host was tampered with.
            EncfsIOError: The host file system failed.
        """
        return self.read(path)

    def verify(self) -> int:
        """Read and authenticate every file completely; return the number of files checked.

        Raises:
            EncfsIntegrityError: The first tampering found.
            EncfsIOError: The host file system failed.
        """
        checked = 0
        for item in self.walk():
            if item.kind == "file":
                with self._lock:
                    state = self._state(item.path)
                    step = self.chunk_size * 16
                    for offset in range(0, state.length, step):
                        state.read(offset, step)
                checked += 1
        return checked

    # -- Writing -----------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        """Create the directory ``path`` (its parent must exist).

        Raises:
            EncfsUsageError: It exists, or the parent is missing or a file.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open(write=True)
            name = normalise_path(path)
            self._check_parent(name)
            if name in self._entries:
                raise EncfsUsageError(f"{name!r} exists", code="encfs.exists")
            self._entries[name] = Entry("dir", mode & 0o7777, self._clock())
            self._touch(_parent(name))
            self._write_index(clean=False)

    def create(self, path: str, mode: int = 0o644, *, exist_ok: bool = False) -> None:
        """Create the empty file ``path``; with ``exist_ok`` an existing file is kept as is.

        Raises:
            EncfsUsageError: It exists (unless ``exist_ok``), is a directory, or the parent is
                missing.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open(write=True)
            name = normalise_path(path)
            self._check_parent(name)
            existing = self._entries.get(name)
            if existing is not None:
                if existing.kind == "dir":
                    raise EncfsUsageError(f"{name!r} is a directory", code="encfs.is_directory")
                if exist_ok:
                    return
                raise EncfsUsageError(f"{name!r} exists", code="encfs.exists")
            file_id = self._new_file_id()
            aead = self._keys.file_aead(file_id)
            record = FileRecord(file_id, 0, 0, (0, 0), ())
            state = OpenFile(self._ctx, aead, record, entry=name)
            state.changed = True
            created = state.commit()
            if created is None:  # pragma: no cover (changed is set just above)
                raise AssertionError
            self._files[file_id] = state
            self._entries[name] = Entry(
                "file", mode & 0o7777, self._clock(), file_id, created.generation, 0
            )
            self._touch(_parent(name))
            self._write_index(clean=False)

    def write(self, path: str, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` into the existing file ``path`` at ``offset``; return bytes written.

        The write is buffered until :meth:`flush` or :meth:`close`.

        Raises:
            EncfsUsageError: Not found, a directory, or a negative offset.
            EncfsIntegrityError: A chunk that must be merged does not authenticate.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open(write=True)
            if offset < 0:
                raise EncfsUsageError("negative offset", code="encfs.invalid_argument")
            name = normalise_path(path)
            written = self._state(name).write(offset, data)
            self._touch(name)
            return written

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Create or replace the file ``path`` with ``data`` and commit it.

        Raises:
            EncfsUsageError: ``path`` is a directory or its parent is missing.
            EncfsIntegrityError: The existing file was tampered with.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self.create(path, mode, exist_ok=True)
            self.truncate(path, 0)
            self.write(path, 0, data)
            self.flush(path)

    def truncate(self, path: str, length: int) -> None:
        """Cut or extend (with zeros) the file ``path`` to ``length`` bytes.

        Raises:
            EncfsUsageError: Not found, a directory, or a negative length.
            EncfsIntegrityError: The last chunk kept does not authenticate.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open(write=True)
            if length < 0:
                raise EncfsUsageError("negative length", code="encfs.invalid_argument")
            name = normalise_path(path)
            self._state(name).set_length(length)
            self._touch(name)

    def set_attributes(
        self, path: str, *, mode: int | None = None, mtime_ns: int | None = None
    ) -> None:
        """Change the permission bits and/or modification time of ``path``.

        Raises:
            EncfsUsageError: Not found.
        """
        with self._lock:
            self._check_open(write=True)
            name = normalise_path(path)
            entry = self._entry(name)
            self._entries[name] = replace(
                entry,
                mode=entry.mode if mode is None else mode & 0o7777,
                mtime_ns=entry.mtime_ns if mtime_ns is None else mtime_ns,
            )
            self._index_dirty = True

    def delete(self, path: str) -> None:
        """Remove the file ``path`` (its host files go once the index no longer names them).

        Raises:
            EncfsUsageError: Not found, or a directory.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open(write=True)
            name = normalise_path(path)
            entry = self._file_entry(name)
            self._forget(entry)
            del self._entries[name]
            self._touch(_parent(name))
            self._write_index(clean=False)

    def _forget(self, entry: Entry) -> None:
        state = self._files.pop(entry.file_id, None)
        if state is not None:
            state.close()
        self._doomed.append(entry.file_id)

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path``.

        Raises:
            EncfsUsageError: Not found, not a directory, not empty, or the root.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open(write=True)
            name = normalise_path(path)
            if not name:
                raise EncfsUsageError("cannot remove the root", code="encfs.invalid_path")
            if self._entry(name).kind != "dir":
                raise EncfsUsageError(f"{name!r} is not a directory", code="encfs.not_directory")
            if self.list(name):
                raise EncfsUsageError(f"{name!r} is not empty", code="encfs.not_empty")
            del self._entries[name]
            self._touch(_parent(name))
            self._write_index(clean=False)

    def rename(self, old: str, new: str) -> None:
        """Rename ``old`` to ``new``, replacing a file or empty directory there (POSIX rules).

        Only the encrypted index changes; the host files keep their random names.

        Raises:
            EncfsUsageError: ``old`` is missing, the kinds conflict, ``new`` is a non-empty
                directory or lies inside ``old``.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open(write=True)
            source, target = normalise_path(old), normalise_path(new)
            entry = self._entry(source)
            if not source:
                raise EncfsUsageError("cannot rename the root", code="encfs.invalid_path")
            if source == target:
                return
            self._check_parent(target)
            if target.startswith(f"{source}/"):
                raise EncfsUsageError(
                    f"cannot move {source!r} inside itself", code="encfs.invalid_path"
                )
            existing = self._entries.get(target)
            if existing is not None:
                if existing.kind == "dir":
                    if entry.kind != "dir":
                        raise EncfsUsageError(
                            f"{target!r} is a directory", code="encfs.is_directory"
                        )
                    if self.list(target):
                        raise EncfsUsageError(f"{target!r} is not empty", code="encfs.not_empty")
                elif entry.kind == "dir":
                    raise EncfsUsageError(
                        f"{target!r} is not a directory", code="encfs.not_directory"
                    )
                else:
                    self._forget(existing)
                del self._entries[target]
            moved = {source: target}
            if entry.kind == "dir":
                prefix = f"{source}/"
                moved.update(
                    {
                        name: target + name[len(source) :]
                        for name in self._entries
                        if name.startswith(prefix)
                    }
                )
            for before, after in moved.items():
                self._entries[after] = self._entries.pop(before)
            for state in self._files.values():
                state.entry = moved.get(state.entry, state.entry)
            self._touch(_parent(source))
            self._touch(_parent(target))
            self._write_index(clean=False)

    def flush(self, path: str | None = None) -> None:
        """Commit buffered writes of ``path`` (or of every file) durably and atomically.

        Raises:
            EncfsUsageError: ``path`` is not a file.
            EncfsIntegrityError: A chunk to be merged does not authenticate.
            EncfsIOError: The host file system failed.
        """
        with self._lock:
            self._check_open(write=True)
            self._commit(None if path is None else normalise_path(path))

    def release(self, path: str) -> None:
        """Forget the cached state of a committed file (it is reloaded and re-checked next use).

        Raises:
            EncfsUsageError: ``path`` is not a file.
        """
        with self._lock:
            entry = self._file_entry(normalise_path(path))
            state = self._files.get(entry.file_id)
            if state is not None and not state.changed:
                state.close()
                del self._files[entry.file_id]
