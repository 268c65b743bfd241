"""Robustness: arbitrary (correctly digested) layer bytes give a listing or an ImageError."""

from __future__ import annotations

import json

from converter_images import compress, file, hardlink, symlink, tar_bytes, whiteout
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.converter.analysis import analyse_image
from sanctum.converter.errors import ImageError
from sanctum.converter.oci import Manifest, MemoryImageStore
from sanctum.converter.oci.model import OCI_CONFIG, digest_of

_SEED = tar_bytes(
    [
        file("a/b", b"hello" * 50),
        symlink("a/s", "b"),
        hardlink("a/h", "a/b"),
        whiteout("x/y"),
        file("long/" + "n" * 150, b"pax"),
    ]
)
_MEDIA = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def _store(plain: bytes, compression: str) -> MemoryImageStore:
    store = MemoryImageStore()
    blob = compress(plain, compression)  # type: ignore[arg-type]
    layer = store.add_blob(blob, _MEDIA[compression])
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(plain)]},
        }
    ).encode()
    manifest = Manifest.build(store.add_blob(config, OCI_CONFIG), [layer])
    store.put_manifest(manifest.raw, manifest.media_type)
    return store


@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_SEED) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.integers(0, len(_SEED)),
    compression=st.sampled_from(["none", "gzip", "zstd"]),
)
def test_corrupted_tar_streams_fail_cleanly(edits, cut, compression):
    data = bytearray(_SEED[: max(cut, 1)])
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    try:
        listing = analyse_image(_store(bytes(data), compression))
    except ImageError as exc:
        codes = {"image.malformed", "image.digest_mismatch"}
        assert exc.code in codes  # noqa: PT017 (the property is "ImageError or a listing")
    else:
        assert all(path.startswith("/") and ".." not in path.split("/") for path in listing.files)
