"""Memory stays bounded whatever the layer size: a 256 MiB layer is streamed, never held."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from converter_images import OCI_CONFIG, OCI_MANIFEST, RegistryServer, _start_registry

from sanctum.converter.analysis import analyse_image
from sanctum.converter.oci import copy_image, open_sink, open_source

pytestmark = pytest.mark.slow

SIZE = 256 << 20
#: Generous bound for peak Python allocations while streaming (chunks are 1 MiB).
PEAK_LIMIT = 24 << 20
T = TypeVar("T")


class _Generated:
    """A file-like object producing ``size`` bytes of varied data without holding them.

    Every 1 MiB block is a random block with its number written over its first 8 bytes, so
    no two blocks are equal and nothing compresses or deduplicates trivially.
    """

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(1 << 20)
        self.counter = 0
        self.current = b""
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        if self.offset >= len(self.current):
            self.counter += 1
            self.current = self.counter.to_bytes(8, "little") + self.block[8:]
            self.offset = 0
        data = self.current[self.offset : self.offset + size]
        self.offset += len(data)
        self.left -= len(data)
        return data


class _HashingWriter:
    def __init__(self, handle) -> None:
        self.handle = handle
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.handle.write(data)


def _write_blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def _big_layout(root: Path) -> tuple[str, str]:
    """Write an OCI layout whose single uncompressed layer holds one 256 MiB file."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tmp = root / "layer.tmp"
    content_hash = hashlib.sha256()

    class _Tee(_Generated):
        def read(self, size: int = -1) -> bytes:
            data = super().read(size)
            content_hash.update(data)
            return data

    with tmp.open("wb") as handle:
        writer = _HashingWriter(handle)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            info = tarfile.TarInfo("data/big.bin")
            info.size = SIZE
            tar.addfile(info, _Tee(SIZE))
    layer_digest = f"sha256:{writer.hasher.hexdigest()}"
    tmp.rename(root / "blobs" / "sha256" / layer_digest[7:])
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": _write_blob(root, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": writer.size,
                }
            ],
        }
    ).encode()
    digest = _write_blob(root, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "big"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return digest, content_hash.hexdigest()


def _peak(func: Callable[[], T]) -> tuple[T, int]:
    tracemalloc.start()
    try:
        result = func()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def big_image() -> Iterator[tuple[Path, str, str]]:
    # A temporary directory removed at the end, so 256 MiB is not kept with pytest's tmp dirs.
    with tempfile.TemporaryDirectory(prefix="sanctum-big-") as tmp:
        root = Path(tmp) / "layout"
        digest, content = _big_layout(root)
        yield root, digest, content


@pytest.fixture
def big_registry(_registry_binary: str) -> Iterator[RegistryServer]:
    """A registry of its own whose storage is deleted after the test."""
    with tempfile.TemporaryDirectory(prefix="sanctum-big-registry-") as tmp:
        for host in _start_registry(Path(tmp), None):
            yield RegistryServer(host)


def test_analysis_of_a_huge_layer_uses_little_memory(big_image):
    root, digest, content = big_image

    def run():
        with open_source(f"oci:{root}:big") as source:
            return analyse_image(source)

    listing, peak = _peak(run)
    assert listing.manifest_digest == digest
    assert listing.files["/data/big.bin"].sha256 == content
    assert listing.files["/data/big.bin"].size == SIZE
    assert peak < PEAK_LIMIT, f"peak traced memory {peak / 2**20:.1f} MiB"


@pytest.mark.registry
def test_registry_round_trip_of_a_huge_layer_uses_little_memory(
    big_image, big_registry: RegistryServer
):
    root, digest, content = big_image
    target = big_registry.ref("big/image", "big")

    def push():
        with (
            open_source(f"oci:{root}:big") as source,
            open_sink(target, chunk_size=64 << 20) as sink,
        ):
            return copy_image(source, sink), sink.stats["chunks"]

    (result, chunks), peak = _peak(push)
    assert result.manifest_digest == digest
    assert chunks == 5  # 256 MiB of data plus tar headers, in 64 MiB chunks.
    assert peak < PEAK_LIMIT, f"peak traced memory {peak / 2**20:.1f} MiB"

    def pull():
        with open_source(target) as source:
            return analyse_image(source)

    listing, peak = _peak(pull)
    assert listing.files["/data/big.bin"].sha256 == content
    assert peak < PEAK_LIMIT, f"peak traced memory {peak / 2**20:.1f} MiB"
