"""The fast analysis path: layers read in parallel, zlib/tar streaming, deferred hard links.

Every listing is checked against an independent reference (tarfile + hashlib on the whole
uncompressed layer) or against the one-layer-at-a-time analysis, which must agree exactly.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from converter_images import (
    compress,
    directory,
    file,
    hardlink,
    layered_entries,
    opaque,
    symlink,
    tar_bytes,
    whiteout,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.converter.analysis import FileSystemListing, analyse_image
from sanctum.converter.errors import ImageError
from sanctum.converter.oci import Manifest, MemoryImageStore
from sanctum.converter.oci.model import OCI_CONFIG, Descriptor, ImageConfig, digest_of
from sanctum.converter.oci.store import BlobReader, ProgressCallback, SpooledBlobReader

_MEDIA = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def _store(layers: Sequence[tuple[bytes, bytes, str]]) -> MemoryImageStore:
    """Return an image of ``(blob, uncompressed tar, compression)`` layers."""
    store = MemoryImageStore()
    descriptors = [store.add_blob(blob, _MEDIA[kind]) for blob, _, kind in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(plain) for _, plain, _ in layers]},
        }
    ).encode()
    manifest = Manifest.build(store.add_blob(config, OCI_CONFIG), descriptors)
    store.put_manifest(manifest.raw, manifest.media_type)
    return store


def _image(layers: Sequence[bytes], compression: str = "gzip") -> MemoryImageStore:
    return _store([(compress(plain, compression), plain, compression) for plain in layers])  # type: ignore[arg-type]


def _reference_hashes(plain: bytes) -> dict[str, str]:
    """SHA-256 of each regular file of a tar, by tarfile on the whole buffer (independent)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                out["/" + member.name] = hashlib.sha256(handle.read()).hexdigest()
    return out


class _MeetingStore(MemoryImageStore):
    """A store whose blobs open only once ``parties`` threads are opening one at the same time."""

    def __init__(self, inner: MemoryImageStore, parties: int) -> None:
        super().__init__()
        self._inner = inner
        self._barrier = threading.Barrier(parties, timeout=30)
        self.threads: set[str] = set()

    def manifest(self) -> Manifest:
        return self._inner.manifest()

    def config(self) -> ImageConfig:
        return self._inner.config()

    def open_blob(
        self, descriptor: Descriptor, *, progress: ProgressCallback | None = None
    ) -> BlobReader:
        self.threads.add(threading.current_thread().name)
        self._barrier.wait()  # Breaks (and fails the test) unless the layers are read together.
        return self._inner.open_blob(descriptor, progress=progress)


def _listing(store: MemoryImageStore, workers: int) -> FileSystemListing:
    return analyse_image(store, workers=workers)


def test_parallel_analysis_equals_sequential_on_every_changeset_rule() -> None:
    plain = [
        entries if isinstance(entries, bytes) else tar_bytes(entries)
        for entries in layered_entries()
    ]
    store = _image(plain)
    sequential = _listing(store, 1)
    for workers in (2, 3, 8):
        parallel = _listing(store, workers)
        assert parallel.files == sequential.files
        assert list(parallel.files) == list(sequential.files)
    assert sequential.layer_count == len(plain)


def test_several_layers_are_really_read_at_the_same_time() -> None:
    big = os.urandom(3 << 20)
    layers = [tar_bytes([file(f"l{i}/f", big[i:] + big[:i])]) for i in range(4)]
    store = _MeetingStore(_image(layers), parties=4)
    listing = analyse_image(store, workers=4)
    assert len(store.threads) == 4
    for i in range(4):
        assert listing.files[f"/l{i}/f"].sha256 == hashlib.sha256(big[i:] + big[:i]).hexdigest()


