"""Key provisioning for Gramine's encrypted mounts (the SGX hardware path).

Under Gramine the LibOS itself encrypts the directories the manifest lists as
``fs.mounts = [{ type = "encrypted", path = ..., key_name = NAME }]`` (written by the converter).
The launcher provisions each key, after attestation, by writing the raw 16-byte (128-bit) key to
``/dev/attestation/keys/NAME``; Gramine uses it for files opened after that. The manager holds
a 256-bit master key per directory, as for the simulated platform; the 128-bit Gramine key is
derived from it (HKDF-SHA256, :func:`~sanctum.encfs.format.derive_gramine_key`), so one managed
key serves both platforms without the two formats ever sharing a key.

Names starting with ``_`` are Gramine's own sealing keys (``_sgx_mrenclave``,
``_sgx_mrsigner``) and are refused.

Each encrypted directory has its own key name, :func:`gramine_key_name` (``sanctum_fs_`` and 12
hex digits of the SHA-256 of its path), used by both the converter (``fs.mounts`` entries) and
the launcher (``/dev/attestation/keys/<name>``), so the directories of one app can have
different keys (ADR 0117). The name depends on the path only: reordering ``encryptedDirs`` or
adding a directory changes no existing name.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Final

from sanctum.encfs.errors import EncfsIOError, EncfsUsageError
from sanctum.encfs.format import derive_gramine_key

__all__ = [
    "GRAMINE_KEYS_ROOT",
    "GRAMINE_KEY_PREFIX",
    "GRAMINE_KEY_SIZE",
    "gramine_key_name",
    "provision_gramine_key",
]

GRAMINE_KEYS_ROOT: Final = Path("/dev/attestation/keys")
GRAMINE_KEY_SIZE: Final = 16
#: The prefix of every encrypted-mount key name the converter writes.
GRAMINE_KEY_PREFIX: Final = "sanctum_fs"

_log = logging.getLogger(__name__)


def gramine_key_name(path: str, *, prefix: str = GRAMINE_KEY_PREFIX) -> str:
    """Return the Gramine key name of the encrypted directory ``path`` (deterministic).

    Args:
        path: The directory's absolute path inside the image (an ``encryptedDirs`` entry).
        prefix: The name's prefix (tests only: the converter and the launcher both use the
            default, so they cannot disagree).

    Returns:
        ``<prefix>_<first 12 hex digits of SHA-256(path)>``.

    Raises:
        EncfsUsageError: The resulting name is not a valid key name.
    """
    digest = hashlib.sha256(path.rstrip("/").encode("utf-8")).hexdigest()[:12]
    name = f"{prefix}_{digest}"
    _check_name(name)
    return name


def _check_name(key_name: str) -> None:
    """Refuse a key name Gramine would not accept or that names a built-in sealing key.

    Raises:
        EncfsUsageError: ``encfs.invalid_key_name``.
    """
    if (
        not key_name
        or key_name.startswith("_")
        or "/" in key_name
        or "\0" in key_name
        or key_name in (".", "..")
    ):
        raise EncfsUsageError(
            f"{key_name!r} cannot be an encrypted-mount key name (empty, contains '/', or is "
            "reserved for Gramine's own keys)",
            code="encfs.invalid_key_name",
        )


def provision_gramine_key(master: bytes, key_name: str, *, root: Path = GRAMINE_KEYS_ROOT) -> None:
    """Write the Gramine key of ``key_name`` derived from ``master`` and check it took.

    Args:
        master: The directory's 32-byte master key (released by the manager after attestation).
        key_name: The ``key_name`` of the directory's ``fs.mounts`` entry
            (:func:`gramine_key_name`).
        root: Gramine's key directory (changed only by tests).

    Raises:
        EncfsUsageError: A bad master key or key name.
        EncfsIOError: ``root`` is not Gramine's key directory (not running under Gramine), or
            the write did not take (``encfs.gramine_key_failed``).
    """
    _check_name(key_name)
    key = derive_gramine_key(master, key_name)
    path = root / key_name
    if not root.is_dir():
        raise EncfsIOError(
            f"{root} does not exist: not running under Gramine with attestation enabled",
            code="encfs.gramine_unavailable",
        )
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            written = os.write(fd, key)
        finally:
            os.close(fd)
        with path.open("rb") as handle:
            readback = handle.read(GRAMINE_KEY_SIZE + 1)
    except OSError as error:
        raise EncfsIOError(
            f"cannot provision the Gramine key {key_name!r}: {error.strerror or error}",
            code="encfs.gramine_key_failed",
        ) from None
    if written != GRAMINE_KEY_SIZE or not hmac.compare_digest(readback, key):
        raise EncfsIOError(
            f"Gramine did not accept the key {key_name!r}", code="encfs.gramine_key_failed"
        )
    _log.info("provisioned the encrypted-mount key %r to Gramine", key_name)
