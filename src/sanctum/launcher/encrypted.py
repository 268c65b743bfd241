"""Open the app's encrypted directories with the keys released by the attestation.

After the attestation response is opened and before the exec, each directory the manifest lists
(``encryptedDirs``) gets its key from the response:

- under Gramine, the LibOS encrypts the directories itself (the converter wrote an
  ``encrypted`` ``fs.mounts`` entry per directory, all with the key name ``sanctum_fs``): the
  launcher provisions the derived key to ``/dev/attestation/keys/sanctum_fs``;
- on the simulated platform (and in a confidential VM), the launcher mounts each directory over
  itself with the encrypted-directory FUSE file system (:func:`sanctum.encfs.mount_encrypted`):
  the app reads and writes plaintext at the usual path while the host volume under it holds only
  ciphertext. The FUSE server is a forked process that serves until the app (which keeps the
  launcher's PID after the exec) exits, then unmounts.

When FUSE is unavailable the launcher refuses to start (``launcher.encrypted_dir_unavailable``)
rather than let the app write plaintext to the host: the documented tmpfs fallback
(:class:`sanctum.encfs.PlaintextSession`) needs a supervisor that syncs back after the app
exits, which this launcher, built to ``exec`` the app, does not run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sanctum.encfs import FuseMount, fuse_available, mount_encrypted, provision_gramine_key
from sanctum.errors import EvidenceError
from sanctum.launcher.errors import LauncherConfigError
from sanctum.launcher.files import in_root
from sanctum.launcher.policy import AppUser
from sanctum.protocol.messages import DirectoryKey

__all__ = ["GRAMINE_KEY_NAME", "OpenedDirectory", "open_encrypted_dirs"]

#: The key name the converter writes into every ``encrypted`` mount of the Gramine manifest.
GRAMINE_KEY_NAME: Final = "sanctum_fs"


@dataclass(frozen=True, slots=True)
class OpenedDirectory:
    """One encrypted directory made available to the app.

    Attributes:
        path: The directory inside the image.
        mode: ``gramine`` (key provisioned to the LibOS) or ``fuse`` (mounted by the launcher).
        version: The key version the manager released.
        mount: The FUSE server (``fuse`` mode only).
    """

    path: str
    mode: str
    version: int
    mount: FuseMount | None = None


def _keys_for(
    manifest_dirs: tuple[str, ...], keys: Mapping[str, DirectoryKey]
) -> list[DirectoryKey]:
    """Return the key of every manifest directory, in manifest order.

    Raises:
        EvidenceError: The manager released no key for a listed directory
            (``launcher.encrypted_dir_key_missing``).
    """
    missing = [path for path in manifest_dirs if path not in keys]
    if missing:
        raise EvidenceError(
            f"the manager released no key for the encrypted directories {', '.join(missing)}",
            code="launcher.encrypted_dir_key_missing",
            hint="the app's encryptedDirs in the manager must list the directories of this "
            "image; update the app (sanctum apps update) or reconvert the image",
        )
    return [keys[path] for path in manifest_dirs]


def open_encrypted_dirs(
    root: Path,
    manifest_dirs: tuple[str, ...],
    keys: Mapping[str, DirectoryKey],
    *,
    gramine: bool,
    owner: AppUser | None,
    log: Callable[[str], None],
    gramine_keys_root: Path | None = None,
) -> list[OpenedDirectory]:
    """Provision (Gramine) or mount (FUSE) every encrypted directory of the manifest.

    Args:
        root: The image root the manifest's paths are under.
        manifest_dirs: The manifest's ``encryptedDirs``.
        keys: The keys opened from the attestation response, by path.
        gramine: Whether the workload runs under Gramine.
        owner: The app's user (FUSE reports every entry as theirs); ``None``: this process's.
        log: Writes one log line.
        gramine_keys_root: Gramine's key directory (tests only).

    Returns:
        What was opened, in manifest order.

    Raises:
        EvidenceError: A key is missing, or the directory was tampered with (``encfs.*``).
        LauncherConfigError: FUSE is unavailable (``launcher.encrypted_dir_unavailable``), or
            Gramine would need two keys under its single key name.
        SanctumError: Mounting or provisioning failed (``encfs.*``).
    """
    if not manifest_dirs:
        return []
    wanted = _keys_for(manifest_dirs, keys)
    if gramine:
        distinct = {key.key for key in wanted}
        if len(distinct) != 1:
            raise LauncherConfigError(
                "Gramine's encrypted mounts share the key name "
                f"{GRAMINE_KEY_NAME!r}, but the manager released {len(distinct)} different keys",
                code="launcher.encrypted_dir_keys_conflict",
                hint="use one encrypted directory per Gramine app",
            )
        if gramine_keys_root is None:
            provision_gramine_key(wanted[0].key, GRAMINE_KEY_NAME)
        else:
            provision_gramine_key(wanted[0].key, GRAMINE_KEY_NAME, root=gramine_keys_root)
        log(
            f"encrypted directories {', '.join(manifest_dirs)}: key provisioned to Gramine "
            f"({GRAMINE_KEY_NAME})"
        )
        return [
            OpenedDirectory(path=key.path, mode="gramine", version=key.version) for key in wanted
        ]
    reason = fuse_available()
    if reason is not None:
        raise LauncherConfigError(
            f"cannot open the encrypted directories {', '.join(manifest_dirs)}: FUSE is "
            f"unavailable ({reason}); refusing to let the app write them in clear",
            code="launcher.encrypted_dir_unavailable",
            hint="give the container /dev/fuse (--device /dev/fuse --cap-add SYS_ADMIN) and "
            "install fuse3; see docs/encrypted-directories.md",
        )
    uid = owner.uid if owner is not None else os.getuid()
    gid = owner.gid if owner is not None else os.getgid()
    opened: list[OpenedDirectory] = []
    try:
        for key in wanted:
            directory = in_root(root, key.path)
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            mount = mount_encrypted(
                directory,
                directory,
                key.key,
                uid=uid,
                gid=gid,
                allow_other=uid != os.getuid(),
                min_epoch=key.min_epoch,
            )
            opened.append(
                OpenedDirectory(path=key.path, mode="fuse", version=key.version, mount=mount)
            )
            log(f"encrypted directory {key.path} mounted (FUSE, key version {key.version})")
    except BaseException:
        for done in reversed(opened):
            if done.mount is not None:
                done.mount.unmount()
        raise
    return opened
