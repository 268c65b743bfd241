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
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Self

from sanctum.encfs.directory import EncryptedDirectory
from sanctum.encfs.errors import EncfsUsageError
from sanctum.encfs.transfer import TransferStats, export_tree, sync_tree

__all__ = ["PlaintextSession", "is_memory_filesystem"]

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
