"""Copying between plaintext trees and encrypted directories; key files.

Used by the operators' tool (``sanctum files encrypt|decrypt``) and by the fallback that
decrypts a directory into a tmpfs when FUSE is unavailable (:mod:`sanctum.encfs.fallback`).
Only regular files and directories are copied; symbolic links and special files are refused,
so a plaintext tree cannot smuggle a link pointing outside the encrypted directory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sanctum.encfs.directory import EncryptedDirectory, normalise_path
from sanctum.encfs.errors import EncfsIOError, EncfsUsageError
from sanctum.encfs.format import FORMAT_NAME, HEADER_NAME, KEY_SIZE, decode_header

__all__ = [
    "TransferStats",
    "describe_host",
    "export_tree",
    "import_tree",
    "load_key",
    "sync_tree",
    "write_key",
]

_COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TransferStats:
    """What a copy did.

    Attributes:
        files: Files written.
        directories: Directories created.
        bytes: Plaintext bytes written.
        deleted: Names removed (``sync_tree`` only).
    """

    files: int = 0
    directories: int = 0
    bytes: int = 0
    deleted: int = 0


def load_key(path: Path) -> bytes:
    """Read a directory key file: 32 raw bytes, or 64 hexadecimal digits (spaces ignored).

    Raises:
        EncfsUsageError: The file is missing, unreadable or not a key
            (``encfs.key_file_invalid``).
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise EncfsUsageError(
            f"cannot read key file {str(path)!r}: {error.strerror or error}",
            code="encfs.key_file_invalid",
        ) from None
    if len(data) == KEY_SIZE:
        return data
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise EncfsUsageError(
            f"{str(path)!r} is not a directory key (32 raw bytes or 64 hex digits)",
            code="encfs.key_file_invalid",
        )
    return key


