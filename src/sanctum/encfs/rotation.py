"""Key rotation of an encrypted directory: re-encrypt everything under a new key, atomically.

:func:`rotate_key` copies the directory, file by file and in memory (plaintext never touches
the disk), into a sibling directory encrypted under the new key, then swaps the two with two
renames. An interruption never loses data:

- while copying, the original is untouched (the partial copy is discarded by the next run);
- between the two renames, the original sits complete at ``<dir>.rekey-old`` and the new copy
  complete at ``<dir>.rekey-new``; :func:`recover_rotation` (run first by every
  :func:`rotate_key`) finishes the swap;
- afterwards, the old copy is deleted.

The manager must keep the old key until the rotation is reported done: until then either key
may be the one that opens ``<dir>``. The host directory's parent must be writable (a directory
that is itself a mount point cannot be renamed; rotate one level below it).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sanctum.encfs.directory import EncryptedDirectory
from sanctum.encfs.errors import EncfsIOError, EncfsUsageError
from sanctum.encfs.format import HEADER_NAME

__all__ = ["recover_rotation", "rotate_key"]

_log = logging.getLogger(__name__)
_COPY_BLOCK = 1024 * 1024


def _siblings(host_dir: Path) -> tuple[Path, Path]:
    return (
        host_dir.with_name(host_dir.name + ".rekey-new"),
        host_dir.with_name(host_dir.name + ".rekey-old"),
    )


def recover_rotation(host_dir: Path) -> str:
    """Finish or discard an interrupted rotation of ``host_dir``; return what was done.

    Returns:
        ``"none"``, ``"discarded"`` (a partial copy was removed), ``"completed"`` (the swap was
        finished) or ``"cleaned"`` (a leftover old copy was removed).

    Raises:
        EncfsIOError: A rename or removal failed.
    """
    new, old = _siblings(host_dir)
    try:
        if not host_dir.exists() and old.exists() and (new / HEADER_NAME).exists():
            new.rename(host_dir)
            shutil.rmtree(old)
            _log.warning("completed an interrupted key rotation of %s", host_dir)
            return "completed"
        if host_dir.exists() and old.exists():
            shutil.rmtree(old)
            return "cleaned"
        if host_dir.exists() and new.exists():
            shutil.rmtree(new)
            _log.warning(
                "discarded the partial copy of an interrupted key rotation of %s", host_dir
            )
            return "discarded"
    except OSError as error:
        raise EncfsIOError(
            f"cannot recover the key rotation of {host_dir}: {error.strerror or error}",
            code="encfs.rotation_failed",
        ) from None
    return "none"


def rotate_key(host_dir: Path, old_key: bytes, new_key: bytes) -> int:
    """Re-encrypt ``host_dir`` under ``new_key``; return the number of files re-encrypted.

    Every file is authenticated while it is copied, so a tampered directory is refused rather
    than laundered under the new key.

    Raises:
        WrongKeyError: ``old_key`` does not open the directory.
        EncfsIntegrityError: The directory was tampered with (nothing is changed).
        EncfsUsageError: The keys are equal, or the directory is open elsewhere.
        EncfsIOError: A file system operation failed (nothing is lost; run again).
    """
    if old_key == new_key:
        raise EncfsUsageError("the new key equals the old key", code="encfs.invalid_key")
    recover_rotation(host_dir)
    new, old = _siblings(host_dir)
    with EncryptedDirectory.open(host_dir, old_key, writable=False) as source:
        EncryptedDirectory.initialize(new, new_key, chunk_size=source.chunk_size)
        try:
            files = _copy(source, new, new_key)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
        try:
            host_dir.rename(old)
            new.rename(host_dir)
        except OSError as error:
            raise EncfsIOError(
                f"cannot swap in the re-encrypted copy of {host_dir}: {error.strerror or error}",
                code="encfs.rotation_failed",
                hint="run the rotation again: it completes or discards the interrupted one",
            ) from None
    recover_rotation(host_dir)
    _log.info("re-encrypted %d files of %s under a new key", files, host_dir)
    return files


def _copy(source: EncryptedDirectory, new: Path, new_key: bytes) -> int:
    """Copy every entry of ``source`` into the new directory; return the number of files."""
    files = 0
    with EncryptedDirectory.open(new, new_key) as target:
        for item in source.walk():
            if item.kind == "dir":
                target.mkdir(item.path, item.mode)
            else:
                target.create(item.path, item.mode)
                for offset in range(0, item.size, _COPY_BLOCK):
                    target.write(item.path, offset, source.read(item.path, offset, _COPY_BLOCK))
                target.flush(item.path)
                files += 1
            target.set_attributes(item.path, mtime_ns=item.mtime_ns)
    return files
