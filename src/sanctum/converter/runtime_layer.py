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
executable, a few megabytes at most.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sanctum.converter.manifest import parse_manifest
from sanctum.converter.manifest_errors import BuildOptionError, ManifestError

__all__ = [
    "EXEC_MODE",
    "FILE_MODE",
    "MANIFEST_PATH",
    "SCRATCH_TMP",
    "TMP_MODE",
    "RuntimeDirectory",
    "RuntimeFile",
    "RuntimeLayer",
    "build_runtime_layer",
    "default_directories",
]

#: Mode of regular runtime files.
FILE_MODE: Final = 0o644
#: Mode of executables and directories.
EXEC_MODE: Final = 0o755
#: Mode of ``/tmp``: writable by everyone, sticky (only an entry's owner may remove it).
TMP_MODE: Final = 0o1777
#: Where the signed enclave manifest sits in the runtime layer.
MANIFEST_PATH: Final = "/sanctum/manifest.json"
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
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
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
    tar_bytes = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=compressed, compresslevel=_GZIP_LEVEL, mtime=0
    ) as gz:
        gz.write(tar_bytes)
    blob = compressed.getvalue()
    return RuntimeLayer(
        blob=blob,
        digest="sha256:" + hashlib.sha256(blob).hexdigest(),
        diff_id="sha256:" + hashlib.sha256(tar_bytes).hexdigest(),
        tar_size=len(tar_bytes),
    )
