"""Fallback when FUSE is unavailable: decrypt into a private tmpfs, re-encrypt on exit.

The launcher decrypts the whole directory into a memory-backed work directory (a tmpfs owned by
the workload, mode 0700) before it starts the app, points the app at it, and, when the app
exits (and at each :meth:`PlaintextSession.sync`), writes the tree back into the encrypted
directory: changed files are re-encrypted, removed ones deleted, in one commit per file.

What this loses compared with the FUSE mount (also in ``docs/encrypted-directories.md``):

- Integrity is checked once, at start, not on every read; tampering with the host copy while
  the app runs is noticed only at the next start.
- Plaintext lives in the tmpfs for the app's lifetime: anyone who can read that tmpfs (root on
  the host of a simulated platform, a swap device if tmpfs pages are swapped) sees it.
- Writes reach the host only at :meth:`~PlaintextSession.sync` or exit: a crash loses what the
  app wrote since the last sync (never what was committed before).
- The whole directory must fit in memory.

:func:`run_app_supervised` is how the launcher uses it (ADR 0119): the launcher stays the
*parent* of the app. It forks; the child ``exec``'s the app; the parent holds the sessions (and
the keys, in memory), forwards the termination and user signals to the app, syncs every
``interval`` seconds while waiting for it, and once the app has exited does the final sync and
wipe, then exits with the app's status (or dies of the app's signal). The app is therefore not
PID 1 in this mode, and the final sync cannot be lost to the teardown of the PID namespace
(a forked keeper outliving an ``exec``'d app would be killed with it when the app is the
namespace's init or the only child of ``catatonit``/``tini``). A ``SIGKILL`` of the launcher
loses what was written since the last periodic sync, never what an earlier sync committed.

:func:`start_sync_keeper` (a forked keeper next to an ``exec``'d app) remains for callers
outside containers, where the keeper outlives the app.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import NoReturn, Self

from sanctum.encfs.directory import EncryptedDirectory
from sanctum.encfs.errors import EncfsUsageError
from sanctum.encfs.transfer import TransferStats, export_tree, sync_tree
from sanctum.errors import SanctumError

__all__ = [
    "FORWARDED_SIGNALS",
    "PlaintextSession",
    "exit_like",
    "is_memory_filesystem",
    "keep_in_sync",
    "run_app_supervised",
    "start_sync_keeper",
    "supervise_app",
]

#: Signals a container stop or a terminal sends to a whole process group.
_GROUP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

#: Signals the supervising launcher passes on to the app.
FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGQUIT,
)

_log = logging.getLogger(__name__)


class PlaintextSession:
    """A decrypted working copy of an encrypted directory (use as a context manager).

    On a clean exit the working copy is synced back; on an exception it is not (the encrypted
    directory keeps its last committed state). The working copy is always wiped on exit.
    """

    def __init__(
        self,
        host_dir: Path,
        workdir: Path,
        key: bytes,
        *,
        min_epoch: int = 0,
        durable: bool = True,
    ) -> None:
        """Prepare to decrypt ``host_dir`` into ``workdir`` (which must be empty or missing).

        Args:
            host_dir: The encrypted directory on the host (created if missing or empty).
            workdir: Where the plaintext goes: a tmpfs private to the workload.
            key: The directory's 32-byte key.
            min_epoch: Refuse an index older than this epoch.
            durable: ``fsync`` at each commit.
        """
        self.host_dir = host_dir
        self.workdir = workdir
        self._key = key
        self._min_epoch = min_epoch
        self._durable = durable
        self._directory: EncryptedDirectory | None = None

    def start(self) -> TransferStats:
        """Open the encrypted directory, authenticate everything and decrypt it.

        Raises:
            EncfsUsageError: ``workdir`` is not empty.
            WrongKeyError: The key does not open the directory.
            EncfsIntegrityError: Tampering was found (nothing is left in ``workdir``).
            EncfsIOError: A file system failed.
        """
        if self.workdir.exists() and any(self.workdir.iterdir()):
            raise EncfsUsageError(f"{self.workdir} is not empty", code="encfs.exists")
        directory = EncryptedDirectory.open(
            self.host_dir, self._key, create=True, min_epoch=self._min_epoch, durable=self._durable
        )
        try:
            self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not is_memory_filesystem(self.workdir):
                _log.warning(
                    "%s is not a tmpfs: decrypted files will be stored on a persistent disk",
                    self.workdir,
                )
            stats = export_tree(directory, self.workdir)
            self.workdir.chmod(0o700)
        except BaseException:
            directory.close()
            self._wipe()
            raise
        self._directory = directory
        _log.info(
            "decrypted %d files (%d bytes) from %s into %s (fallback without FUSE)",
            stats.files,
            stats.bytes,
            self.host_dir,
            self.workdir,
        )
        return stats

    def sync(self) -> TransferStats:
        """Write the working copy back into the encrypted directory (changed files only).

        Raises:
            EncfsUsageError: The session is not started, or the tree holds links.
            EncfsIntegrityError: The host copy was tampered with.
            EncfsIOError: A file system failed.
        """
        if self._directory is None:
            raise EncfsUsageError("the plaintext session is not started", code="encfs.closed")
        return sync_tree(self.workdir, self._directory)

    @property
    def epoch(self) -> int:
        """Return the index epoch after the last commit."""
        if self._directory is None:
            return 0
        return self._directory.epoch

    def close(self, *, sync: bool = True) -> None:
        """Sync back (unless ``sync`` is false), close the directory and wipe the working copy.

        Raises:
            EncfsIntegrityError: The host copy was tampered with during the session.
            EncfsIOError: A file system failed.
        """
        try:
            if self._directory is not None:
                if sync:
                    self.sync()
                self._directory.close()
        finally:
            self._directory = None
            self._wipe()

    def _wipe(self) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        """Start the session and return it."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Sync back and wipe on success; only wipe on an exception."""
        self.close(sync=exc_type is None)


