"""docker-archive tarballs (``docker save`` format): read and write, streaming.

A docker-archive holds ``manifest.json`` (a list of ``{Config, RepoTags, Layers}``), the config
JSON and one tar file per layer, normally uncompressed. There is no registry manifest inside, so
a reader synthesises a Docker schema 2 manifest (as skopeo does): uncompressed layers are named by
their ``diff_id`` and verified against it; a layer file that is compressed (``docker load``
accepts those) is hashed once when the archive is opened and presented as is.

A writer stores layers uncompressed, as ``docker save`` does: a compressed layer is verified
against its digest, decompressed into a staging directory and checked against the config's
``diff_ids``. The tarball is assembled when the manifest arrives, into a temporary file that
replaces the target only when complete. Entries are sorted and timestamps fixed, so the same
image always gives the same tarball.

Compressed tarballs (``docker save | gzip``): a reader decompresses a gzip or zstd tarball
once into a private temporary file; a writer whose target name ends in ``.gz`` or ``.tgz``
gzip-compresses the whole tarball (deterministically: no name, mtime 0, a fixed level), which
``docker load`` and skopeo read.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final, cast

from sanctum.converter.errors import ImageError
from sanctum.converter.oci.compression import (
    decompression_errors,
    open_decompressed,
    sniff_compression,
)
from sanctum.converter.oci.model import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_TAR,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_ZSTD,
    Descriptor,
    ImageConfig,
    Manifest,
    digest_of,
    layer_compression,
    parse_manifest_or_index,
)
from sanctum.converter.oci.reference import (
    ArchiveReference,
    RegistryReference,
    parse_image_reference,
)
from sanctum.converter.oci.store import (
    CHUNK_SIZE,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    BaseImageSource,
    BlobReader,
    Closing,
    ProgressCallback,
    not_found,
    verifying_reader,
)
from sanctum.errors import UsageError

__all__ = ["GZIP_SUFFIXES", "ArchiveSink", "ArchiveSource"]

#: Target names of a docker-archive that is written gzip-compressed as a whole.
GZIP_SUFFIXES: Final = (".gz", ".tgz")
_GZIP_LEVEL: Final = 6


def _normalise_name(name: str) -> str:
    """Return ``name`` in Docker's full form (``docker.io/library/x:latest``) when it parses."""
    try:
        ref = parse_image_reference(name)
    except UsageError:
        return name
    if not isinstance(ref, RegistryReference):
        return name
    return f"{ref.registry}/{ref.repository}:{ref.tag}" + (f"@{ref.digest}" if ref.digest else "")


def _bad_archive(path: Path, why: str) -> ImageError:
    return ImageError(f"docker-archive {path} is malformed: {why}", code="image.malformed")