def write_key(path: Path, key: bytes) -> None:
    """Write ``key`` as hex to a new file readable by its owner only.

    Raises:
        EncfsUsageError: The file exists (``encfs.exists``).
        EncfsIOError: It cannot be written.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise EncfsUsageError(f"{str(path)!r} exists", code="encfs.exists") from None
    except OSError as error:
        raise EncfsIOError(f"cannot write {path}: {error.strerror or error}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")


def _plain_entries(source: Path) -> list[tuple[Path, str]]:
    """Return (absolute path, relative POSIX name) of everything under ``source``, parents first.

    Raises:
        EncfsUsageError: A symbolic link or special file is found (``encfs.unsupported_file``).
    """
    found: list[tuple[Path, str]] = []
    for current, dirnames, filenames in os.walk(source):
        dirnames.sort()
        base = Path(current)
        for name in [*dirnames, *sorted(filenames)]:
            path = base / name
            mode = path.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise EncfsUsageError(
                    f"{path} is not a regular file or directory (links and special files are "
                    "not copied into encrypted directories)",
                    code="encfs.unsupported_file",
                )
            found.append((path, path.relative_to(source).as_posix()))
    found.sort(key=lambda item: item[1].count("/"))
    return found


def _copy_in(path: Path, directory: EncryptedDirectory, name: str) -> int:
    """Replace the encrypted file ``name`` with the content of ``path``; return bytes copied."""
    info = path.stat()
    directory.create(name, stat.S_IMODE(info.st_mode), exist_ok=True)
    directory.truncate(name, 0)
    copied = 0
    with path.open("rb") as handle:
        while block := handle.read(_COPY_BLOCK):
            directory.write(name, copied, block)
            copied += len(block)
    directory.set_attributes(name, mtime_ns=info.st_mtime_ns)
    directory.flush(name)
    return copied


def import_tree(
    source: Path, directory: EncryptedDirectory, into: str = "", *, overwrite: bool = False
) -> TransferStats:
    """Encrypt the file or tree ``source`` into ``directory`` under the name ``into``.

    Args:
        source: A plaintext file or directory.
        directory: The open encrypted directory.
        into: Destination name (for a directory source, the directory its content goes in).
        overwrite: Replace files that exist; without it an existing file is an error.

    Raises:
        EncfsUsageError: A name exists (without ``overwrite``), the source is missing or holds
            links or special files.
        EncfsIntegrityError: An existing encrypted file was tampered with.
        EncfsIOError: A file system failed.
    """
    target = normalise_path(into)
    if not source.exists():
        raise EncfsUsageError(f"{source} does not exist", code="encfs.not_found")
    if source.is_file():
        name = target or source.name
        if directory.exists(name) and not overwrite:
            raise EncfsUsageError(
                f"{name!r} exists in the encrypted directory", code="encfs.exists"
            )
        return TransferStats(files=1, bytes=_copy_in(source, directory, name))
    files = directories = total = 0
    if target and not directory.exists(target):
        directory.mkdir(target)
        directories += 1
    for path, relative in _plain_entries(source):
        name = f"{target}/{relative}" if target else relative
        if path.is_dir():
            if not directory.exists(name):
                directory.mkdir(name, stat.S_IMODE(path.stat().st_mode))
                directories += 1
            continue
        if directory.exists(name) and not overwrite:
            raise EncfsUsageError(
                f"{name!r} exists in the encrypted directory", code="encfs.exists"
            )
        total += _copy_in(path, directory, name)
        files += 1
    return TransferStats(files=files, directories=directories, bytes=total)


def export_tree(directory: EncryptedDirectory, target: Path, path: str = "") -> TransferStats:
    """Decrypt ``path`` (a file, or a directory and everything in it) into ``target``.

    ``target`` must not exist, or be an empty directory. Files are written with their modes
    and modification times.

    Raises:
        EncfsUsageError: ``target`` is not empty, or ``path`` does not exist.
        EncfsIntegrityError: Tampering was found (nothing tampered is written out).
        EncfsIOError: A file system failed.
    """
    name = normalise_path(path)
    item = directory.stat(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise EncfsUsageError(f"{target} exists and is not empty", code="encfs.exists")
    try:
        if item.kind == "file":
            target.parent.mkdir(parents=True, exist_ok=True)
            return TransferStats(files=1, bytes=_copy_out(directory, name, target))
        target.mkdir(parents=True, exist_ok=True)
        files = directories = total = 0
        prefix = f"{name}/" if name else ""
        for entry in directory.walk():
            if not entry.path.startswith(prefix):
                continue
            destination = target / entry.path[len(prefix) :]
            if entry.kind == "dir":
                destination.mkdir(mode=0o700, exist_ok=True)
                directories += 1
            else:
                total += _copy_out(directory, entry.path, destination)
                files += 1
        for entry in directory.walk():
            if entry.kind == "dir" and entry.path.startswith(prefix):
                (target / entry.path[len(prefix) :]).chmod(entry.mode)
    except OSError as error:
        raise EncfsIOError(f"cannot write {target}: {error.strerror or error}") from None
    return TransferStats(files=files, directories=directories, bytes=total)


def _copy_out(directory: EncryptedDirectory, name: str, destination: Path) -> int:
    item = directory.stat(name)
    temp = destination.with_name(destination.name + ".sanctum-partial")
    with temp.open("wb") as handle:
        for offset in range(0, item.size, _COPY_BLOCK):
            handle.write(directory.read(name, offset, _COPY_BLOCK))
    temp.chmod(item.mode)
    os.utime(temp, ns=(item.mtime_ns, item.mtime_ns))
    temp.replace(destination)
    return item.size


def sync_tree(source: Path, directory: EncryptedDirectory) -> TransferStats:
    """Make ``directory`` hold exactly the tree ``source`` (changed files rewritten, gone removed).

    A file is rewritten when its size, modification time or mode differs from the encrypted
    entry, so untouched files keep their ciphertext and generation.

    Raises:
        EncfsUsageError: ``source`` holds links or special files.
        EncfsIntegrityError: An encrypted file was tampered with.
        EncfsIOError: A file system failed.
    """
    wanted = _plain_entries(source)
    names = {name for _path, name in wanted}
    deleted = 0
    for entry in sorted(directory.walk(), key=lambda item: item.path, reverse=True):
        if entry.path in names:
            continue
        if entry.kind == "dir":
            directory.rmdir(entry.path)
        else:
            directory.delete(entry.path)
        deleted += 1
    files = directories = total = 0
    for path, name in wanted:
        info = path.stat()
        if path.is_dir():
            if directory.exists(name) and directory.stat(name).kind == "file":
                directory.delete(name)
            if not directory.exists(name):
                directory.mkdir(name, stat.S_IMODE(info.st_mode))
                directories += 1
            continue
        if directory.exists(name):
            current = directory.stat(name)
            if current.kind == "dir":
                directory.rmdir(name)
            elif (current.size, current.mtime_ns, current.mode) == (
                info.st_size,
                info.st_mtime_ns,
                stat.S_IMODE(info.st_mode),
            ):
                continue
        total += _copy_in(path, directory, name)
        files += 1
    directory.flush()
    return TransferStats(files=files, directories=directories, bytes=total, deleted=deleted)


def describe_host(host_dir: Path) -> dict[str, object]:
    """Return what anyone can see of an encrypted directory without its key.

    Raises:
        EncfsFormatError: ``host_dir`` is not an encrypted directory.
        EncfsUsageError: The header is missing (``encfs.not_encrypted_directory``).
    """
    try:
        header = decode_header((host_dir / HEADER_NAME).read_bytes())
    except FileNotFoundError:
        raise EncfsUsageError(
            f"{host_dir} has no {HEADER_NAME}: not an encrypted directory",
            code="encfs.not_encrypted_directory",
        ) from None
    records = data = total = 0
    for path in host_dir.iterdir():
        total += path.stat().st_size
        if path.suffix == ".m":
            records += 1
        elif path.suffix in (".0", ".1"):
            data += 1
    return {
        "host_dir": str(host_dir),
        "format": FORMAT_NAME,
        "version": header.version,
        "chunk_size": header.chunk_size,
        "dir_id": header.dir_id.hex(),
        "files_on_host": records,
        "data_files_on_host": data,
        "bytes_on_host": total,
    }
