"""``oci-archive:FILE[:TAG]``: a tarball of an OCI image layout, read and written via a layout.

skopeo and podman (``podman save --format oci-archive``) write an OCI image layout directory
(``oci-layout``, ``index.json``, ``blobs/ALG/HEX``) as one tar file. A tarball cannot be read at
random, so a reader unpacks the layout once, streaming, into a private temporary directory and
reads it as an ``oci:`` layout (every blob verified against its digest on every read); a writer
builds the layout in a temporary directory and, when the manifest arrives, packs it into a
temporary file that replaces the target only when complete.

Unpacking an untrusted tarball is where path traversal hides, so only the layout's own entries
are taken: ``oci-layout``, ``index.json`` and regular files ``blobs/ALG/HEX`` with a valid
digest name; directories are implied; anything else (links, devices, absolute or ``..`` paths,
other files) is skipped or refused. The written tarball is deterministic: sorted entries, mtime
0, owner 0, fixed modes.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Final

from sanctum.converter.errors import ImageError
from sanctum.converter.oci.layout import LayoutSink, LayoutSource
from sanctum.converter.oci.reference import LayoutReference, OciArchiveReference
from sanctum.converter.oci.store import CHUNK_SIZE, not_found

__all__ = ["OciArchiveSink", "OciArchiveSource"]

_BLOB_NAME_RE: Final = re.compile(r"blobs/(sha256/[0-9a-f]{64}|sha512/[0-9a-f]{128})")
_LAYOUT_FILES: Final = frozenset({"oci-layout", "index.json"})


def _bad(path: Path, why: str) -> ImageError:
    return ImageError(f"oci-archive {path} is malformed: {why}", code="image.malformed")


def _member_name(member: tarfile.TarInfo) -> str:
    """Return the member's name relative to the layout root (``./`` prefixes removed)."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") if member.isdir() else name


def unpack_layout(archive: Path, root: Path) -> None:
    """Unpack the OCI layout held in the tarball ``archive`` into the new directory ``root``.

    The tarball may be compressed as a whole (gzip, bzip2, xz). Only the layout's entries are
    written (see the module docstring), each by streaming.

    Raises:
        ImageError: The file is missing (``image.not_found``), is not a tar file, holds an entry
            of the layout that is not a regular file, or lacks ``index.json``
            (``image.malformed``).
    """
    root.mkdir(parents=True)
    try:
        tar = tarfile.open(archive, "r|*")  # noqa: SIM115 (closed just below)
    except FileNotFoundError:
        raise not_found("the oci-archive", str(archive)) from None
    except (tarfile.TarError, OSError) as exc:
        raise _bad(archive, f"not a tar file ({exc})") from None
    seen: set[str] = set()
    try:
        with tar:
            for member in tar:
                name = _member_name(member)
                wanted = name in _LAYOUT_FILES or _BLOB_NAME_RE.fullmatch(name) is not None
                if not wanted:
                    continue  # Directories (implied) and files that are not the layout's.
                if not member.isfile():
                    raise _bad(archive, f"{name!r} is not a regular file")
                if name in seen:
                    raise _bad(archive, f"{name!r} appears twice")
                seen.add(name)
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover (regular files always extract)
                    raise _bad(archive, f"{name!r} cannot be read")
                with handle, target.open("xb") as out:
                    while chunk := handle.read(CHUNK_SIZE):
                        out.write(chunk)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _bad(archive, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if "index.json" not in seen:
        raise _bad(archive, "it holds no index.json")


class OciArchiveSource(LayoutSource):
    """Read an image from an oci-archive (unpacked once into a private temporary directory)."""

    def __init__(self, reference: OciArchiveReference, *, workdir: Path | None = None) -> None:
        """Unpack the archive named by ``reference``.

        Args:
            reference: The archive and the tag to read.
            workdir: Where the temporary directory goes (default: the system's).

        Raises:
            ImageError: The archive is missing or malformed.
        """
        self._tmp = tempfile.TemporaryDirectory(prefix="sanctum-oci-archive-", dir=workdir)
        root = Path(self._tmp.name) / "layout"
        try:
            unpack_layout(reference.path, root)
            super().__init__(LayoutReference(root, reference.tag))
        except BaseException:
            self._tmp.cleanup()
            raise
        #: The archive this source reads.
        self.archive = reference

    def close(self) -> None:
        """Delete the unpacked layout."""
        try:
            super().close()
        finally:
            self._tmp.cleanup()


class OciArchiveSink(LayoutSink):
    """Write an image into an oci-archive (replacing the file when complete)."""

    def __init__(self, reference: OciArchiveReference) -> None:
        """Prepare a layout in a staging directory next to the target file.

        Raises:
            ImageError: The target's directory does not exist (``image.not_found``).
        """
        parent = reference.path.parent if str(reference.path.parent) else Path()
        if not parent.is_dir():
            raise not_found(f"directory {parent}", "the file system")
        self._staging = Path(tempfile.mkdtemp(dir=parent, prefix=".sanctum-oci-archive-"))
        try:
            super().__init__(LayoutReference(self._staging / "layout", reference.tag))
        except BaseException:
            shutil.rmtree(self._staging, ignore_errors=True)
            raise
        #: The archive this sink writes.
        self.archive = reference

    def put_manifest(self, manifest_bytes: bytes, media_type: str, tag: str | None = None) -> str:
        """Store the manifest in the staged layout, then write the tarball; return the digest.

        Raises:
            ImageError: The manifest is malformed or references blobs that were not written.
        """
        digest = super().put_manifest(manifest_bytes, media_type, tag)
        self._write_archive()
        return digest

    def _write_archive(self) -> None:
        """Pack the staged layout into a temporary file and move it onto the target."""
        root = self.root
        names = ["oci-layout", "index.json"]
        names += sorted(
            path.relative_to(root).as_posix()
            for path in (root / "blobs").rglob("*")
            if path.is_file() and _BLOB_NAME_RE.fullmatch(path.relative_to(root).as_posix())
        )
        directories = sorted(
            {"blobs"} | {name.rsplit("/", 1)[0] for name in names if name.startswith("blobs/")}
        )
        fd, tmp = tempfile.mkstemp(dir=self._staging.parent, prefix=".tmp-oci-archive-")
        try:
            with (
                os.fdopen(fd, "wb") as handle,
                tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name in directories:
                    tar.addfile(_info(name, 0, directory=True))
                for name in names:
                    path = root / name
                    with path.open("rb") as data:
                        tar.addfile(_info(name, path.stat().st_size, directory=False), data)
            Path(tmp).replace(self.archive.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def close(self) -> None:
        """Remove the staging directory."""
        shutil.rmtree(self._staging, ignore_errors=True)


def _info(name: str, size: int, *, directory: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = size
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