def _canonical_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    # Go's field order for schema 2 descriptors (mediaType, size, digest), compact like skopeo.
    def desc(d: Descriptor) -> dict[str, Any]:
        return {"mediaType": d.media_type, "size": d.size, "digest": d.digest}

    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(config),
        "layers": [desc(d) for d in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


class ArchiveSource(BaseImageSource):
    """Read an image from a docker-archive tarball."""

    def __init__(self, reference: ArchiveReference, *, workdir: Path | None = None) -> None:
        """Open the tarball and index it (layer contents are not read, except compressed ones).

        A tarball compressed as a whole (``docker save | gzip``, or zstd) is first decompressed
        into a temporary file (in ``workdir``, default the system's temporary directory).

        Raises:
            ImageError: The file is missing (``image.not_found``) or malformed.
        """
        super().__init__()
        self.reference = reference
        self.path = reference.path
        #: Holds the decompressed copy of a compressed tarball (``docker save | gzip``).
        self._unpacked: tempfile.TemporaryDirectory[str] | None = None
        try:
            tar_path = self._decompressed_copy(workdir)
            self._tar = tarfile.open(tar_path, "r:")  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            self._cleanup()
            raise not_found("the docker-archive", str(self.path)) from None
        except tarfile.TarError as exc:
            self._cleanup()
            raise _bad_archive(self.path, f"not a tar file ({exc})") from None
        except BaseException:
            self._cleanup()
            raise
        try:
            self._members = {
                m.name.removeprefix("./"): m for m in self._tar.getmembers() if m.isfile()
            }
            self._blobs: dict[str, tuple[tarfile.TarInfo, Descriptor]] = {}
            self._raw_manifest = self._load_index()
        except BaseException:
            self.close()
            raise

    def _decompressed_copy(self, workdir: Path | None) -> Path:
        """Return the path of the plain tarball: the file itself, or a decompressed copy of it.

        A tarball compressed as a whole (gzip or zstd) cannot be read at random, so it is
        decompressed once, streaming, into a private temporary directory.

        Raises:
            FileNotFoundError: The file does not exist.
            ImageError: The compressed data is corrupt (``image.malformed``).
        """
        with self.path.open("rb") as handle:
            kind = sniff_compression(handle.read(4))
            if kind == "none":
                return self.path
            handle.seek(0)
            self._unpacked = tempfile.TemporaryDirectory(prefix="sanctum-archive-", dir=workdir)
            target = Path(self._unpacked.name) / "image.tar"
            with target.open("wb") as out, decompression_errors(f"docker-archive {self.path}"):
                plain = open_decompressed(kind, handle)
                while chunk := plain.read(CHUNK_SIZE):
                    out.write(chunk)
        return target

    def _cleanup(self) -> None:
        if self._unpacked is not None:
            self._unpacked.cleanup()
            self._unpacked = None

    def close(self) -> None:
        """Close the tarball (and delete a decompressed copy)."""
        try:
            self._tar.close()
        finally:
            self._cleanup()

    def _read_member(self, name: str, limit: int) -> bytes:
        member = self._members.get(name)
        if member is None:
            raise _bad_archive(self.path, f"{name!r} is listed but missing")
        if member.size > limit:
            raise _bad_archive(self.path, f"{name!r} is larger than {limit} bytes")
        handle = self._tar.extractfile(member)
        if handle is None:  # pragma: no cover (regular files always extract)
            raise _bad_archive(self.path, f"{name!r} cannot be read")
        with handle:
            return handle.read()

    def _select(self, entries: list[Any]) -> dict[str, Any]:
        tag = self.reference.tag
        if tag is None:
            if len(entries) != 1:
                raise ImageError(
                    f"docker-archive {self.path} holds {len(entries)} images; "
                    "name one with :NAME:TAG",
                    code="image.not_found",
                )
            entry = entries[0]
        else:
            wanted = _normalise_name(tag)
            found = [
                e
                for e in entries
                if isinstance(e, dict)
                and wanted in {_normalise_name(str(t)) for t in e.get("RepoTags") or []}
            ]
            if not found:
                raise not_found(f"image {tag!r}", f"docker-archive {self.path}")
            entry = found[0]
        if not isinstance(entry, dict):
            raise _bad_archive(self.path, "a manifest.json entry is not an object")
        return entry

    def _load_index(self) -> bytes:
        try:
            entries = json.loads(self._read_member("manifest.json", MAX_MANIFEST_SIZE))
        except ValueError:
            raise _bad_archive(self.path, "manifest.json is not JSON") from None
        if not isinstance(entries, list):
            raise _bad_archive(self.path, "manifest.json is not a list")
        entry = self._select(entries)
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise _bad_archive(self.path, "an entry lacks Config or Layers")
        config_raw = self._read_member(config_name, MAX_CONFIG_SIZE)
        config = ImageConfig.parse(config_raw)
        if len(config.diff_ids) != len(layer_names):
            raise _bad_archive(self.path, "the number of layers differs from rootfs.diff_ids")
        config_desc = Descriptor(DOCKER_CONFIG, digest_of(config_raw), len(config_raw))
        self._blobs[config_desc.digest] = (
            self._members[config_name.removeprefix("./")],
            config_desc,
        )
        layers = []
        for name, diff_id in zip(layer_names, config.diff_ids, strict=True):
            member = self._members.get(str(name).removeprefix("./"))
            if member is None:
                raise _bad_archive(self.path, f"layer {name!r} is listed but missing")
            desc = self._describe_layer(member, diff_id)
            self._blobs[desc.digest] = (member, desc)
            layers.append(desc)
        return _canonical_manifest(config_desc, layers)

    def _describe_layer(self, member: tarfile.TarInfo, diff_id: str) -> Descriptor:
        handle = self._tar.extractfile(member)
        if handle is None:  # pragma: no cover (regular files always extract)
            raise _bad_archive(self.path, f"{member.name!r} cannot be read")
        with handle:
            head = handle.read(4)
            kind = sniff_compression(head)
            if kind == "none":
                return Descriptor(DOCKER_LAYER_TAR, diff_id, member.size)
            hasher = hashlib.sha256(head)
            while chunk := handle.read(CHUNK_SIZE):
                hasher.update(chunk)
        media_type = DOCKER_LAYER_GZIP if kind == "gzip" else OCI_LAYER_ZSTD
        return Descriptor(media_type, f"sha256:{hasher.hexdigest()}", member.size)

    def _top_level(self) -> tuple[bytes, str | None]:
        return self._raw_manifest, DOCKER_MANIFEST

    def open_blob(
        self, descriptor: Descriptor, *, progress: ProgressCallback | None = None
    ) -> BlobReader:
        """Open a verified stream of a layer or the config.

        Raises:
            ImageError: No such blob in the archive (``image.not_found``).
        """
        found = self._blobs.get(descriptor.digest)
        if found is None:
            raise not_found(f"blob {descriptor.digest}", f"docker-archive {self.path}")
        handle = self._tar.extractfile(found[0])
        if handle is None:  # pragma: no cover (regular files always extract)
            raise _bad_archive(self.path, f"{found[0].name!r} cannot be read")
        return BlobReader(handle, descriptor, on_close=handle.close, progress=progress)

    def blob_exists(self, digest: str) -> bool:
        """Return whether the archive holds blob ``digest``."""
        return digest in self._blobs


class ArchiveSink(Closing):
    """Write one image into a docker-archive tarball (replacing the file when complete)."""

    def __init__(self, reference: ArchiveReference) -> None:
        """Prepare a staging directory next to the target file.

        Raises:
            ImageError: The target's directory does not exist (``image.not_found``).
        """
        self.reference = reference
        self.path = reference.path
        parent = self.path.parent if str(self.path.parent) else Path()
        if not parent.is_dir():
            raise not_found(f"directory {parent}", "the file system")
        #: Whether the tarball is gzip-compressed as a whole (a ``.gz`` or ``.tgz`` name).
        self.compressed = self.path.name.endswith(GZIP_SUFFIXES)
        self._staging = Path(tempfile.mkdtemp(dir=parent, prefix=".sanctum-archive-"))
        #: Staged blobs: digest -> (file, size, diff_id or None for non-layers).
        self._staged: dict[str, tuple[Path, int, str | None]] = {}

    def close(self) -> None:
        """Remove the staging directory."""
        shutil.rmtree(self._staging, ignore_errors=True)

    def has_blob(self, digest: str) -> bool:
        """Return whether the blob was already staged."""
        return digest in self._staged

    def mount_blob(self, digest: str, from_repository: str) -> bool:  # noqa: ARG002
        """Return False: a tarball cannot link blobs from a registry repository."""
        return False

    def put_blob(
        self,
        descriptor: Descriptor,
        stream: IO[bytes] | BlobReader,
        *,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Stage a blob; a layer is stored uncompressed (its diff_id is computed on the way).

        Raises:
            ImageError: The bytes do not match ``descriptor`` (``image.digest_mismatch``) or the
                layer media type is not supported.
        """
        reader = verifying_reader(stream, descriptor, progress)
        is_layer = descriptor.media_type not in {DOCKER_CONFIG, OCI_CONFIG}
        kind = layer_compression(descriptor.media_type) if is_layer else "none"
        raw_path = self._staging / f"{descriptor.digest.replace(':', '-')}.blob"
        with raw_path.open("wb") as out:
            while chunk := reader.read(CHUNK_SIZE):
                out.write(chunk)
        if not is_layer:
            self._staged[descriptor.digest] = (raw_path, descriptor.size, None)
            return
        if kind == "none":
            self._staged[descriptor.digest] = (raw_path, descriptor.size, descriptor.digest)
            return
        hasher = hashlib.sha256()
        size = 0
        tar_path = raw_path.with_suffix(".tar")
        try:
            with (
                raw_path.open("rb") as source,
                tar_path.open("wb") as out,
                decompression_errors(f"layer {descriptor.digest}"),
            ):
                plain = open_decompressed(kind, source)
                while chunk := plain.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except BaseException:
            tar_path.unlink(missing_ok=True)
            raise
        finally:
            raw_path.unlink(missing_ok=True)
        self._staged[descriptor.digest] = (tar_path, size, f"sha256:{hasher.hexdigest()}")

    def put_manifest(self, manifest_bytes: bytes, media_type: str, tag: str | None = None) -> str:
        """Assemble the tarball from the staged blobs and return the manifest's digest.

        The archive keeps no registry manifest; the returned digest is that of
        ``manifest_bytes``. ``tag`` (default: the reference's) becomes the ``RepoTags`` entry.

        Raises:
            ImageError: The manifest is an index (``image.unsupported_media_type``), references
                unstaged blobs (``image.incomplete``), or its layers do not match the config's
                ``diff_ids`` (``image.digest_mismatch``).
        """
        parsed = parse_manifest_or_index(manifest_bytes, media_type)
        if not isinstance(parsed, Manifest):
            raise ImageError(
                "a docker-archive holds single-platform images, not an index",
                code="image.unsupported_media_type",
            )
        for ref in (parsed.config, *parsed.layers):
            if ref.digest not in self._staged:
                raise ImageError(
                    f"the manifest references blob {ref.digest}, which was not written",
                    code="image.incomplete",
                )
        config_path = self._staged[parsed.config.digest][0]
        config = ImageConfig.parse(config_path.read_bytes())
        diff_ids = tuple(self._staged[layer.digest][2] for layer in parsed.layers)
        if diff_ids != config.diff_ids:
            raise ImageError(
                "the layers do not match the config's rootfs.diff_ids",
                code="image.digest_mismatch",
            )
        members: dict[str, Path] = {f"{parsed.config.digest.partition(':')[2]}.json": config_path}
        layer_names = []
        for layer in parsed.layers:
            path, _size, diff_id = self._staged[layer.digest]
            name = f"{str(diff_id).partition(':')[2]}.tar"
            members[name] = path
            layer_names.append(name)
        repo_tag = tag or self.reference.tag
        index = [
            {
                "Config": next(iter(members)),
                "RepoTags": [repo_tag] if repo_tag else [],
                "Layers": layer_names,
            }
        ]
        fd, tmp = tempfile.mkstemp(dir=self._staging.parent, prefix=".tmp-archive-")
        try:
            with (
                os.fdopen(fd, "wb") as handle,
                _maybe_gzip(handle, compress=self.compressed) as out,
                tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name in sorted(members):
                    _add_file(tar, name, members[name])
                data = json.dumps(index, separators=(",", ":")).encode()
                info = _tar_info("manifest.json", len(data))
                tar.addfile(info, io.BytesIO(data))
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return parsed.digest


@contextlib.contextmanager
def _maybe_gzip(handle: IO[bytes], *, compress: bool) -> Iterator[IO[bytes]]:
    """Yield ``handle``, or a deterministic gzip stream into it (no name, mtime 0, fixed level)."""
    if not compress:
        yield handle
        return
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=handle, compresslevel=_GZIP_LEVEL, mtime=0
    ) as out:
        yield cast("IO[bytes]", out)


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    with path.open("rb") as handle:
        tar.addfile(_tar_info(name, path.stat().st_size), handle)
