"""Copy an image from a source to a sink, blob by blob, streaming and verified.

Blobs the sink already has are skipped; on the same registry, blobs are mounted from the source
repository instead of being uploaded; everything else is streamed from the source (verified at
EOF) into the sink (which verifies again before committing), several blobs at a time between
registries and layouts. The manifest is written last and
byte for byte, so the copy has the same manifest digest as the original.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Final, Literal

from sanctum.converter.oci.layout import LayoutSink, LayoutSource
from sanctum.converter.oci.model import Descriptor
from sanctum.converter.oci.registry import RegistrySink, RegistrySource
from sanctum.converter.oci.store import ImageSink, ImageSource, MemoryImageStore

__all__ = [
    "DEFAULT_WORKERS",
    "BlobOutcome",
    "CopyProgress",
    "CopyResult",
    "copy_image",
    "transfer_blob",
]

BlobOutcome = Literal["uploaded", "skipped", "mounted"]

#: Blobs copied at the same time by default (skopeo copies several layers at once too).
DEFAULT_WORKERS: Final = 4


@dataclass(frozen=True, slots=True)
class CopyProgress:
    """One progress report of a copy.

    Attributes:
        event: ``start`` (a blob begins), ``advance`` (bytes moved), or the blob's outcome
            (``uploaded``, ``skipped``, ``mounted``).
        descriptor: The blob concerned.
        transferred: Bytes of this blob moved so far.
    """

    event: Literal["start", "advance", "uploaded", "skipped", "mounted"]
    descriptor: Descriptor
    transferred: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What a copy did.

    Attributes:
        manifest_digest: Digest of the manifest written (equal to the source's).
        media_type: Media type of that manifest.
        image_size: Size of the manifest, the config and all layers, in bytes.
        uploaded: Digests of the blobs streamed to the sink.
        skipped: Digests of the blobs the sink already had.
        mounted: Digests of the blobs mounted from another repository.
    """

    manifest_digest: str
    media_type: str
    image_size: int
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]
    mounted: tuple[str, ...]


ProgressHandler = Callable[[CopyProgress], None]


def transfer_blob(
    source: ImageSource,
    sink: ImageSink,
    descriptor: Descriptor,
    *,
    mount_from: str | None = None,
    progress: ProgressHandler | None = None,
) -> BlobOutcome:
    """Make the sink hold ``descriptor``'s blob: skip, mount, or stream it from the source.

    Raises:
        sanctum.converter.errors.ImageError: The blob is missing or corrupt in the source.
        sanctum.converter.errors.RegistryUnavailable: A registry could not be reached.
        sanctum.converter.errors.RegistryAuthError: A registry refused access.
    """
    outcome: BlobOutcome
    if sink.has_blob(descriptor.digest):
        outcome = "skipped"
    elif mount_from is not None and sink.mount_blob(descriptor.digest, mount_from):
        outcome = "mounted"
    else:
        moved = 0

        def advance(count: int) -> None:
            nonlocal moved
            moved += count
            if progress is not None:
                progress(CopyProgress("advance", descriptor, moved))

        if progress is not None:
            progress(CopyProgress("start", descriptor, 0))
        with source.open_blob(descriptor, progress=advance) as reader:
            sink.put_blob(descriptor, reader)
        outcome = "uploaded"
    if progress is not None:
        progress(CopyProgress(outcome, descriptor, descriptor.size))
    return outcome


def _same_registry_repository(source: ImageSource, sink: ImageSink) -> str | None:
    if isinstance(source, RegistrySource) and isinstance(sink, RegistrySink):
        src, dst = source.reference, sink.reference
        if src.registry == dst.registry and src.repository != dst.repository:
            return src.repository
    return None


def _thread_safe(store: object) -> bool:
    return isinstance(
        store,
        RegistrySource | RegistrySink | LayoutSource | LayoutSink | MemoryImageStore,
    )


def copy_image(
    source: ImageSource,
    sink: ImageSink,
    *,
    tag: str | None = None,
    progress: ProgressHandler | None = None,
    mount_from: str | None = None,
    workers: int = DEFAULT_WORKERS,
) -> CopyResult:
    """Copy the source's (linux/amd64) image to the sink and return what was done.

    Args:
        source: Where to read; an index is resolved to its linux/amd64 image.
        sink: Where to write.
        tag: Tag to write (default: the sink reference's tag).
        progress: Called for every blob event (from worker threads when ``workers`` > 1).
        mount_from: Repository on the sink's registry to mount blobs from; by default the
            source repository when source and sink are on the same registry.
        workers: Blobs transferred at the same time, for registries and layouts (tarballs are
            always copied one blob at a time).

    Raises:
        sanctum.converter.errors.ImageError: The image is missing, malformed or corrupt.
        sanctum.converter.errors.RegistryUnavailable: A registry could not be reached.
        sanctum.converter.errors.RegistryAuthError: A registry refused access.
    """
    manifest = source.manifest()
    if mount_from is None:
        mount_from = _same_registry_repository(source, sink)
    blobs = list({d.digest: d for d in (*manifest.layers, manifest.config)}.values())

    def transfer(descriptor: Descriptor) -> BlobOutcome:
        return transfer_blob(source, sink, descriptor, mount_from=mount_from, progress=progress)

    results: dict[str, BlobOutcome] = {}
    if workers > 1 and len(blobs) > 1 and _thread_safe(source) and _thread_safe(sink):
        # The first blob goes alone, so connection set-up (TLS probe, auth) is settled once.
        results[blobs[0].digest] = transfer(blobs[0])
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sanctum-copy") as pool:
            futures = {pool.submit(transfer, d): d.digest for d in blobs[1:]}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    else:
        for descriptor in blobs:
            results[descriptor.digest] = transfer(descriptor)
    digest = sink.put_manifest(manifest.raw, manifest.media_type, tag)
    size = manifest.size + manifest.config.size + sum(layer.size for layer in manifest.layers)
    ordered = [d.digest for d in blobs]
    return CopyResult(
        manifest_digest=digest,
        media_type=manifest.media_type,
        image_size=size,
        uploaded=tuple(d for d in ordered if results[d] == "uploaded"),
        skipped=tuple(d for d in ordered if results[d] == "skipped"),
        mounted=tuple(d for d in ordered if results[d] == "mounted"),
    )
