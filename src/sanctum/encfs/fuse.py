"""FUSE mount of an encrypted directory for the simulated platform (``encfs-fuse`` extra).

:func:`mount_encrypted` forks a small server process that opens the encrypted directory with its
key (inherited in memory: never on a command line, in the environment or in a file), mounts it
with libfuse3 through ``mfusepy`` (ctypes bindings, ADR 0110) and serves it until it is
unmounted or its parent process exits. The parent returns once the mount is ready, so the
launcher can then ``exec`` the app, which sees plaintext files at the mountpoint while the host
directory holds ciphertext only.

Integrity failures reach the application as ``EIO`` (after the audit log line); ``fsync``,
``close`` and ``release`` commit the file's writes atomically, so what an app made durable
survives a crash. Ownership is not stored: every entry reports the ``uid``/``gid`` given to the
mount, and ``chown`` succeeds without effect (SQLite running as root calls it on its journal).

Throughput (ADR 0113): 1 MiB requests and read-ahead, callbacks that neither copy written data
nor read results, and by default (``page_cache``) the kernel's page cache kept across opens and
its writeback cache; what the cache may then serve, and why that is sound, is ADR 0114.
"""

# The FUSE callbacks have the signatures libfuse imposes, whether or not they use each argument.
# ruff: noqa: ARG002

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import importlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self, TypeVar

from sanctum.encfs.directory import EncryptedDirectory
from sanctum.encfs.errors import (
    EncfsError,
    EncfsIntegrityError,
    EncfsIOError,
    EncfsUsageError,
    WrongKeyError,
)
from sanctum.errors import EvidenceError, SanctumError, UnavailableError

__all__ = [
    "EncfsOperations",
    "FuseMount",
    "fuse_available",
    "mount_encrypted",
    "unmount",
]

_log = logging.getLogger(__name__)
_READY: Final = b"ready"
_MAX_REQUEST: Final = 1024 * 1024
# libfuse3's FUSE_CAP_WRITEBACK_CACHE (fuse_common.h): the kernel buffers writes in its page cache
# and sends them in large requests (up to max_write) in the background.
_CAP_WRITEBACK_CACHE: Final = 1 << 16
# FUSE_CAP_AUTO_INVAL_DATA: the kernel drops a file's cached pages whenever a fresh ``getattr``
# shows another mtime or size. Only useful when something else can change the data.
_CAP_AUTO_INVAL_DATA: Final = 1 << 12
_DEFAULT_READAHEAD_KB: Final = 1024
_T = TypeVar("_T")


def _mfusepy() -> Any:
    """Import ``mfusepy`` (which loads libfuse) on first use.

    Raises:
        EncfsIOError: The library or libfuse is missing (``encfs.fuse_unavailable``).
    """
    try:
        return importlib.import_module("mfusepy")
    except (ImportError, OSError) as error:
        raise EncfsIOError(
            f"FUSE is not available: {error}",
            code="encfs.fuse_unavailable",
            hint="install the encfs-fuse extra and libfuse3 (apt-get install fuse3), or use the "
            "tmpfs fallback",
        ) from None


def fuse_available() -> str | None:
    """Return why FUSE cannot be used here, or ``None`` when it can.

    Checks ``/dev/fuse``, ``fusermount3`` and the ``mfusepy`` bindings with libfuse3; the
    launcher uses this to choose between the mount and the tmpfs fallback.
    """
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is missing or not accessible"
    if shutil.which("fusermount3") is None and os.geteuid() != 0:
        return "fusermount3 is not installed"
    try:
        _mfusepy()
    except EncfsIOError as error:
        return error.message
    return None