def test_hard_links_to_lower_layers_resolve_as_when_read_in_order() -> None:
    lower = tar_bytes([file("a", b"lower a", 0o700, uid=3), file("d/x", b"x"), directory("dir")])
    upper = tar_bytes(
        [
            hardlink("b", "a"),  # Target in the lower layer: resolved when applied.
            hardlink("c", "b"),  # A link to that pending link.
            file("a", b"upper a"),  # Replacing the target later does not change b or c.
            hardlink("e", "a"),  # ... but a link made after it sees the new file.
            hardlink("f", "d/x"),
            whiteout("d/x"),  # A whiteout after the link does not hide the target from it.
        ]
    )
    for workers in (1, 3):
        files = _listing(_image([lower, upper]), workers).files
        lower_a = hashlib.sha256(b"lower a").hexdigest()
        assert (files["/b"].sha256, files["/b"].mode, files["/b"].uid) == (lower_a, 0o700, 3)
        assert files["/b"].link_target == "/a"
        assert files["/c"].sha256 == lower_a
        assert files["/c"].link_target == "/a"
        assert files["/a"].sha256 == hashlib.sha256(b"upper a").hexdigest()
        assert files["/e"].sha256 == files["/a"].sha256
        assert files["/f"].sha256 == hashlib.sha256(b"x").hexdigest()
        assert "/d/x" not in files
        assert files["/b"].layer == files["/c"].layer == 1


@pytest.mark.parametrize(
    "upper",
    [
        [whiteout("a"), hardlink("b", "a")],  # Hidden by a whiteout read before the link.
        [opaque("d"), hardlink("b", "d/x")],  # Hidden by an opaque directory.
        [hardlink("b", "dir")],  # A directory of the lower layer.
        [hardlink("b", "s")],  # A symlink of the lower layer.
        [hardlink("b", "nowhere")],
    ],
)
def test_bad_hard_links_to_lower_layers_are_malformed(upper: list) -> None:
    lower = tar_bytes([file("a", b"a"), file("d/x", b"x"), directory("dir"), symlink("s", "a")])
    for workers in (1, 2):
        with pytest.raises(ImageError) as info:
            _listing(_image([lower, tar_bytes(upper)]), workers)
        assert info.value.code == "image.malformed"
        assert "hard link /b" in info.value.message


def test_the_first_failing_layer_in_order_is_reported() -> None:
    good = tar_bytes([file("a", b"a" * 5000)])
    bad_diff_id = (compress(good, "gzip"), tar_bytes([file("other", b"")]), "gzip")
    corrupt = bytearray(compress(good, "gzip"))
    corrupt[30] ^= 0xFF
    layers = [(compress(good, "gzip"), good, "gzip"), bad_diff_id, (bytes(corrupt), good, "gzip")]
    store = _store(layers)
    # The corrupt blob's digest is recomputed by the store, so its error is "malformed".
    with pytest.raises(ImageError) as info:
        analyse_image(store, workers=3)
    assert info.value.code == "image.digest_mismatch"
    assert "layer 1 uncompresses" in info.value.message


def _gzip_members(plain: bytes, cuts: Sequence[int]) -> bytes:
    bounds = [0, *cuts, len(plain)]
    return b"".join(
        gzip.compress(plain[a:b], compresslevel=6, mtime=0) for a, b in itertools.pairwise(bounds)
    )


