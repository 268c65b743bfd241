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

:func:`rotate_key_in_place` does the same without renaming ``<dir>`` (what the launcher uses:
an app's directory is often a volume, that is a mount point). The new copy is built in a
staging subdirectory ``<dir>/.sanctum-rekey``; a ``COMMIT`` file listing its entries, written
and synced once the copy is complete, is the commit point. Before it, the original is
untouched and the staging copy is discarded by the next run; after it, the next run (or
:func:`recover_rotation`) finishes moving the staged entries up, removes the old ones and the
staging directory, every step idempotent. Plaintext never touches the disk.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag

from sanctum.encfs._file import host_names
from sanctum.encfs.directory import EncryptedDirectory
from sanctum.encfs.errors import (
    EncfsIntegrityError,
    EncfsIOError,
    EncfsUsageError,
    WrongKeyError,
    integrity_failure,
)
from sanctum.encfs.format import HEADER_NAME, INDEX_NAME, decode_header, decode_index, unlock

__all__ = ["STAGING_NAME", "recover_rotation", "rotate_key", "rotate_key_in_place"]

_log = logging.getLogger(__name__)
_COPY_BLOCK = 1024 * 1024
#: The staging subdirectory of an in-place rotation.
STAGING_NAME: Final = ".sanctum-rekey"
_COMMIT: Final = "COMMIT"
#: The host name of a file's record or slot (``<32 hex digits>.m|.0|.1``, see ``host_names``).
_HOST_NAME: Final = re.compile(r"[0-9a-f]{32}\.[m01]")


def _siblings(host_dir: Path) -> tuple[Path, Path]:
    return (
        host_dir.with_name(host_dir.name + ".rekey-new"),
        host_dir.with_name(host_dir.name + ".rekey-old"),
    )


def recover_rotation(host_dir: Path, keys: Sequence[bytes] = ()) -> str:
    """Finish or discard an interrupted rotation of ``host_dir``; return what was done.

    Args:
        host_dir: The encrypted directory.
        keys: The keys the directory may legitimately be rotated to: a committed in-place
            staging copy is finished only if it authenticates under one of them (none given:
            a committed staging copy is refused).

    Returns:
        ``"none"``, ``"discarded"`` (a partial copy was removed), ``"completed"`` (the swap was
        finished) or ``"cleaned"`` (a leftover old copy was removed).

    Raises:
        EncfsIntegrityError: The in-place staging copy was tampered with
            (``encfs.rotation_tampered``: a traversing or foreign name, a symlink, or a copy
            that does not authenticate); nothing was moved.
        EncfsIOError: A rename or removal failed.
    """
    in_place = _recover_in_place(host_dir, keys)
    if in_place != "none":
        return in_place
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
    recover_rotation(host_dir, (new_key, old_key))
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
    recover_rotation(host_dir, (new_key,))
    _log.info("re-encrypted %d files of %s under a new key", files, host_dir)
    return files


def _copy(
    source: EncryptedDirectory,
    new: Path,
    new_key: bytes,
    *,
    durable: bool = True,
    fail_after: int | None = None,
) -> int:
    """Copy every entry of ``source`` into the new directory; return the number of files."""
    files = 0
    with EncryptedDirectory.open(new, new_key, durable=durable) as target:
        for item in source.walk():
            if fail_after is not None and files >= fail_after:
                raise KeyboardInterrupt
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _staged_name_valid(name: object) -> bool:
    """Return whether ``name`` is a plain name of the encrypted on-disk format."""
    return isinstance(name, str) and (
        name in {HEADER_NAME, INDEX_NAME} or _HOST_NAME.fullmatch(name) is not None
    )


def _refuse_staging(host_dir: Path, message: str, **facts: object) -> EncfsIntegrityError:
    return integrity_failure(
        "encfs.rotation_tampered",
        f"the staged copy of an interrupted key rotation is not trustworthy: {message}",
        host_dir=str(host_dir),
        facts=facts,
    )


def _read_regular(dir_fd: int, name: str) -> bytes:
    """Read the regular file ``name`` under ``dir_fd`` without following a symlink."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{name} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def _check_staged(
    host_dir: Path, host_fd: int, staging_fd: int, names: list[str], keys: Sequence[bytes]
) -> None:
    """Check the committed staging copy before anything of it is moved.

    Every listed name must be a plain on-disk name, every staged entry a regular file (no
    symlink), and the header and index (staged, or already moved up by an earlier run) must
    authenticate under one of ``keys``; each data file listed must belong to a file of that
    index. A host that forges the staging copy cannot pass (it holds none of the keys).

    Raises:
        EncfsIntegrityError: ``encfs.rotation_tampered``.
        OSError: A file cannot be read.
    """
    if not keys:
        raise _refuse_staging(host_dir, "no key to authenticate it was given")
    for name in names:
        if not _staged_name_valid(name):
            raise _refuse_staging(host_dir, f"it lists the name {name!r}", name=repr(name))
    present = _names(staging_fd)
    for name in names:
        if name in present:
            mode = os.stat(name, dir_fd=staging_fd, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                raise _refuse_staging(host_dir, f"{name} is not a regular file", name=name)

    def read(name: str) -> bytes:
        return _read_regular(staging_fd if name in present else host_fd, name)

    header = decode_header(read(HEADER_NAME))
    unlocked = None
    for key in keys:
        try:
            unlocked = unlock(header, key)
            break
        except WrongKeyError:
            continue
    if unlocked is None:
        raise _refuse_staging(host_dir, "its header does not open with the new key")
    try:
        index = decode_index(unlocked.index, unlocked.dir_id, read(INDEX_NAME))
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise _refuse_staging(host_dir, "its index does not authenticate") from None
    owned = {
        name
        for entry in index.entries.values()
        if entry.kind == "file"
        for name in host_names(entry.file_id)
    }
    stray = [name for name in names if name not in {HEADER_NAME, INDEX_NAME, *owned}]
    if stray:
        raise _refuse_staging(host_dir, f"it lists files of no entry ({stray[0]})", name=stray[0])


def _names(dir_fd: int) -> set[str]:
    """Return the names in the directory open at ``dir_fd`` (a descriptor, not a path)."""
    names: set[str] = set()
    names.update(os.listdir(dir_fd))
    return names


def _move(name: str, src_fd: int, dst_fd: int) -> None:
    """Move ``name`` from one directory to another (never through a path)."""
    os.replace(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def _remove(name: str, dir_fd: int) -> None:
    """Remove the entry ``name`` of a directory (a real directory recursively)."""
    if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _recover_in_place(host_dir: Path, keys: Sequence[bytes]) -> str:
    """Finish (after the commit point) or discard (before it) an in-place rotation.

    The staging folder and its ``COMMIT`` list are written on the host, so nothing of them is
    trusted: a symlinked staging folder or entry, a name that is not a plain on-disk name, or a
    staged copy that does not authenticate under one of ``keys`` is refused before anything
    moves, and every move goes through directory descriptors (never a path the host shaped).

    Returns:
        ``"none"``, ``"discarded"`` or ``"completed"``.

    Raises:
        EncfsIntegrityError: The staging copy was tampered with (``encfs.rotation_tampered``).
        EncfsIOError: A file system operation failed (run again: every step is idempotent).
    """
    try:
        host_fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return "none"
    except OSError as error:
        raise EncfsIOError(
            f"cannot open {host_dir}: {error.strerror or error}", code="encfs.rotation_failed"
        ) from None
    try:
        return _recover_at(host_dir, host_fd, keys)
    except (OSError, ValueError) as error:
        raise EncfsIOError(
            f"cannot recover the key rotation of {host_dir}: {error}",
            code="encfs.rotation_failed",
            hint="run the rotation again: it completes or discards the interrupted one",
        ) from None
    finally:
        os.close(host_fd)


def _recover_at(host_dir: Path, host_fd: int, keys: Sequence[bytes]) -> str:
    try:
        mode = os.stat(STAGING_NAME, dir_fd=host_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return "none"
    if stat.S_ISLNK(mode):
        raise _refuse_staging(host_dir, f"{STAGING_NAME} is a symbolic link")
    if not stat.S_ISDIR(mode):
        return "none"
    staging_fd = os.open(STAGING_NAME, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=host_fd)
    try:
        try:
            marker = _read_regular(staging_fd, _COMMIT)
        except FileNotFoundError:
            marker = None
        if marker is None:
            os.close(staging_fd)
            staging_fd = -1
            shutil.rmtree(STAGING_NAME, dir_fd=host_fd)
            _log.warning(
                "discarded the partial copy of an interrupted key rotation of %s", host_dir
            )
            return "discarded"
        names = json.loads(marker.decode("utf-8"))
        if not isinstance(names, list):
            raise _refuse_staging(host_dir, "its COMMIT file is not a list of names")
        _check_staged(host_dir, host_fd, staging_fd, names, keys)
        # Data files first, then the index, the header last: each move is atomic, and the
        # marker stays until everything is in place, so a crash between moves is finished by
        # the next run.
        ordered = [n for n in names if n not in {INDEX_NAME, HEADER_NAME}]
        ordered += [INDEX_NAME, HEADER_NAME]
        present = _names(staging_fd)
        for name in ordered:
            if name in present:
                _move(name, staging_fd, host_fd)
        keep = {*names, STAGING_NAME}
        for entry in _names(host_fd):
            if entry not in keep:
                _remove(entry, host_fd)
        os.fsync(host_fd)
        os.close(staging_fd)
        staging_fd = -1
        shutil.rmtree(STAGING_NAME, dir_fd=host_fd)
        os.fsync(host_fd)
    finally:
        if staging_fd >= 0:
            os.close(staging_fd)
    _log.warning("completed an interrupted key rotation of %s", host_dir)
    return "completed"


def rotate_key_in_place(
    host_dir: Path,
    old_key: bytes,
    new_key: bytes,
    *,
    min_epoch: int = 0,
    durable: bool = True,
    fail_after_files: int | None = None,
) -> int:
    """Re-encrypt ``host_dir`` under ``new_key`` without renaming it; return the file count.

    Usable on a directory that is a mount point (a container volume). Interrupted at any point,
    a later call (or :func:`recover_rotation`) either discards the partial copy (the directory
    is still complete under ``old_key``) or finishes the switch (complete under ``new_key``).

    Args:
        host_dir: The encrypted directory.
        old_key: The key that opens it now.
        new_key: The key to re-encrypt under.
        min_epoch: Refuse the source if its index is older (the rollback floor).
        durable: ``fsync`` the copy (turn off only in tests).
        fail_after_files: Tests only: raise ``KeyboardInterrupt`` after copying this many
            files, to simulate an interruption in the middle of the copy.

    Raises:
        WrongKeyError: ``old_key`` does not open the directory.
        EncfsIntegrityError: The directory was tampered with or rolled back (nothing changes).
        EncfsUsageError: The keys are equal, or the directory is open elsewhere.
        EncfsIOError: A file system operation failed (nothing is lost; run again).
    """
    if old_key == new_key:
        raise EncfsUsageError("the new key equals the old key", code="encfs.invalid_key")
    recover_rotation(host_dir, (new_key, old_key))
    staging = host_dir / STAGING_NAME
    with EncryptedDirectory.open(
        host_dir, old_key, writable=False, min_epoch=min_epoch, durable=durable
    ) as source:
        EncryptedDirectory.initialize(staging, new_key, chunk_size=source.chunk_size)
        files = _copy(source, staging, new_key, durable=durable, fail_after=fail_after_files)
    try:
        names = sorted(entry.name for entry in staging.iterdir() if _staged_name_valid(entry.name))
        marker = staging / (_COMMIT + ".tmp")
        with marker.open("w", encoding="utf-8") as handle:
            json.dump(names, handle)
            handle.flush()
            os.fsync(handle.fileno())
        marker.replace(staging / _COMMIT)
        _fsync_dir(staging)
    except OSError as error:
        raise EncfsIOError(
            f"cannot commit the re-encrypted copy of {host_dir}: {error.strerror or error}",
            code="encfs.rotation_failed",
            hint="run the rotation again: it completes or discards the interrupted one",
        ) from None
    recover_rotation(host_dir, (new_key,))
    _log.info("re-encrypted %d files of %s under a new key (in place)", files, host_dir)
    return files