def _errors(method: Callable[..., _T]) -> Callable[..., _T]:
    """Turn Sanctum errors into ``OSError`` with the matching errno (what FUSE reports)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        try:
            return method(*args, **kwargs)
        except EncfsUsageError as error:
            raise OSError(error.errno_code, error.message) from None
        except EncfsError as error:
            raise OSError(error.errno_value, str(error)) from None
        except SanctumError as error:
            raise OSError(errno.EIO, str(error)) from None

    return wrapper


class EncfsOperations:
    """The FUSE operations of one encrypted directory (the high-level libfuse API)."""

    use_ns = True

    def __init__(
        self,
        directory: EncryptedDirectory,
        *,
        uid: int,
        gid: int,
        page_cache: bool = True,
        writeback_cache: bool = True,
    ) -> None:
        """Serve ``directory``; every entry is reported as owned by ``uid``:``gid``.

        ``page_cache`` lets the kernel keep decrypted pages across opens, ``writeback_cache``
        lets it buffer writes (see :meth:`init_with_config`); without them every open starts
        with an empty cache and every ``write`` is a synchronous request.
        """
        self.directory = directory
        self.uid = uid
        self.gid = gid
        self.page_cache = page_cache
        self.writeback_cache = writeback_cache

    def init_with_config(self, conn: Any, config: Any) -> None:
        """Negotiate large requests and the kernel's caching (ADRs 0113 and 0114).

        - ``max_write``/``max_readahead`` of 1 MiB (libfuse's default is 128 KiB): fewer round
          trips through this Python server, which costs far more per request than per byte.
        - ``kernel_cache`` (``page_cache``): pages decrypted once stay in the kernel's page
          cache across opens (``FOPEN_KEEP_CACHE``). Correct because this server is the only
          writer of the directory while it is mounted (it holds the directory's exclusive
          lock), so nothing can change the plaintext behind the kernel's back.
        - ``writeback_cache``: the app's ``write`` lands in the page cache and the kernel sends
          it in 1 MiB requests in the background; ``fsync`` and ``close`` first write back every
          dirty page, then reach :meth:`fsync`/:meth:`flush`, which commit.
        - no ``auto_inval_data``: the kernel need not drop pages when attributes change, since
          every change comes through the mount. Without ``page_cache`` each open still starts
          with an empty cache (no ``FOPEN_KEEP_CACHE``).
        """
        if conn is not None:
            conn.max_write = _MAX_REQUEST
            conn.max_readahead = _MAX_REQUEST
            # Changes only ever come through this mount: nothing for the kernel to notice (and
            # with the writeback cache, our own mtime updates would make it flush and drop
            # pages in the middle of writing).
            conn.want &= ~_CAP_AUTO_INVAL_DATA
            if self.writeback_cache and conn.capable & _CAP_WRITEBACK_CACHE:
                conn.want |= _CAP_WRITEBACK_CACHE
        if config is not None and self.page_cache:
            config.kernel_cache = 1

    @_errors
    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        """Return the attributes of ``path``."""
        item = self.directory.stat(path)
        return {
            "st_mode": item.st_mode,
            "st_nlink": 2 if item.kind == "dir" else 1,
            "st_size": item.size,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_mtime": item.mtime_ns,
            "st_ctime": item.mtime_ns,
            "st_atime": item.mtime_ns,
            "st_blksize": self.directory.chunk_size,
            "st_blocks": -(-item.size // 512),
        }

    @_errors
    def readdir(self, path: str, fh: int) -> list[str]:
        """Return the names in the directory ``path``."""
        return [".", "..", *self.directory.list(path)]

    @_errors
    def access(self, path: str, amode: int) -> int:
        """Allow access to every existing name (the mount's permissions are the host's)."""
        self.directory.stat(path)
        return 0

    @_errors
    def open(self, path: str, flags: int) -> int:
        """Check that ``path`` is a file; handles are paths, so return 0."""
        if self.directory.stat(path).kind != "file":
            raise EncfsUsageError(f"{path!r} is a directory", code="encfs.is_directory")
        return 0

    @_errors
    def create(self, path: str, mode: int, flags: int = 0) -> int:
        """Create an empty file (or open an existing one)."""
        self.directory.create(path, stat.S_IMODE(mode), exist_ok=True)
        return 0

    @_errors
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """Return up to ``size`` bytes from ``offset``."""
        return self.directory.read(path, offset, size)

    @_errors
    def read_into(self, path: str, out: memoryview, offset: int) -> int:
        """Fill ``out`` (the kernel's reply buffer) from ``offset``; return the byte count."""
        return self.directory.read_into(path, offset, out)

    @_errors
    def write(self, path: str, data: bytes | memoryview, offset: int, fh: int) -> int:
        """Write ``data`` at ``offset`` (the request buffer itself: not kept past the call)."""
        return self.directory.write(path, offset, data)

    @_errors
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        """Cut or extend the file."""
        self.directory.truncate(path, length)
        return 0

    @_errors
    def flush(self, path: str, fh: int) -> int:
        """Commit the file's writes (called at every ``close``)."""
        self.directory.flush(path)
        return 0

    @_errors
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        """Commit the file's writes durably."""
        self.directory.flush(path)
        return 0

    @_errors
    def release(self, path: str, fh: int) -> int:
        """Commit what is left when the last handle closes."""
        if self.directory.exists(path):
            self.directory.flush(path)
        return 0

    @_errors
    def unlink(self, path: str) -> int:
        """Remove a file."""
        self.directory.delete(path)
        return 0

    @_errors
    def mkdir(self, path: str, mode: int) -> int:
        """Create a directory."""
        self.directory.mkdir(path, stat.S_IMODE(mode))
        return 0

    @_errors
    def rmdir(self, path: str) -> int:
        """Remove an empty directory."""
        self.directory.rmdir(path)
        return 0

    @_errors
    def rename(self, old: str, new: str) -> int:
        """Rename (replacing the target, POSIX rules)."""
        self.directory.rename(old, new)
        return 0

    @_errors
    def chmod(self, path: str, mode: int) -> int:
        """Change the permission bits."""
        self.directory.set_attributes(path, mode=stat.S_IMODE(mode))
        return 0

    @_errors
    def chown(self, path: str, uid: int, gid: int) -> int:
        """Accept and ignore (ownership is the mount's)."""
        self.directory.stat(path)
        return 0

    @_errors
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        """Set the modification time (nanoseconds)."""
        mtime = time.time_ns() if times is None else int(times[1])
        self.directory.set_attributes(path, mtime_ns=mtime)
        return 0

    @_errors
    def statfs(self, path: str) -> dict[str, int]:
        """Report the host file system's space in chunk-sized blocks."""
        host = os.fstatvfs(self.directory.dir_fd)
        return {
            "f_bsize": host.f_bsize,
            "f_frsize": host.f_frsize,
            "f_blocks": host.f_blocks,
            "f_bfree": host.f_bfree,
            "f_bavail": host.f_bavail,
            "f_files": host.f_files,
            "f_ffree": host.f_ffree,
            "f_namemax": 255,
        }

    def destroy(self, path: str) -> None:
        """Commit everything and mark the directory cleanly closed (at unmount)."""
        try:
            self.directory.close()
        except SanctumError:
            _log.exception("committing the encrypted directory at unmount failed")


def _zero_copy_fuse(fuse: Any) -> Any:
    """Return a subclass of ``mfusepy.FUSE`` whose ``read``/``write`` do not copy the data.

    mfusepy copies every written request into a new ``bytes`` (``ctypes.string_at``) and every
    read result from ``bytes`` into libfuse's buffer. Here ``write`` hands the operations a
    ``memoryview`` of libfuse's request buffer (valid during the call only: the directory copies
    it into its chunk buffers) and ``read`` decrypts straight into libfuse's reply buffer.
    """

    class ZeroCopyFUSE(fuse.FUSE):  # type: ignore[misc]
        def read(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
            name = "" if path is None else path.decode(self.encoding, self.errors)
            address = ctypes.cast(buf, ctypes.c_void_p).value or 0
            target = (ctypes.c_char * size).from_address(address)
            with memoryview(target) as raw, raw.cast("B") as out:
                return int(self.operations.read_into(name, out, offset))

        def write(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
            name = "" if path is None else path.decode(self.encoding, self.errors)
            address = ctypes.cast(buf, ctypes.c_void_p).value or 0
            source = (ctypes.c_char * size).from_address(address)
            with memoryview(source) as raw, raw.cast("B") as data:
                return int(self.operations.write(name, data, offset, fip.contents.fh))

    return ZeroCopyFUSE


def serve(
    directory: EncryptedDirectory,
    mountpoint: Path,
    *,
    uid: int | None = None,
    gid: int | None = None,
    allow_other: bool = False,
    page_cache: bool = True,
    writeback_cache: bool = True,
) -> None:
    """Mount ``directory`` at ``mountpoint`` and serve it in this thread until unmounted.

    Raises:
        EncfsIOError: FUSE is unavailable or the mount failed.
    """
    fuse = _mfusepy()
    operations = EncfsOperations(
        directory,
        uid=os.getuid() if uid is None else uid,
        gid=os.getgid() if gid is None else gid,
        page_cache=page_cache,
        writeback_cache=writeback_cache,
    )
    options: dict[str, Any] = {"foreground": True, "nothreads": True, "fsname": "sanctum-encfs"}
    if allow_other:
        options["allow_other"] = True
    try:
        _zero_copy_fuse(fuse)(operations, str(mountpoint), **options)
    except RuntimeError as error:
        raise EncfsIOError(
            f"mounting {mountpoint} failed: {error}", code="encfs.mount_failed"
        ) from None


def unmount(mountpoint: Path) -> None:
    """Unmount a FUSE mount (lazily if it is busy).

    Raises:
        EncfsIOError: ``fusermount3`` failed.
    """
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    command = [tool, "-u", str(mountpoint)] if tool else ["umount", str(mountpoint)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lazy = [*command[:-1], "-z", command[-1]] if tool else ["umount", "-l", str(mountpoint)]
        retry = subprocess.run(lazy, capture_output=True, text=True, check=False)
        if retry.returncode != 0:
            raise EncfsIOError(
                f"cannot unmount {mountpoint}: {result.stderr.strip() or retry.stderr.strip()}",
                code="encfs.unmount_failed",
            )


@dataclass
class FuseMount:
    """A running FUSE server process (returned by :func:`mount_encrypted`).

    Attributes:
        mountpoint: Where the plaintext view is.
        host_dir: The ciphertext directory.
        pid: The server process.
    """

    mountpoint: Path
    host_dir: Path
    pid: int

    def unmount(self, *, timeout: float = 30.0) -> int:
        """Unmount, wait for the server to commit and exit; return its exit status.

        Raises:
            EncfsIOError: The unmount failed or the server did not exit in time.
        """
        if os.path.ismount(self.mountpoint):
            unmount(self.mountpoint)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        raise EncfsIOError(
            f"the FUSE server of {self.mountpoint} did not exit", code="encfs.unmount_failed"
        )

    def __enter__(self) -> Self:
        """Return the mount (unmounted on exit)."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Unmount."""
        self.unmount()


def _error_from(document: dict[str, Any]) -> SanctumError:
    """Rebuild the error the server reported before mounting."""
    code = str(document.get("code", "encfs.mount_failed"))
    message = str(document.get("message", "the FUSE server failed"))
    kind: type[SanctumError]
    if code == "encfs.wrong_key":
        kind = WrongKeyError
    elif code.startswith("encfs.") and document.get("kind") == "evidence":
        kind = EncfsIntegrityError
    elif document.get("kind") == "usage":
        kind = EncfsUsageError
    else:
        kind = EncfsIOError
    return kind(message, code=code)


def _watch_parent(parent: int, mountpoint: Path) -> None:
    """Unmount when the process that asked for the mount (the app, after exec) is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    with contextlib.suppress(EncfsIOError):
        unmount(mountpoint)


def _child(
    host_dir: Path,
    mountpoint: Path,
    key: bytes,
    report: int,
    options: dict[str, Any],
) -> int:
    """Run in the forked server: open, report, serve; return the exit status."""
    try:
        directory = EncryptedDirectory.open(host_dir, key, create=True, **options["open"])
    except SanctumError as error:
        kind = (
            "evidence"
            if isinstance(error, EvidenceError)
            else "usage"
            if not isinstance(error, UnavailableError)
            else "unavailable"
        )
        os.write(
            report,
            json.dumps({"code": error.code, "message": error.message, "kind": kind}).encode(),
        )
        return 1
    os.write(report, _READY)
    os.close(report)
    parent = os.getppid()
    threading.Thread(target=_watch_parent, args=(parent, mountpoint), daemon=True).start()
    try:
        serve(directory, mountpoint, **options["serve"])
    except EncfsIOError:
        _log.exception("the FUSE server of %s failed", mountpoint)
        return 1
    finally:
        with contextlib.suppress(SanctumError):
            directory.close()
    return 0


def mount_encrypted(
    host_dir: str | os.PathLike[str],
    mountpoint: str | os.PathLike[str],
    key: bytes,
    *,
    timeout: float = 10.0,
    uid: int | None = None,
    gid: int | None = None,
    allow_other: bool = False,
    min_epoch: int = 0,
    durable: bool = True,
    page_cache: bool = True,
    writeback_cache: bool = True,
    readahead_kb: int | None = _DEFAULT_READAHEAD_KB,
) -> FuseMount:
    """Mount the encrypted directory ``host_dir`` (created if missing) at ``mountpoint``.

    Args:
        host_dir: The ciphertext directory on the host.
        mountpoint: An existing empty directory where the app sees plaintext.
        key: The directory's 32-byte key (released by the manager after attestation).
        timeout: Seconds to wait for the mount.
        uid: Owner reported for every entry (default: this process's).
        gid: Group reported for every entry.
        allow_other: Let other users (the app's user when the launcher runs as root) in.
        min_epoch: Refuse an index older than this epoch.
        durable: ``fsync`` at each commit.
        page_cache: Let the kernel keep decrypted pages across opens (``kernel_cache``,
            ADRs 0113 and 0114); ``False``: every open reads and authenticates from the host
            again.
        writeback_cache: Let the kernel buffer writes and send them in large requests in the
            background (``fsync``/``close`` still commit); ``False``: every ``write`` is a
            synchronous request (less CPU for large writes, much slower small writes).
        readahead_kb: Read-ahead window of the mount (the kernel's default is 128 KiB, which
            caps sequential reads at 128 KiB requests); set through the mount's
            ``/sys/class/bdi`` entry when this process may (root), else left alone. ``None``
            leaves the kernel's default.

    Returns:
        The running mount; call :meth:`FuseMount.unmount` to stop it (the server also stops
        when the calling process, or the program it ``exec``'d, exits).

    Raises:
        WrongKeyError: The key does not open the directory.
        EncfsIntegrityError: The directory's index was tampered with.
        EncfsIOError: FUSE is unavailable or the mount did not come up in time.
    """
    host, mount = Path(host_dir), Path(mountpoint)
    reason = fuse_available()
    if reason is not None:
        raise EncfsIOError(f"FUSE is not available: {reason}", code="encfs.fuse_unavailable")
    if not mount.is_dir():
        raise EncfsUsageError(f"{mount} is not a directory", code="encfs.not_directory")
    options = {
        "open": {"min_epoch": min_epoch, "durable": durable},
        "serve": {
            "uid": uid,
            "gid": gid,
            "allow_other": allow_other,
            "page_cache": page_cache,
            "writeback_cache": writeback_cache,
        },
    }
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the forked server; tested through the mount)
        status = 1
        try:
            os.close(read_end)
            status = _child(host, mount, key, write_end, options)
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        message = _read_all(read_end)
    finally:
        os.close(read_end)
    handle = FuseMount(mountpoint=mount, host_dir=host, pid=pid)
    if message != _READY:
        os.waitpid(pid, 0)
        try:
            document = json.loads(message or b"{}")
        except ValueError:
            document = {}
        raise _error_from(document)
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mount):
        finished, _status = os.waitpid(pid, os.WNOHANG)
        if finished or time.monotonic() > deadline:
            if not finished:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            raise EncfsIOError(f"mounting {mount} failed", code="encfs.mount_failed")
        time.sleep(0.01)
    if readahead_kb is not None:
        _set_readahead(mount, readahead_kb)
    _log.info("mounted encrypted directory %s at %s (pid %d)", host, mount, pid)
    return handle


def _set_readahead(mountpoint: Path, kilobytes: int) -> None:
    """Set the read-ahead window of the mount's backing device (best effort, needs root).

    Each FUSE mount has its own backing-device entry, named by the mount's device number; the
    setting goes away with the mount.
    """
    device = mountpoint.stat().st_dev
    entry = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    try:
        entry.write_text(str(kilobytes))
    except OSError as error:
        _log.debug("cannot set the read-ahead of %s: %s", mountpoint, error)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while block := os.read(fd, 4096):
        chunks.append(block)
        if b"".join(chunks) == _READY:
            break
    return b"".join(chunks)
