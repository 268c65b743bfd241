"""The Sanctum runtime layer: one deterministic tar.gz layer added on top of the original image.

It holds the launcher and the signed enclave manifest under ``/sanctum/``, and an empty ``/tmp``
(mode 1777) when the image may lack one: the launcher and most apps need a temporary directory,
and ``scratch`` images have none (see :func:`default_directories`). The same files always give
the same bytes, hence the same layer digest, so conversions are reproducible:

- entries sorted by path, parent directories created explicitly (mode 0755);
- every entry has mtime 0, uid/gid 0, empty user/group names, and a fixed mode;
- POSIX ustar headers only (no PAX/GNU extension records that could carry timestamps);
- gzip with mtime 0, no file name in the header, and a fixed compression level.

The layer is built in memory: it holds a manifest, a SIGSTRUCT, a Gramine manifest and the launcher
(tens of megabytes); the tar is compressed as it is written, never held whole.

The launcher comes in two forms (:class:`LauncherAsset`, ADR 0135): the self-contained
executable (``/sanctum/launcher``, which starts from memory files) and the launcher directory
(``/sanctum/launcher.d/``, plain files), the only form Gramine can run: the LibOS cannot execute
a memory file, and every file the enclave loads must be a trusted file with its SHA-256.
:func:`ship_launcher` picks the form for the build's target and returns its runtime files and
their hashes, which the converter adds to the manifest's trusted files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sanctum.converter.manifest import DEFAULT_LAUNCHER_PATH, Target, parse_manifest
from sanctum.converter.manifest_errors import BuildOptionError, ManifestError

__all__ = [
    "EXEC_MODE",
    "FILE_MODE",
    "LAUNCHER_DIR",
    "LAUNCHER_DIR_ENTRY",
    "MANIFEST_PATH",
    "SCRATCH_TMP",
    "TMP_MODE",
    "LauncherAsset",
    "RuntimeDirectory",
    "RuntimeFile",
    "RuntimeLayer",
    "ShippedLauncher",
    "build_runtime_layer",
    "default_directories",
    "launcher_asset_of",
    "load_launcher_asset",
    "read_launcher_directory",
    "ship_launcher",
]

#: Mode of regular runtime files.
FILE_MODE: Final = 0o644
#: Mode of executables and directories.
EXEC_MODE: Final = 0o755
#: Mode of ``/tmp``: writable by everyone, sticky (only an entry's owner may remove it).
TMP_MODE: Final = 0o1777
#: Where the signed enclave manifest sits in the runtime layer.
MANIFEST_PATH: Final = "/sanctum/manifest.json"
#: Where the launcher directory is installed in the image (``make launcher`` builds it for this
#: path: the interpreter's PT_INTERP names the loader inside it).
LAUNCHER_DIR: Final = "/sanctum/launcher.d"
#: The launcher directory's entry program in the image (the entrypoint of a Gramine build).
LAUNCHER_DIR_ENTRY: Final = f"{LAUNCHER_DIR}/sanctum-launcher"
#: Files every launcher directory has (relative paths), checked before it is shipped.
_LAUNCHER_DIR_REQUIRED: Final = (
    "sanctum-launcher",
    "lib/sanctum-python",
    "lib/sanctum-python._pth",
    "lib/launcher.zip",
)
_GZIP_LEVEL: Final = 6


@dataclass(frozen=True, slots=True)
class RuntimeFile:
    """A file of the runtime layer.

    Attributes:
        path: Absolute path in the image, for example ``/sanctum/manifest.json``.
        data: Its content.
        mode: Its permission bits.
    """

    path: str
    data: bytes
    mode: int = FILE_MODE


@dataclass(frozen=True, slots=True)
class RuntimeDirectory:
    """An (empty) directory of the runtime layer.

    Attributes:
        path: Absolute path in the image, for example ``/tmp``.
        mode: Its permission bits (the sticky bit included).
    """

    path: str
    mode: int = EXEC_MODE


#: The temporary directory added for images that may have none.
SCRATCH_TMP: Final = RuntimeDirectory("/tmp", TMP_MODE)  # noqa: S108 (an image path)


def default_directories(files: Sequence[RuntimeFile]) -> tuple[RuntimeDirectory, ...]:
    """Return the directories the runtime layer adds for the image described by ``files``.

    ``/tmp`` (mode 1777) is added unless the enclave manifest among ``files`` shows that the
    image's ``/tmp`` is a symbolic link or a regular file (a directory entry in an upper layer
    would replace those). When the image already has a ``/tmp`` directory, the added entry merges
    with it (layers never drop a directory's contents) and only pins its mode to the usual 1777
    owned by root. Without a parseable manifest among ``files`` (raw layers built by tests or
    tools), nothing is known about the image and nothing is added.

    Args:
        files: The runtime files, normally including :data:`MANIFEST_PATH`.

    Returns:
        The directories to add.
    """
    data = next((item.data for item in files if item.path == MANIFEST_PATH), None)
    if data is None:
        return ()
    try:
        manifest = parse_manifest(data)
    except ManifestError:
        return ()
    if SCRATCH_TMP.path in manifest.symlinks or SCRATCH_TMP.path in manifest.trusted_files:
        return ()
    return (SCRATCH_TMP,)


# The launcher asset -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LauncherAsset:
    """The launcher a conversion may ship: its executable form, its directory form, or both.

    Attributes:
        executable: The self-contained executable (``make launcher``), or ``None``.
        directory: The launcher directory on the converter's machine
            (``build/launcher/sanctum-launcher.d``), or ``None``; read only when shipped.
    """

    executable: bytes | None = None
    directory: Path | None = None

    def __post_init__(self) -> None:
        """Check that the asset holds a launcher.

        Raises:
            BuildOptionError: Neither form is given (code ``build.launcher_invalid``).
        """
        if self.executable is None and self.directory is None:
            raise BuildOptionError(
                "a launcher asset needs the executable, the directory, or both",
                code="build.launcher_invalid",
            )


@dataclass(frozen=True, slots=True)
class ShippedLauncher:
    """The launcher form a build ships.

    Attributes:
        path: Its entry program in the image (the manifest's ``launcher``, the entrypoint).
        files: Its runtime files.
        hashes: Image path to SHA-256 (hex) of every file in ``files``: trusted files.
        directory: Whether it is the launcher directory.
    """

    path: str
    files: tuple[RuntimeFile, ...]
    hashes: Mapping[str, str]
    directory: bool


def launcher_asset_of(value: bytes | LauncherAsset) -> LauncherAsset:
    """Return ``value`` as a :class:`LauncherAsset` (bytes are the executable form)."""
    return value if isinstance(value, LauncherAsset) else LauncherAsset(executable=value)


def _launcher_error(message: str, *, unreadable: bool = False) -> BuildOptionError:
    """Return the error for an unusable launcher asset."""
    return BuildOptionError(
        message,
        code="build.launcher_unreadable" if unreadable else "build.launcher_invalid",
        hint="build it with make launcher (build/launcher/sanctum-launcher and its .d directory)",
    )


def read_launcher_directory(root: Path) -> tuple[RuntimeFile, ...]:
    """Read a launcher directory into runtime files below :data:`LAUNCHER_DIR`, sorted by path.

    Files whose owner may execute them get :data:`EXEC_MODE`, the others :data:`FILE_MODE`;
    directories are implied by the files (the runtime layer adds them, mode 0755).

    Args:
        root: The directory built by ``make launcher`` (``build/launcher/sanctum-launcher.d``).

    Returns:
        One runtime file per file of the directory.

    Raises:
        BuildOptionError: It cannot be read (``build.launcher_unreadable``), holds something
            other than directories and regular files, or lacks one of its required files
            (``build.launcher_invalid``).
    """
    files: list[RuntimeFile] = []
    try:
        for directory, names, file_names in os.walk(root, onerror=_raise):
            names.sort()
            for name in [*names, *file_names]:
                path = Path(directory, name)
                info = path.lstat()
                relative = path.relative_to(root).as_posix()
                if stat.S_ISDIR(info.st_mode):
                    continue
                if not stat.S_ISREG(info.st_mode):
                    raise _launcher_error(
                        f"the launcher directory {root} holds {relative}, which is not a regular "
                        "file (symbolic links and special files are not shipped)"
                    )
                mode = EXEC_MODE if info.st_mode & stat.S_IXUSR else FILE_MODE
                files.append(RuntimeFile(f"{LAUNCHER_DIR}/{relative}", path.read_bytes(), mode))
    except OSError as error:
        raise _launcher_error(
            f"the launcher directory {root} cannot be read: {error.strerror or error}",
            unreadable=True,
        ) from error
    present = {item.path for item in files}
    missing = [name for name in _LAUNCHER_DIR_REQUIRED if f"{LAUNCHER_DIR}/{name}" not in present]
    if missing:
        raise _launcher_error(f"{root} is not a launcher directory: {', '.join(missing)} missing")
    return tuple(sorted(files, key=lambda item: item.path))


def _raise(error: OSError) -> None:
    """Re-raise an error met while walking a directory.

    Raises:
        OSError: Always.
    """
    raise error


def ship_launcher(asset: LauncherAsset, *, target: Target) -> ShippedLauncher:
    """Return the launcher form a build for ``target`` ships.

    A Gramine build (``gramine-sgx``) ships the directory: Gramine cannot run the executable
    form (it starts from memory files). A simulated build ships the executable, which starts
    faster and is one file; it ships the directory only when no executable is given.

    Raises:
        BuildOptionError: The directory cannot be read or is not a launcher directory.
    """
    if asset.directory is not None and (target == "gramine-sgx" or asset.executable is None):
        files = read_launcher_directory(asset.directory)
        path = LAUNCHER_DIR_ENTRY
        directory = True
    else:
        if asset.executable is None:  # pragma: no cover (excluded by LauncherAsset)
            raise _launcher_error("the launcher asset has no executable")
        files = (RuntimeFile(DEFAULT_LAUNCHER_PATH, asset.executable, mode=EXEC_MODE),)
        path = DEFAULT_LAUNCHER_PATH
        directory = False
    hashes = {item.path: hashlib.sha256(item.data).hexdigest() for item in files}
    return ShippedLauncher(path=path, files=files, hashes=hashes, directory=directory)


def load_launcher_asset(path: Path) -> LauncherAsset:
    """Load the launcher named on a command line or in the settings.

    ``path`` is the executable (``build/launcher/sanctum-launcher``; its directory form is
    taken too when ``<path>.d`` exists beside it) or the launcher directory itself. The
    directory's files are read only if a build ships them (:func:`ship_launcher`).

    Raises:
        BuildOptionError: ``path`` cannot be read (``build.launcher_unreadable``), or is a
            directory that is not a launcher directory (``build.launcher_invalid``).
    """
    try:
        if path.is_dir():
            for name in _LAUNCHER_DIR_REQUIRED:
                if not (path / name).is_file():
                    raise _launcher_error(f"{path} is not a launcher directory: {name} missing")
            return LauncherAsset(directory=path)
        executable = path.read_bytes()
    except OSError as error:
        raise _launcher_error(
            f"the launcher {path} cannot be read: {error.strerror or error}", unreadable=True
        ) from error
    beside = path.with_name(f"{path.name}.d")
    return LauncherAsset(executable=executable, directory=beside if beside.is_dir() else None)


@dataclass(frozen=True, slots=True)
class RuntimeLayer:
    """A built runtime layer.

    Attributes:
        blob: The compressed layer (``tar+gzip``).
        digest: ``sha256:`` of ``blob`` (the layer descriptor's digest).
        diff_id: ``sha256:`` of the uncompressed tar (the config's ``rootfs.diff_ids`` entry).
        tar_size: Size of the uncompressed tar.
    """

    blob: bytes
    digest: str
    diff_id: str
    tar_size: int

    @property
    def size(self) -> int:
        """Size of the compressed blob."""
        return len(self.blob)


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it to ``target``."""

    def __init__(self, target: gzip.GzipFile) -> None:
        """Wrap ``target``."""
        self._target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Hash, count and forward ``data``."""
        self.digest.update(data)
        self.size += len(data)
        self._target.write(data)
        return len(data)

    def tell(self) -> int:
        """Return how many bytes were written (tarfile asks once, at the start)."""
        return self.size


def _tar_info(name: str, *, size: int, mode: int, is_dir: bool) -> tarfile.TarInfo:
    """Return a header with every variable field pinned."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = 0 if is_dir else size
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _check_path(path: str) -> str:
    """Return ``path`` without its leading slash after checking it.

    Raises:
        BuildOptionError: Not an absolute, normalised path below ``/``.
    """
    if not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
        raise BuildOptionError(
            f"runtime file path {path!r} is not an absolute, normalised file path",
            code="build.path_invalid",
        )
    return path[1:]


def build_runtime_layer(
    files: Sequence[RuntimeFile], *, directories: Sequence[RuntimeDirectory] | None = None
) -> RuntimeLayer:
    """Build the deterministic runtime layer holding ``files``.

    Args:
        files: The files; their parent directories are added automatically (mode 0755).
        directories: Empty directories to add; ``None`` means :func:`default_directories`
            (an empty ``/tmp`` unless the manifest shows the image has a non-directory one).

    Returns:
        The layer with its digests.

    Raises:
        BuildOptionError: A path is invalid, duplicated or too long for a ustar header.
    """
    entries: dict[str, RuntimeFile | RuntimeDirectory | None] = {}
    for directory in default_directories(files) if directories is None else directories:
        name = _check_path(directory.path)
        if name in entries:
            raise BuildOptionError(
                f"runtime directory {directory.path} is given twice", code="build.path_invalid"
            )
        entries[name] = directory
    for item in files:
        name = _check_path(item.path)
        if isinstance(entries.get(name), RuntimeFile):
            raise BuildOptionError(
                f"runtime file {item.path} is given twice", code="build.path_invalid"
            )
        if name in entries:
            raise BuildOptionError(
                f"runtime path {item.path} is both a file and a directory",
                code="build.path_invalid",
            )
        entries[name] = item
    for name in list(entries):
        parent = posixpath.dirname(name)
        while parent:
            if isinstance(entries.get(parent), RuntimeFile):
                raise BuildOptionError(
                    f"runtime path /{parent} is both a file and a directory",
                    code="build.path_invalid",
                )
            entries.setdefault(parent, None)
            parent = posixpath.dirname(parent)
    compressed = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=compressed, compresslevel=_GZIP_LEVEL, mtime=0
    ) as gz:
        raw = _HashingWriter(gz)
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]
            for name in sorted(entries):
                entry = entries[name]
                try:
                    if entry is None:
                        tar.addfile(_tar_info(name, size=0, mode=EXEC_MODE, is_dir=True))
                    elif isinstance(entry, RuntimeDirectory):
                        tar.addfile(_tar_info(name, size=0, mode=entry.mode, is_dir=True))
                    else:
                        info = _tar_info(name, size=len(entry.data), mode=entry.mode, is_dir=False)
                        tar.addfile(info, io.BytesIO(entry.data))
                except ValueError as error:
                    raise BuildOptionError(
                        f"runtime path /{name} cannot be stored in a ustar header: {error}",
                        code="build.path_invalid",
                    ) from error
    blob = compressed.getvalue()
    return RuntimeLayer(
        blob=blob,
        digest="sha256:" + hashlib.sha256(blob).hexdigest(),
        diff_id="sha256:" + raw.digest.hexdigest(),
        tar_size=raw.size,
    )
