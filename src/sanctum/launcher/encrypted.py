"""Open the app's encrypted directories with the keys released by the attestation.

After the attestation response is opened and before the exec, each directory the manifest lists
(``encryptedDirs``) gets its key from the response:

- under Gramine, the LibOS encrypts the directories itself (the converter wrote an
  ``encrypted`` ``fs.mounts`` entry per directory, each with its own key name
  :func:`~sanctum.encfs.gramine.gramine_key_name`, ADR 0117): the launcher provisions each
  directory's derived key to ``/dev/attestation/keys/<name>``;
- on the simulated platform (and in a confidential VM), the launcher mounts each directory over
  itself with the encrypted-directory FUSE file system (:func:`sanctum.encfs.mount_encrypted`):
  the app reads and writes plaintext at the usual path while the host volume under it holds only
  ciphertext. The FUSE server is a forked process that serves until the app (which keeps the
  launcher's PID after the exec) exits, then unmounts.

Before mounting, the launcher checks the directory against the manager's rollback floor
(``min_epoch``, ADR 0116): an index older than the floor, or an empty directory where the
manager knows one existed, is refused with ``encfs.rollback`` and an audit log line. It also
finishes a key rotation the manager asked for (ADR 0118): when the response carries older
keys and the directory still opens only with one of them, it is re-encrypted in place under the
new key before the mount (:func:`sanctum.encfs.rotation.rotate_key_in_place`; an interruption
is finished or discarded by the next start, nothing is lost). :class:`OpenedDirectory` records
the epoch reached and whether a rotation is complete, for the report to the manager
(:mod:`sanctum.launcher.epoch_report`).

When FUSE is unavailable (ADR 0119) the launcher uses the tmpfs fallback only where the
operator arranged it: the directory itself is a memory file system (``--tmpfs /data``) and the
ciphertext volume is mounted under :data:`FALLBACK_STORE` (``-v vol:/sanctum/encrypted/data``).
The directory is then decrypted into the tmpfs, and the launcher stays the app's parent
(:func:`run_app_with_fallback`): it forks the app, forwards signals to it, syncs the copy back
periodically and once more after the app exited, then exits like the app. In this mode the app
is not PID 1 (a keeper forked beside an ``exec``'d app would die with the PID namespace).
Anywhere else the launcher refuses (``launcher.encrypted_dir_unavailable``) rather than let
the app write plaintext to the host.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidTag

from sanctum.encfs import (
    EncryptedDirectory,
    FuseMount,
    WrongKeyError,
    fuse_available,
    mount_encrypted,
    provision_gramine_key,
)
from sanctum.encfs.errors import EncfsIOError, integrity_failure
from sanctum.encfs.fallback import PlaintextSession, is_memory_filesystem, run_app_supervised
from sanctum.encfs.format import HEADER_NAME, INDEX_NAME, decode_header, decode_index, unlock
from sanctum.encfs.gramine import GRAMINE_KEY_PREFIX, gramine_key_name
from sanctum.encfs.rotation import recover_rotation, rotate_key_in_place
from sanctum.errors import EvidenceError, SanctumError
from sanctum.launcher.errors import LauncherConfigError
from sanctum.launcher.files import in_root
from sanctum.launcher.policy import AppUser
from sanctum.protocol.messages import DirectoryKey

__all__ = [
    "FALLBACK_STORE",
    "GRAMINE_KEY_NAME",
    "DirCheck",
    "OpenedDirectory",
    "check_and_rotate",
    "open_encrypted_dirs",
    "read_epoch",
    "run_app_with_fallback",
]

#: The prefix of the key names the converter writes into the ``encrypted`` mounts of the
#: Gramine manifest (each directory's name is :func:`gramine_key_name` of its path).
GRAMINE_KEY_NAME: Final = GRAMINE_KEY_PREFIX
#: Where the tmpfs fallback expects the ciphertext of directory ``/d``: ``/sanctum/encrypted/d``.
FALLBACK_STORE: Final = "/sanctum/encrypted"


@dataclass(frozen=True, slots=True)
class OpenedDirectory:
    """One encrypted directory made available to the app.

    Attributes:
        path: The directory inside the image.
        mode: ``gramine`` (key provisioned to the LibOS), ``fuse`` (mounted by the launcher)
            or ``tmpfs`` (decrypted into a memory file system, kept in sync by the launcher).
        version: The key version the manager released.
        mount: The FUSE server (``fuse`` mode only).
        epoch: The directory's index epoch once mounted (``fuse`` only; 0: not tracked).
        rotated: Whether the directory is now under ``version`` although older versions were
            released too: a rotation is complete (finished now or at an earlier start) and
            can be reported, so the manager retires the older keys.
        rotated_epoch: The index epoch right after the rotation (before the mount).
        key_name: The Gramine key name (``gramine`` only).
        session: The decrypted working copy (``tmpfs`` only), synced by the launcher.
        sync_interval: Seconds between the periodic syncs of ``session``.
        host_fd: A descriptor of the ciphertext directory opened before the mount (``fuse``
            and ``tmpfs``), for the epoch reporter; not inherited by the app (close-on-exec).
        tracked: Whether its epochs are reported to the manager (not for a directory found
            empty while a rotation is pending: see :func:`_rotation_state`).
    """

    path: str
    mode: str
    version: int
    mount: FuseMount | None = None
    epoch: int = 0
    rotated: bool = False
    rotated_epoch: int = 0
    key_name: str | None = None
    session: PlaintextSession | None = field(default=None, repr=False, compare=False)
    sync_interval: float = 0.0
    host_fd: int | None = None
    tracked: bool = True


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
    fallback_interval: float = 30.0,
    memory_fs: Callable[[Path], bool] = is_memory_filesystem,
) -> list[OpenedDirectory]:
    """Provision (Gramine), mount (FUSE) or decrypt into a tmpfs every encrypted directory.

    Args:
        root: The image root the manifest's paths are under.
        manifest_dirs: The manifest's ``encryptedDirs``.
        keys: The keys opened from the attestation response, by path.
        gramine: Whether the workload runs under Gramine.
        owner: The app's user (FUSE reports every entry as theirs); ``None``: this process's.
        log: Writes one log line.
        gramine_keys_root: Gramine's key directory (tests only).
        fallback_interval: Seconds between the tmpfs fallback's periodic syncs.
        memory_fs: Tells whether a path is on a memory file system (tests only).

    Returns:
        What was opened, in manifest order.

    Raises:
        EvidenceError: A key is missing, or the directory was tampered with or rolled back
            (``encfs.*``).
        LauncherConfigError: FUSE is unavailable and the tmpfs fallback is not arranged
            (``launcher.encrypted_dir_unavailable``).
        SanctumError: Mounting, rotating or provisioning failed (``encfs.*``).
    """
    if not manifest_dirs:
        return []
    wanted = _keys_for(manifest_dirs, keys)
    if gramine:
        return _provision_gramine(wanted, log=log, root=gramine_keys_root)
    reason = fuse_available()
    if reason is not None:
        return _open_fallback(
            root,
            wanted,
            reason=reason,
            owner=owner,
            log=log,
            interval=fallback_interval,
            memory_fs=memory_fs,
        )
    uid = owner.uid if owner is not None else os.getuid()
    gid = owner.gid if owner is not None else os.getgid()
    opened: list[OpenedDirectory] = []
    try:
        for key in wanted:
            directory = in_root(root, key.path)
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            check = check_and_rotate(directory, key, log=log)
            epoch, rotated_epoch = check.epoch, check.rotated_epoch
            rotated, tracked = _rotation_state(key, check, log=log)
            # Before the mount hides it: the epoch reporter reads the index through this.
            host_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                mount = mount_encrypted(
                    directory,
                    directory,
                    key.key,
                    uid=uid,
                    gid=gid,
                    allow_other=uid != os.getuid(),
                    # The epoch just checked: the host cannot swap in an older copy meanwhile.
                    min_epoch=epoch,
                )
            except BaseException:
                os.close(host_fd)
                raise
            try:
                # What the server committed on opening (read back, not assumed).
                epoch = max(epoch, read_epoch(host_fd, key.key)[0])
            except SanctumError as error:
                log(f"encrypted directory {key.path}: cannot read its epoch back ({error.code})")
            opened.append(
                OpenedDirectory(
                    path=key.path,
                    mode="fuse",
                    version=key.version,
                    mount=mount,
                    epoch=epoch,
                    rotated=rotated,
                    rotated_epoch=rotated_epoch,
                    host_fd=host_fd,
                    tracked=tracked,
                )
            )
            log(f"encrypted directory {key.path} mounted (FUSE, key version {key.version})")
    except BaseException:
        for done in reversed(opened):
            if done.mount is not None:
                done.mount.unmount()
        raise
    return opened


def _provision_gramine(
    wanted: list[DirectoryKey], *, log: Callable[[str], None], root: Path | None
) -> list[OpenedDirectory]:
    """Provision each directory's derived key under its own Gramine key name.

    Gramine cannot re-encrypt a directory under a new key, so while older versions are still
    released the launcher provisions the oldest (the one the data is under) and says so.

    Raises:
        SanctumError: Provisioning failed (``encfs.*``).
    """
    opened: list[OpenedDirectory] = []
    for key in wanted:
        name = gramine_key_name(key.path)
        material, version = key.key, key.version
        if key.previous:
            oldest = key.previous[-1]
            material, version = oldest.key, oldest.version
            log(
                f"encrypted directory {key.path}: key rotation to version {key.version} is not "
                f"supported under Gramine; using version {version}"
            )
        if root is None:
            provision_gramine_key(material, name)
        else:
            provision_gramine_key(material, name, root=root)
        opened.append(
            OpenedDirectory(path=key.path, mode="gramine", version=version, key_name=name)
        )
    log(
        "encrypted directories "
        + ", ".join(f"{o.path} ({o.key_name})" for o in opened)
        + ": keys provisioned to Gramine"
    )
    return opened


def _empty(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


class DirCheck(NamedTuple):
    """What :func:`check_and_rotate` found.

    Attributes:
        epoch: The index epoch found (at least the floor).
        rotated_epoch: The epoch right after a rotation done now (0 when none was needed).
        fresh: Whether the directory was empty and has just been initialised.
    """

    epoch: int
    rotated_epoch: int
    fresh: bool = False


def check_and_rotate(directory: Path, key: DirectoryKey, *, log: Callable[[str], None]) -> DirCheck:
    """Check ``directory`` against the rollback floor; finish a pending rotation first.

    A directory that opens only with an older key version although the manager recorded an
    epoch under the newest one is a copy from before a finished rotation (the host dropped the
    report and restored the old copy): refused as a rollback.

    Args:
        directory: The host directory (not yet mounted).
        key: The released key, with its floor and the older versions still needed.
        log: Writes one log line.

    Returns:
        The epoch found, the epoch right after a rotation done now, and whether the directory
        was freshly initialised.

    Raises:
        EncfsIntegrityError: ``encfs.rollback`` (the index is older than the floor, the
            directory is empty although the manager recorded an epoch, or it opens only with
            an older key although the newest has a floor), ``encfs.rotation_tampered``, or
            tampering.
        WrongKeyError: Neither the key nor any older version opens the directory.
        EncfsIOError: The host file system failed.
    """
    recover_rotation(directory, (key.key, *(older.key for older in key.previous)))
    floors = [key.min_epoch, *(older.min_epoch for older in key.previous)]
    fresh = False
    if _empty(directory):
        if max(floors) > 0:
            raise integrity_failure(
                "encfs.rollback",
                f"the directory is empty, but the manager recorded epoch {max(floors)} for it: "
                "the host removed or replaced its content",
                host_dir=str(directory),
                facts={"epoch": 0, "min_epoch": max(floors)},
            )
        EncryptedDirectory.initialize(directory, key.key)
        fresh = True
    try:
        with EncryptedDirectory.open(
            directory, key.key, writable=False, min_epoch=key.min_epoch
        ) as opened:
            return DirCheck(opened.epoch, 0, fresh)
    except WrongKeyError:
        if not key.previous:
            raise
    if key.min_epoch > 0:
        raise integrity_failure(
            "encfs.rollback",
            f"the directory does not open with key version {key.version}, under which the "
            f"manager recorded epoch {key.min_epoch}: the host restored a copy from before "
            "the key rotation",
            host_dir=str(directory),
            facts={"version": key.version, "min_epoch": key.min_epoch},
        )
    for older in key.previous:
        try:
            rotate_key_in_place(directory, older.key, key.key, min_epoch=older.min_epoch)
        except WrongKeyError:
            continue
        with EncryptedDirectory.open(
            directory, key.key, writable=False, min_epoch=key.min_epoch
        ) as opened:
            log(
                f"encrypted directory {directory}: re-encrypted from key version "
                f"{older.version} to {key.version}"
            )
            return DirCheck(opened.epoch, opened.epoch)
    raise WrongKeyError(
        f"neither key version {key.version} nor the older versions "
        f"{', '.join(str(o.version) for o in key.previous)} open {directory}",
        code="encfs.wrong_key",
    )


def _rotation_state(
    key: DirectoryKey, check: DirCheck, *, log: Callable[[str], None]
) -> tuple[bool, bool]:
    """Return whether to report the directory rotated, and whether to report it at all.

    A freshly initialised directory while older versions are still released is most likely a
    volume the operator forgot to mount: the data is under an older key. It is neither
    reported ``rotated`` nor reported at all (a ``mounted`` report of the newest version also
    retires the older ones), so the older keys stay released.
    """
    if not key.previous:
        return False, True
    if check.fresh:
        log(
            f"encrypted directory {key.path}: empty although a key rotation is pending (is its "
            "volume mounted?); older key versions kept, this start is not reported"
        )
        return False, False
    return True, True


def _fallback_refusal(paths: list[str], reason: str, problem: str) -> LauncherConfigError:
    stores = " ".join(f"-v <volume>:{FALLBACK_STORE}{path}" for path in paths)
    tmpfs = " ".join(f"--tmpfs {path}" for path in paths)
    return LauncherConfigError(
        f"cannot open the encrypted directories {', '.join(paths)}: FUSE is unavailable "
        f"({reason}) and {problem}; refusing to let the app write them in clear",
        code="launcher.encrypted_dir_unavailable",
        hint="give the container /dev/fuse (--device /dev/fuse --cap-add SYS_ADMIN) and "
        f"install fuse3, or arrange the tmpfs fallback ({tmpfs} {stores}); see "
        "docs/encrypted-directories.md",
    )


def _chown_tree(top: Path, owner: AppUser) -> None:
    """Give the decrypted working copy to the app's user."""
    os.chown(top, owner.uid, owner.gid)
    for current, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            os.chown(Path(current) / name, owner.uid, owner.gid, follow_symlinks=False)


