"""File work of the launcher: trusted-file checks and private, atomic writes.

Every path of the manifest is an absolute path *inside the image*; the launcher resolves it under
a root directory (``/`` in a container; a temporary rootfs in tests and ``sanctum launcher
check``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Final

from sanctum.launcher.errors import IntegrityError
from sanctum.launcher.policy import AppUser

__all__ = [
    "SYSTEM_TRUST_STORES",
    "check_trusted_files",
    "in_root",
    "install_system_ca",
    "write_atomic",
]

#: CA bundles of common distributions, in order of preference (Debian/Ubuntu/Alpine, RHEL).
SYSTEM_TRUST_STORES: Final = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)
_CHUNK: Final = 1 << 20


def in_root(root: Path, path: str) -> Path:
    """Return the host path of image path ``path`` under ``root``."""
    return root / path.lstrip("/")


def _sha256(path: Path) -> str:
    """Return the hex SHA-256 of the file at ``path`` (symlinks are not followed)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_trusted_files(
    root: Path,
    trusted_files: Mapping[str, str],
    symlinks: Mapping[str, str],
    *,
    skip: Collection[str] = (),
) -> int:
    """Check every trusted file's SHA-256 and every symlink's target under ``root``.

    Args:
        root: The image's root directory.
        trusted_files: Image path to lowercase hex SHA-256 (the manifest's ``trustedFiles``).
        symlinks: Image path to link target (the manifest's ``symlinks``).
        skip: Trusted files not to hash. The running launcher skips its own executable: a
            modified launcher would control this very check, so hashing itself proves nothing
            (and costs tens of milliseconds per start); checks from the host
            (``sanctum launcher check``) hash it like any other file.

    Returns:
        The number of entries checked.

    Raises:
        IntegrityError: A file is missing or unreadable (``launcher.trusted_file_missing``),
            its content differs (``launcher.trusted_file_mismatch``), or a symbolic link points
            elsewhere (``launcher.symlink_mismatch``). The first difference found is reported.
    """
    for path, expected in sorted(trusted_files.items()):
        if path in skip:
            continue
        try:
            actual = _sha256(in_root(root, path))
        except OSError as error:
            raise IntegrityError(
                f"trusted file {path} cannot be read: {error.strerror}",
                code="launcher.trusted_file_missing",
                details={"path": path},
            ) from error
        if actual != expected:
            raise IntegrityError(
                f"trusted file {path} was modified: SHA-256 {actual}, the manifest says {expected}",
                code="launcher.trusted_file_mismatch",
                hint="the image was changed after conversion; convert the changed image again",
                details={"path": path, "expected": expected, "actual": actual},
            )
    for path, target in sorted(symlinks.items()):
        try:
            actual_target = str(in_root(root, path).readlink())
        except OSError as error:
            raise IntegrityError(
                f"symbolic link {path} is missing: {error.strerror}",
                code="launcher.symlink_mismatch",
                details={"path": path},
            ) from error
        if actual_target != target:
            raise IntegrityError(
                f"symbolic link {path} points to {actual_target!r}, the manifest says {target!r}",
                code="launcher.symlink_mismatch",
                details={"path": path},
            )
    return len(set(trusted_files) - set(skip)) + len(symlinks)


def _make_parents(path: Path, owner: AppUser | None) -> None:
    """Create the missing parents of ``path`` (mode 0755, owned by ``owner`` when given)."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o755)
        if owner is not None:
            os.chown(directory, owner.uid, owner.gid)


def write_atomic(
    path: Path, data: bytes, *, mode: int = 0o600, owner: AppUser | None = None
) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` and ``owner``.

    The data goes to a temporary file in the same directory, created with ``mode`` from the
    start (never readable by others in between), then renamed over ``path``; readers see either
    the old or the new content, never a mix (this is what certificate renewal relies on).

    Raises:
        OSError: The directory cannot be created or written.
    """
    _make_parents(path, owner)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner.uid, owner.gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def install_system_ca(root: Path, ca_pem: bytes) -> Path:
    """Append ``ca_pem`` to the image's system CA bundle (created if the image has none).

    Returns:
        The bundle's host path.

    Raises:
        OSError: The bundle cannot be written.
    """
    for candidate in SYSTEM_TRUST_STORES:
        bundle = in_root(root, candidate)
        if bundle.is_file():
            break
    else:
        bundle = in_root(root, SYSTEM_TRUST_STORES[0])
    current = bundle.read_bytes() if bundle.is_file() else b""
    if ca_pem.strip() in current:
        return bundle
    separator = b"" if not current or current.endswith(b"\n") else b"\n"
    write_atomic(bundle, current + separator + ca_pem, mode=0o644)
    return bundle