def test_concatenated_gzip_members_and_zero_padding_are_read_like_gzip_does() -> None:
    plain = tar_bytes([file(f"f{i}", os.urandom(700) * (i + 1)) for i in range(20)])
    assert gzip.decompress(_gzip_members(plain, [1000, 5000])) == plain  # The reference.
    for blob in (
        _gzip_members(plain, [1000, 5000]),
        _gzip_members(plain, [len(plain) // 2]) + bytes(1000),
        gzip.compress(plain[:3000]) + bytes(10) + gzip.compress(plain[3000:]),
    ):
        listing = analyse_image(_store([(blob, plain, "gzip")]), workers=1)
        assert {p: e.sha256 for p, e in listing.files.items()} == _reference_hashes(plain)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda blob: blob[:-9],  # Truncated inside the trailer.
        lambda blob: blob[: len(blob) // 2],  # Truncated inside the deflate stream.
        lambda blob: blob + b"garbage!",  # Something that is not a gzip member follows.
        lambda blob: blob[:-8] + b"\x00\x00\x00\x00" + blob[-4:],  # Wrong CRC-32.
        lambda blob: blob[:-4] + b"\x01\x00\x00\x00",  # Wrong length.
    ],
)
def test_broken_gzip_is_malformed(mangle) -> None:
    plain = tar_bytes([file("x", os.urandom(4000))])
    blob = mangle(gzip.compress(plain, mtime=0))
    with pytest.raises(ImageError) as info:
        analyse_image(_store([(blob, plain, "gzip")]))
    assert info.value.code == "image.malformed"
    assert "does not decompress" in info.value.message


_SIZES = st.sampled_from(
    [0, 1, 511, 512, 513, 4096, (1 << 20) - 3, 1 << 20, (1 << 20) + 700, 3 << 19]
)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(_SIZES, min_size=1, max_size=5),
    long_names=st.booleans(),
    compression=st.sampled_from(["none", "gzip", "zstd"]),
)
def test_file_hashes_match_tarfile_across_chunk_boundaries(
    sizes: list[int], long_names: bool, compression: str
) -> None:
    # Uncompressed layers are read in 1 MiB chunks after a 4-byte sniff, so headers and data
    # straddle chunk boundaries; long names add PAX headers.
    seed = os.urandom(1 << 16)
    entries = []
    for number, size in enumerate(sizes):
        name = ("d" * 120 + "/" if long_names else "") + f"f{number}"
        entries.append(file(name, (seed * (size // len(seed) + 1))[:size]))
    plain = tar_bytes(entries)
    store = _image([plain], compression)
    listing = analyse_image(store, workers=2)
    assert {p: e.sha256 for p, e in listing.files.items() if e.kind == "file"} == (
        _reference_hashes(plain)
    )
    assert all(listing.files[p].size == s for p, s in zip(
        (f"/{e.name}" for e in entries), sizes, strict=True
    ))  # fmt: skip


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_sparse_files_are_hashed_with_their_holes(tmp_path: Path, tar_format: str) -> None:
    tar = shutil.which("tar")
    if tar is None:  # pragma: no cover (GNU tar is part of every Debian system)
        pytest.fail("GNU tar is missing")
    content = bytes(3 << 20) + b"middle" + bytes(1 << 20) + b"end"
    sparse = tmp_path / "sparse.bin"
    with sparse.open("wb") as handle:
        handle.seek(3 << 20)
        handle.write(b"middle")
        handle.seek((3 << 20) + 6 + (1 << 20))
        handle.write(b"end")
    assert sparse.read_bytes() == content
    archive = tmp_path / "layer.tar"
    subprocess.run(
        [
            tar,
            "--sparse",
            f"--format={tar_format}",
            "-cf",
            str(archive),
            "-C",
            str(tmp_path),
            "sparse.bin",
        ],
        check=True,
    )
    plain = archive.read_bytes()
    assert len(plain) < len(content)  # The archive really stores holes.
    listing = analyse_image(
        _image([plain, tar_bytes([file("after", b"after")])], "gzip"), workers=2
    )
    entry = listing.files["/sparse.bin"]
    assert (entry.size, entry.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    assert listing.files["/after"].sha256 == hashlib.sha256(b"after").hexdigest()


def test_a_spooled_blob_reader_checks_the_size_but_trusts_the_content() -> None:
    data = b"spooled bytes"
    descriptor = Descriptor("application/octet-stream", digest_of(data), len(data))
    assert SpooledBlobReader(io.BytesIO(data), descriptor).readall() == data
    # Same size, other bytes: not re-hashed (the spool was verified as it was written).
    assert SpooledBlobReader(io.BytesIO(b"X" * len(data)), descriptor).readall() == b"X" * len(data)
    for wrong in (data[:-1], data + b"!"):
        with pytest.raises(ImageError) as info:
            SpooledBlobReader(io.BytesIO(wrong), descriptor).readall()
        assert info.value.code == "image.digest_mismatch"
    # An ordinary BlobReader does hash.
    with pytest.raises(ImageError):
        BlobReader(io.BytesIO(b"X" * len(data)), descriptor).readall()