def _open_fallback(
    root: Path,
    wanted: list[DirectoryKey],
    *,
    reason: str,
    owner: AppUser | None,
    log: Callable[[str], None],
    interval: float,
    memory_fs: Callable[[Path], bool],
) -> list[OpenedDirectory]:
    """Decrypt each directory into its tmpfs; the launcher keeps the sessions (ADR 0119).

    Every precondition is checked for every directory before anything is decrypted. The
    sessions are synced and closed by :func:`run_app_with_fallback`, the launcher staying the
    app's parent (so the final sync survives the app's exit in a PID namespace).

    Raises:
        LauncherConfigError: The fallback is not arranged (``launcher.encrypted_dir_unavailable``).
        EvidenceError: Tampering, a rollback or a wrong key (``encfs.*``).
        SanctumError: Decrypting failed.
    """
    paths = [key.path for key in wanted]
    for key in wanted:
        plain = in_root(root, key.path)
        store = in_root(root, FALLBACK_STORE + key.path)
        if not store.is_dir():
            raise _fallback_refusal(paths, reason, f"{FALLBACK_STORE}{key.path} is not mounted")
        if not plain.is_dir() or not memory_fs(plain):
            raise _fallback_refusal(paths, reason, f"{key.path} is not a tmpfs")
    opened: list[OpenedDirectory] = []
    try:
        for key in wanted:
            plain = in_root(root, key.path)
            store = in_root(root, FALLBACK_STORE + key.path)
            check = check_and_rotate(store, key, log=log)
            rotated, tracked = _rotation_state(key, check, log=log)
            session = PlaintextSession(store, plain, key.key, min_epoch=check.epoch)
            stats = session.start()
            try:
                if owner is not None and os.geteuid() == 0:
                    _chown_tree(plain, owner)
                host_fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
            except BaseException:
                session.close(sync=False)
                raise
            opened.append(
                OpenedDirectory(
                    path=key.path,
                    mode="tmpfs",
                    version=key.version,
                    epoch=session.epoch,
                    rotated=rotated,
                    rotated_epoch=check.rotated_epoch,
                    tracked=tracked,
                    host_fd=host_fd,
                    session=session,
                    sync_interval=interval,
                )
            )
            log(
                f"encrypted directory {key.path}: FUSE unavailable ({reason}); {stats.files} "
                f"files decrypted into its tmpfs, synced back every {interval:g} s and when the "
                "app exits (the launcher stays its parent; a crash loses what was written since "
                "the last sync)"
            )
    except BaseException:
        for done in opened:
            if done.session is not None:
                done.session.close(sync=False)
        raise
    return opened