def is_memory_filesystem(path: Path) -> bool:
    """Return whether ``path`` is on a memory file system (used in logs and tests)."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    best, kind = "", ""
    resolved = os.path.realpath(path)
    for line in mounts:
        fields = line.split()
        inside = (resolved + "/").startswith(fields[1].rstrip("/") + "/") if fields else False
        if len(fields) > 2 and inside and len(fields[1]) >= len(best):
            best, kind = fields[1], fields[2]
    return kind in ("tmpfs", "ramfs")


def _sync_logged(session: PlaintextSession) -> bool:
    """Sync ``session``; log (never raise) a failure. Return whether it succeeded."""
    try:
        stats = session.sync()
    except SanctumError as error:
        _log.error(
            "syncing the working copy %s back to %s failed: %s [%s]",
            session.workdir,
            session.host_dir,
            error.message,
            error.code,
            extra={"event": "encfs.fallback_sync_failed", "audit": True, "code": error.code},
        )
        return False
    _log.debug("synced %d files of %s", stats.files, session.workdir)
    return True


def keep_in_sync(
    session: PlaintextSession,
    *,
    parent: int,
    interval: float,
    poll: float = 0.2,
    parent_pid: Callable[[], int] = os.getppid,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Sync ``session`` every ``interval`` seconds while ``parent`` lives; then sync and wipe.

    Runs in the keeper process (:func:`start_sync_keeper`). Returns its exit status: 0 when the
    final sync succeeded, 1 otherwise (the failure is logged; the working copy is wiped either
    way, so no plaintext stays behind).
    """
    deadline = clock() + interval
    while parent_pid() == parent:
        sleep(poll)
        if clock() >= deadline:
            _sync_logged(session)
            deadline = clock() + interval
    synced = _sync_logged(session)
    try:
        session.close(sync=False)
    except SanctumError as error:
        _log.error("closing %s failed: %s", session.host_dir, error)
        return 1
    _log.info("the app exited: %s synced back and wiped", session.workdir)
    return 0 if synced else 1


