"""OCI image I/O: registries, OCI layouts, oci-archive and docker-archive tarballs.

Open a store from a reference and use the :class:`~sanctum.converter.oci.store.ImageSource` /
:class:`~sanctum.converter.oci.store.ImageSink` Protocols::

    ref = parse_image_reference("docker://127.0.0.1:5000/app:1.0")
    with open_source(ref) as source:
        manifest = source.manifest()          # resolved to linux/amd64
        with source.open_blob(manifest.layers[0]) as layer:
            ...                               # verified against its digest at EOF

Every read is digest-verified, memory stays bounded whatever the image size, and manifests are
written byte for byte as read.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from sanctum.converter.oci.layout import LayoutSink, LayoutSource
from sanctum.converter.oci.model import (
    Descriptor,
    HistoryEntry,
    ImageConfig,
    Index,
    Manifest,
    Platform,
)
from sanctum.converter.oci.reference import (
    ArchiveReference,
    ImageReference,
    LayoutReference,
    OciArchiveReference,
    RegistryReference,
    parse_image_reference,
)
from sanctum.converter.oci.registry import (
    DEFAULT_CHUNK_SIZE,
    RegistryAuth,
    RegistryClient,
    RegistrySink,
    RegistrySource,
    RetryPolicy,
    auth_from_docker_config,
)
from sanctum.converter.oci.store import BlobReader, ImageSink, ImageSource, MemoryImageStore

if TYPE_CHECKING:
    from sanctum.converter.oci.archive import ArchiveSink, ArchiveSource
    from sanctum.converter.oci.copy import CopyProgress, CopyResult, copy_image, transfer_blob
    from sanctum.converter.oci.oci_archive import OciArchiveSink, OciArchiveSource

#: Names loaded on first use: a registry-to-registry conversion never needs the tarball
#: stores or the plain copy, so ``sanctum convert`` does not pay for importing them.
_LAZY: dict[str, str] = {
    "ArchiveSink": "sanctum.converter.oci.archive",
    "ArchiveSource": "sanctum.converter.oci.archive",
    "CopyProgress": "sanctum.converter.oci.copy",
    "CopyResult": "sanctum.converter.oci.copy",
    "copy_image": "sanctum.converter.oci.copy",
    "transfer_blob": "sanctum.converter.oci.copy",
    "OciArchiveSink": "sanctum.converter.oci.oci_archive",
    "OciArchiveSource": "sanctum.converter.oci.oci_archive",
}


def __getattr__(name: str) -> object:
    """Import the module of a lazily loaded name (PEP 562).

    Raises:
        AttributeError: ``name`` is not part of this package.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ArchiveReference",
    "BlobReader",
    "CopyProgress",
    "CopyResult",
    "Descriptor",
    "HistoryEntry",
    "ImageConfig",
    "ImageReference",
    "ImageSink",
    "ImageSource",
    "Index",
    "LayoutReference",
    "Manifest",
    "MemoryImageStore",
    "OciArchiveReference",
    "OciArchiveSink",
    "OciArchiveSource",
    "Platform",
    "RegistryAuth",
    "RegistryReference",
    "RetryPolicy",
    "copy_image",
    "open_sink",
    "open_source",
    "parse_image_reference",
    "transfer_blob",
]


def _registry_client(
    ref: RegistryReference,
    *,
    push: bool,
    auth: RegistryAuth | None,
    docker_config: Path | None,
    unsafe_plain_http: bool,
    verify: bool | str,
    retry: RetryPolicy | None,
) -> RegistryClient:
    if auth is None and docker_config is not None:
        auth = auth_from_docker_config(docker_config, ref.registry)
    return RegistryClient(
        ref,
        auth=auth,
        push=push,
        unsafe_plain_http=unsafe_plain_http,
        verify=verify,
        retry=retry,
    )


def open_source(
    ref: ImageReference | str,
    *,
    auth: RegistryAuth | None = None,
    docker_config: Path | None = None,
    unsafe_plain_http: bool = False,
    verify: bool | str = True,
    retry: RetryPolicy | None = None,
    workdir: Path | None = None,
) -> RegistrySource | LayoutSource | ArchiveSource:
    """Open an image source for ``ref`` (nothing is fetched until first use, except archives).

    Args:
        ref: A parsed reference or its text.
        auth: Registry credentials (they take precedence over ``docker_config``).
        docker_config: A docker ``config.json`` to take registry credentials from.
        unsafe_plain_http: Talk plain HTTP to a non-loopback registry.
        verify: TLS verification for registries (True or a CA bundle path).
        retry: Retries of transient registry failures (default: :class:`RetryPolicy`).
        workdir: Where an oci-archive is unpacked, or a compressed docker-archive
            decompressed (default: the system's temporary directory).

    Raises:
        sanctum.errors.UsageError: ``ref`` is not a valid reference, or the docker config is bad.
        sanctum.converter.errors.ImageError: An archive is missing or malformed.
    """
    if isinstance(ref, str):
        ref = parse_image_reference(ref)
    if isinstance(ref, RegistryReference):
        client = _registry_client(
            ref,
            push=False,
            auth=auth,
            docker_config=docker_config,
            unsafe_plain_http=unsafe_plain_http,
            verify=verify,
            retry=retry,
        )
        return RegistrySource(ref, client)
    if isinstance(ref, LayoutReference):
        return LayoutSource(ref)
    if isinstance(ref, OciArchiveReference):
        from sanctum.converter.oci.oci_archive import OciArchiveSource  # noqa: PLC0415 (lazy)

        return OciArchiveSource(ref, workdir=workdir)
    from sanctum.converter.oci.archive import ArchiveSource  # noqa: PLC0415 (lazy)

    return ArchiveSource(ref, workdir=workdir)


def open_sink(
    ref: ImageReference | str,
    *,
    auth: RegistryAuth | None = None,
    docker_config: Path | None = None,
    unsafe_plain_http: bool = False,
    verify: bool | str = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    retry: RetryPolicy | None = None,
) -> RegistrySink | LayoutSink | ArchiveSink:
    """Open an image sink for ``ref``.

    Args:
        ref: A parsed reference or its text.
        auth: Registry credentials (they take precedence over ``docker_config``).
        docker_config: A docker ``config.json`` to take registry credentials from.
        unsafe_plain_http: Talk plain HTTP to a non-loopback registry.
        verify: TLS verification for registries (True or a CA bundle path).
        chunk_size: Registry blobs larger than this are uploaded in chunks of this size.
        retry: Retries of transient registry failures (default: :class:`RetryPolicy`).

    Raises:
        sanctum.errors.UsageError: ``ref`` is not a valid reference, or the docker config is bad.
        sanctum.converter.errors.ImageError: A layout or archive target cannot be written.
    """
    if isinstance(ref, str):
        ref = parse_image_reference(ref)
    if isinstance(ref, RegistryReference):
        client = _registry_client(
            ref,
            push=True,
            auth=auth,
            docker_config=docker_config,
            unsafe_plain_http=unsafe_plain_http,
            verify=verify,
            retry=retry,
        )
        return RegistrySink(ref, client, chunk_size=chunk_size)
    if isinstance(ref, LayoutReference):
        return LayoutSink(ref)
    if isinstance(ref, OciArchiveReference):
        from sanctum.converter.oci.oci_archive import OciArchiveSink  # noqa: PLC0415 (lazy)

        return OciArchiveSink(ref)
    from sanctum.converter.oci.archive import ArchiveSink  # noqa: PLC0415 (lazy)

    return ArchiveSink(ref)