def run_app_with_fallback(
    opened: Sequence[OpenedDirectory], exec_app: Callable[[], object]
) -> None:
    """Run the app as the launcher's child when a directory uses the tmpfs fallback.

    Returns at once when no directory does (the caller ``exec``'s the app itself). Otherwise
    forks: the child runs ``exec_app``; this process forwards signals, syncs periodically,
    does the final sync after the app exited and exits like the app (never returns).
    """
    sessions = [item.session for item in opened if item.session is not None]
    if not sessions:
        return
    interval = min(item.sync_interval for item in opened if item.session is not None)
    run_app_supervised(sessions, exec_app, interval=interval)


def _read_at(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def read_epoch(dir_fd: int, key: bytes) -> tuple[int, bool]:
    """Return the index epoch and clean flag of the encrypted directory open at ``dir_fd``.

    Reads the header and index without taking the directory's lock (the FUSE server or the
    launcher's session holds it); the index is replaced atomically, so a read sees one whole
    version.

    Raises:
        WrongKeyError: ``key`` does not open the directory.
        EncfsIntegrityError: The index does not authenticate (``encfs.tampered``).
        EncfsIOError: The files cannot be read.
    """
    try:
        header, index = _read_at(dir_fd, HEADER_NAME), _read_at(dir_fd, INDEX_NAME)
    except OSError as error:
        raise EncfsIOError(f"cannot read the directory index: {error.strerror or error}") from None
    keys = unlock(decode_header(header), key)
    try:
        decoded = decode_index(keys.index, keys.dir_id, index)
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise integrity_failure(
            "encfs.tampered",
            "the directory index does not authenticate (modified or replaced on the host)",
            host_dir=f"/proc/self/fd/{dir_fd}",
        ) from None
    return decoded.epoch, decoded.clean