def start_sync_keeper(session: PlaintextSession, *, interval: float = 30.0) -> int:
    """Fork the keeper of a started ``session``; return its pid.

    The caller must then leave the session alone (never close it: the keeper owns it) and
    ``exec`` the app; the keeper syncs periodically and, once the app has exited, a last time.

    Raises:
        EncfsUsageError: The session is not started (``encfs.closed``).
    """
    if session.epoch == 0:
        raise EncfsUsageError("the plaintext session is not started", code="encfs.closed")
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the forked keeper; tested through the launcher)
        status = 1
        try:
            for number in _GROUP_SIGNALS:
                signal.signal(number, signal.SIG_IGN)
            status = keep_in_sync(session, parent=parent, interval=interval)
        finally:
            os._exit(status)
    _log.info("sync keeper of %s started (pid %d)", session.workdir, pid)
    return pid


def supervise_app(
    sessions: Sequence[PlaintextSession],
    child: int,
    *,
    interval: float,
    poll: float = 0.2,
    waitpid: Callable[[int, int], tuple[int, int]] = os.waitpid,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Wait for the app ``child``, syncing ``sessions`` periodically; then sync, wipe, return.

    Runs in the launcher, the app's parent. Reaps any other child too (the launcher may be the
    PID namespace's init, which inherits orphans). Every session is synced a last time and
    closed once the app has exited, whatever its status; a failed sync is logged (audit).

    Returns:
        The app's wait status (as from :func:`os.waitpid`).
    """
    status: int | None = None
    deadline = clock() + interval
    while status is None:
        while True:
            try:
                pid, code = waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # pragma: no cover (the app is our child until reaped)
                pid, code = child, 0
            if pid == 0:
                break
            if pid == child:
                status = code
                break
        if status is not None:
            break
        sleep(poll)
        if clock() >= deadline:
            for session in sessions:
                _sync_logged(session)
            deadline = clock() + interval
    for session in sessions:
        _sync_logged(session)
        try:
            session.close(sync=False)
        except SanctumError as error:
            _log.error("closing %s failed: %s", session.host_dir, error)
    _log.info("the app exited: %d working copies synced back and wiped", len(sessions))
    return status


def exit_like(status: int) -> NoReturn:
    """Exit this process as the app did: with its exit code, or killed by its signal.

    A process that is its PID namespace's init cannot be killed by its own signal; it exits
    with ``128 + signal`` then, as a shell reports it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        number = -code
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        os._exit(128 + number)
    os._exit(code)


def run_app_supervised(
    sessions: Sequence[PlaintextSession],
    exec_app: Callable[[], object],
    *,
    interval: float,
) -> NoReturn:
    """Fork the app (the child runs ``exec_app``, which ``exec``'s it) and supervise it.

    The parent forwards :data:`FORWARDED_SIGNALS` to the app, syncs ``sessions`` every
    ``interval`` seconds, does the final sync and wipe after the app exited, and exits like the
    app (:func:`exit_like`). Never returns in either process.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the forked app; tested through the launcher)
        try:
            for number in FORWARDED_SIGNALS:
                signal.signal(number, signal.SIG_DFL)
            exec_app()
            sys.stderr.write("sanctum-launcher: the app did not exec\n")
        except OSError as error:
            sys.stderr.write(f"sanctum-launcher: cannot exec the app: {error}\n")
        finally:
            os._exit(127)

    def forward(number: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):  # The app is already gone.
            os.kill(pid, number)

    for number in FORWARDED_SIGNALS:
        signal.signal(number, forward)
    _log.info("app started (pid %d) under the launcher, which syncs its tmpfs copies", pid)
    exit_like(supervise_app(sessions, pid, interval=interval))
