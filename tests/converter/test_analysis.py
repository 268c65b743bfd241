"""The final filesystem computed from layers without unpacking them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from converter_images import (
    TarEntry,
    build_image,
    busybox_entries,
    compress,
    directory,
    file,
    hardlink,
    opaque,
    replace_config,
    replace_manifest,
    sha256,
    symlink,
    tar_bytes,
    whiteout,
)

from sanctum.converter.analysis import analyse_image
from sanctum.converter.errors import ImageError
from sanctum.converter.oci import open_source


def _analyse(image_ref: str):
    with open_source(image_ref) as source:
        return analyse_image(source)


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_busybox_scratch_image(tmp_path: Path, require_tool):
    require_tool("/bin/busybox", package="busybox-static")
    image = build_image(tmp_path / "img", [busybox_entries()])
    listing = _analyse(image.ref)
    busybox = listing.files["/bin/busybox"]
    assert busybox.kind == "file"
    assert busybox.mode == 0o755
    assert busybox.sha256 == _hex(Path("/bin/busybox").read_bytes())
    assert busybox.size == Path("/bin/busybox").stat().st_size
    assert listing.files["/bin/sh"].kind == "symlink"
    assert listing.files["/bin/sh"].link_target == "busybox"
    assert listing.files["/bin/sh"].sha256 is None
    assert listing.config.entrypoint == ("/bin/sh",)
    assert listing.config.cmd == ("-c", "echo hello")
    assert listing.manifest_digest == image.manifest_digest
    assert list(listing.files) == sorted(listing.files)


def test_whiteouts_opaque_dirs_and_replacement_in_order(tmp_path: Path):
    base = [
        directory("app"),
        file("app/keep.txt", b"keep"),
        file("app/gone.txt", b"gone"),
        directory("app/sub"),
        file("app/sub/deep.txt", b"deep"),
        directory("data"),
        file("data/old1", b"1"),
        file("data/old2", b"2"),
        directory("tree"),
        file("tree/leaf", b"leaf"),
    ]
    upper = [
        whiteout("app/gone.txt"),
        whiteout("app/sub"),
        # The opaque marker hides lower content even though it comes after a new file.
        file("data/new", b"new"),
        opaque("data"),
        # A file replacing a directory removes the directory's subtree.
        file("tree", b"now a file"),
    ]
    top = [file("app/sub", b"resurrected as a file", 0o600, uid=7, gid=8)]
    image = build_image(tmp_path / "img", [base, upper, top])
    files = _analyse(image.ref).files
    assert "/app/gone.txt" not in files
    assert "/app/sub/deep.txt" not in files
    assert files["/app/keep.txt"].sha256 == _hex(b"keep")
    assert files["/app/sub"].kind == "file"
    assert (files["/app/sub"].mode, files["/app/sub"].uid, files["/app/sub"].gid) == (0o600, 7, 8)
    assert files["/app/sub"].layer == 2
    assert sorted(p for p in files if p.startswith("/data/")) == ["/data/new"]
    assert files["/data"].kind == "dir"
    assert files["/tree"].kind == "file"
    assert "/tree/leaf" not in files
    assert not any(".wh." in p for p in files)


def test_hard_links_symlinks_and_implied_parents(tmp_path: Path):
    lower = [file("usr/bin/tool", b"#!tool", 0o755), symlink("usr/bin/alias", "/usr/bin/tool")]
    upper = [
        hardlink("usr/bin/tool2", "usr/bin/tool"),  # Target in a lower layer.
        file("opt/x/y/z", b"z"),  # No directory entries for the parents.
        hardlink("opt/x/y/z2", "./opt/x/y/z"),
        symlink("opt/dangling", "../nowhere"),
    ]
    files = _analyse(build_image(tmp_path / "img", [lower, upper]).ref).files
    tool2 = files["/usr/bin/tool2"]
    assert tool2.kind == "hardlink"
    assert tool2.link_target == "/usr/bin/tool"
    assert (tool2.sha256, tool2.size) == (_hex(b"#!tool"), 6)
    assert files["/opt/x/y/z2"].link_target == "/opt/x/y/z"
    assert files["/usr/bin/alias"].link_target == "/usr/bin/tool"
    assert files["/opt/dangling"].link_target == "../nowhere"
    for parent in ("/opt", "/opt/x", "/opt/x/y", "/usr", "/usr/bin"):
        assert files[parent].kind == "dir"
        assert files[parent].layer == -1


def test_empty_layers_zstd_and_uncompressed(tmp_path: Path):
    layers = [
        [file("a", b"gzip layer")],
        [],  # An empty tar (end-of-archive blocks only).
        b"",  # A zero-byte layer, as some builders emit.
        [file("b", b"zstd layer")],
        [file("c", b"plain layer")],
    ]
    image = build_image(
        tmp_path / "img", layers, compression=["gzip", "gzip", "none", "zstd", "none"]
    )
    listing = _analyse(image.ref)
    assert listing.layer_count == 5
    assert {p: e.sha256 for p, e in listing.files.items()} == {
        "/a": _hex(b"gzip layer"),
        "/b": _hex(b"zstd layer"),
        "/c": _hex(b"plain layer"),
    }


def test_docker_media_types_and_multi_arch(tmp_path: Path):
    image = build_image(
        tmp_path / "img", [[file("hello", b"docker")]], docker=True, multi_arch=True
    )
    listing = _analyse(image.ref)
    assert listing.files["/hello"].sha256 == _hex(b"docker")
    assert listing.config.architecture == "amd64"
    assert listing.manifest_digest == image.manifest_digest


def _corrupt(path: Path, offset: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_corrupt_layer_is_refused(tmp_path: Path):
    image = build_image(tmp_path / "img", [[file("x", b"x" * 1000)]])
    blob = image.layout / "blobs" / "sha256" / image.layers[0]["digest"][7:]
    _corrupt(blob)
    with pytest.raises(ImageError) as info:
        _analyse(image.ref)
    assert info.value.code in {"image.digest_mismatch", "image.malformed"}


def test_layer_not_matching_diff_id_is_refused(tmp_path: Path):
    image = build_image(tmp_path / "img", [[file("x", b"x")]])
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"] = [sha256(b"something else")]
    replace_config(image, config)
    with pytest.raises(ImageError) as info:
        _analyse(image.ref)
    assert info.value.code == "image.digest_mismatch"
    assert "diff_id" in info.value.message


def test_paths_cannot_escape_the_root(tmp_path: Path):
    image = build_image(tmp_path / "img", [[file("../../etc/evil", b"x"), file("/abs", b"y")]])
    files = _analyse(image.ref).files
    assert set(files) == {"/etc", "/etc/evil", "/abs"}


def test_hard_link_to_missing_file_is_malformed(tmp_path: Path):
    image = build_image(tmp_path / "img", [[hardlink("a", "does/not/exist")]])
    with pytest.raises(ImageError) as info:
        _analyse(image.ref)
    assert info.value.code == "image.malformed"


def test_compression_not_matching_media_type_is_refused(tmp_path: Path):
    image = build_image(tmp_path / "img", [[file("x", b"x")]], compression="zstd")
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    replace_manifest(image, manifest)
    with pytest.raises(ImageError) as info:
        _analyse(image.ref)
    assert info.value.code == "image.malformed"


def test_not_a_tar_stream_is_malformed(tmp_path: Path):
    image = build_image(tmp_path / "img", [compress(b"not a tar at all" * 100, "none")])
    with pytest.raises(ImageError) as info:
        _analyse(image.ref)
    assert info.value.code == "image.malformed"


def test_unsupported_layer_media_type(tmp_path: Path):
    image = build_image(tmp_path / "img", [tar_bytes([file("x", b"x")])], compression="none")
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["mediaType"] = "application/vnd.example.weird"
    replace_manifest(image, manifest)
    with pytest.raises(ImageError) as info:
        _analyse(image.ref)
    assert info.value.code == "image.unsupported_media_type"


def test_extended_attributes_are_recorded(tmp_path: Path):
    capability = bytes.fromhex("0100000200100000000000000000000000000000")  # cap_net_bind_service
    layers = [
        [
            TarEntry(
                "bin/server",
                "file",
                b"srv",
                0o755,
                xattrs=(
                    ("security.capability", capability),
                    ("user.note", b"hi"),
                ),
            ),
            hardlink("bin/server2", "bin/server"),
            file("plain", b"p"),
        ]
    ]
    files = _analyse(build_image(tmp_path / "img", layers).ref).files
    assert files["/bin/server"].xattrs == {"security.capability": capability, "user.note": b"hi"}
    assert files["/bin/server2"].xattrs == files["/bin/server"].xattrs
    assert files["/plain"].xattrs == {}
