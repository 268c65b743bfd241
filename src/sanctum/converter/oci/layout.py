"""OCI image layout directories (``oci:PATH[:TAG]``): read and write, streaming.

A layout is a directory with an ``oci-layout`` marker, an ``index.json`` naming images by the
``org.opencontainers.image.ref.name`` annotation, and content-addressed ``blobs/ALG/HEX`` files.
Reads verify every blob against its digest; writes go to a temporary file in the blob directory
and are renamed into place only after the digest matched, so a corrupt stream leaves nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Final

from sanctum.converter.errors import ImageError
from sanctum.converter.oci.model import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    REF_NAME_ANNOTATION,
    Descriptor,
    Index,
    Manifest,
    check_digest,
    parse_manifest_or_index,
)
from sanctum.converter.oci.reference import LayoutReference
from sanctum.converter.oci.store import (
    CHUNK_SIZE,
    MAX_MANIFEST_SIZE,
    BaseImageSource,
    BlobReader,
    Closing,
    ProgressCallback,
    not_found,
    verifying_reader,
)

__all__ = ["LayoutSink", "LayoutSource"]

_LAYOUT_MARKER: Final = {"imageLayoutVersion": "1.0.0"}


def _blob_path(root: Path, digest: str) -> Path:
    algorithm, _, hexdigest = check_digest(digest).partition(":")
    return root / "blobs" / algorithm / hexdigest


def _read_index(root: Path) -> Index:
    path = root / "index.json"
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_SIZE + 1)
    except FileNotFoundError:
        raise not_found("index.json", f"OCI layout {root}") from None
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ImageError(f"{path} is larger than {MAX_MANIFEST_SIZE} bytes", code="image.malformed")
    return Index.parse(raw, OCI_INDEX)


class LayoutSource(BaseImageSource):
    """Read an image from an OCI image layout directory."""

    def __init__(self, reference: LayoutReference) -> None:
        """Open the layout named by ``reference`` (nothing is read until first use)."""
        super().__init__()
        self.reference = reference
        self.root = reference.path

    def _entry(self) -> Descriptor:
        if not (self.root / "oci-layout").is_file():
            raise not_found("an OCI layout (no oci-layout file)", str(self.root))
        entries = _read_index(self.root).manifests
        tag = self.reference.tag
        if tag is None:
            if len(entries) != 1:
                raise ImageError(
                    f"OCI layout {self.root} holds {len(entries)} images; name one with :TAG",
                    code="image.not_found",
                )
            return entries[0]
        for entry in entries:
            if entry.annotations.get(REF_NAME_ANNOTATION) == tag:
                return entry
        raise not_found(f"tag {tag!r}", f"OCI layout {self.root}")

    def _top_level(self) -> tuple[bytes, str | None]:
        entry = self._entry()
        if entry.media_type not in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
            raise ImageError(
                f"the layout entry has media type {entry.media_type!r}, not a manifest or index",
                code="image.unsupported_media_type",
            )
        return self._manifest_bytes(entry), entry.media_type

    def open_blob(
        self, descriptor: Descriptor, *, progress: ProgressCallback | None = None
    ) -> BlobReader:
        """Open a verified stream of a blob of the layout.

        Raises:
            ImageError: The blob file is missing (``image.not_found``).
        """
        path = _blob_path(self.root, descriptor.digest)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise not_found(f"blob {descriptor.digest}", f"OCI layout {self.root}") from None
        return BlobReader(handle, descriptor, on_close=handle.close, progress=progress)

    def blob_exists(self, digest: str) -> bool:
        """Return whether the layout holds blob ``digest``."""
        return _blob_path(self.root, digest).is_file()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LayoutSink(Closing):
    """Write an image into an OCI image layout directory (created when missing)."""

    def __init__(self, reference: LayoutReference) -> None:
        """Create or open the layout named by ``reference``.

        Raises:
            ImageError: The directory exists, is not empty and is not an OCI layout.
        """
        self.reference = reference
        self.root = reference.path
        marker = self.root / "oci-layout"
        if self.root.exists() and any(self.root.iterdir()) and not marker.is_file():
            raise ImageError(
                f"{self.root} exists and is not an OCI layout; refusing to write into it",
                code="image.not_a_layout",
            )
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            _write_atomically(marker, json.dumps(_LAYOUT_MARKER).encode())
        if not (self.root / "index.json").is_file():
            self._write_index([])

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        _write_atomically(self.root / "index.json", json.dumps(doc, separators=(",", ":")).encode())

    def has_blob(self, digest: str) -> bool:
        """Return whether the layout already holds blob ``digest``."""
        return _blob_path(self.root, digest).is_file()

    def put_blob(
        self,
        descriptor: Descriptor,
        stream: IO[bytes] | BlobReader,
        *,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Stream a blob into the layout; it appears only once its digest matched.

        Raises:
            ImageError: The streamed bytes do not match ``descriptor`` (``image.digest_mismatch``).
        """
        target = _blob_path(self.root, descriptor.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        reader = verifying_reader(stream, descriptor, progress)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                buf = bytearray(CHUNK_SIZE)
                view = memoryview(buf)
                while n := reader.readinto(buf):
                    handle.write(view[:n])
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def mount_blob(self, digest: str, from_repository: str) -> bool:  # noqa: ARG002
        """Return False: a layout cannot link blobs from a registry repository."""
        return False

    def put_manifest(self, manifest_bytes: bytes, media_type: str, tag: str | None = None) -> str:
        """Store the exact manifest bytes and name them in ``index.json``.

        ``tag`` defaults to the reference's tag; with neither, the entry is unnamed.

        Raises:
            ImageError: The manifest is malformed or references blobs the layout lacks
                (``image.incomplete``).
        """
        tag = tag if tag is not None else self.reference.tag
        parsed = parse_manifest_or_index(manifest_bytes, media_type)
        refs = (parsed.config, *parsed.layers) if isinstance(parsed, Manifest) else parsed.manifests
        for ref in refs:
            if not self.has_blob(ref.digest):
                raise ImageError(
                    f"the manifest references blob {ref.digest}, which the layout lacks",
                    code="image.incomplete",
                )
        path = _blob_path(self.root, parsed.digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, manifest_bytes)
        entries = [entry.to_json() for entry in _read_index(self.root).manifests]
        if tag is not None:
            entries = [
                e for e in entries if e.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
            ]
        new = Descriptor(
            parsed.media_type,
            parsed.digest,
            len(manifest_bytes),
            annotations={REF_NAME_ANNOTATION: tag} if tag is not None else {},
        )
        entries.append(new.to_json())
        self._write_index(entries)
        return parsed.digest

    def close(self) -> None:
        """Nothing to release: every write is already complete on disk."""
