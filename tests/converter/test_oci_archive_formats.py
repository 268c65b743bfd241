"""oci-archive and gzip-compressed docker-archive: references, skopeo interop, safety.

skopeo is the independent implementation: it writes oci-archive and docker-archive tarballs
that Sanctum reads, and reads back what Sanctum writes, with identical digests.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from converter_images import BuiltImage, Skopeo, sha256

from sanctum.converter.analysis import analyse_image
from sanctum.converter.convert import ConvertRequest, convert
from sanctum.converter.errors import ImageError
from sanctum.converter.oci import (
    ArchiveReference,
    OciArchiveReference,
    copy_image,
    open_sink,
    open_source,
    parse_image_reference,
)
from sanctum.converter.oci.oci_archive import unpack_layout

LAUNCHER = b'#!/bin/sh\nexec "$@"\n'


def test_oci_archive_and_compressed_docker_archive_references() -> None:
    ref = parse_image_reference("oci-archive:/tmp/image.tar:v1")
    assert ref == OciArchiveReference(Path("/tmp/image.tar"), "v1")
    assert str(ref) == "oci-archive:/tmp/image.tar:v1"
    assert ref.transport == "oci-archive"
    assert parse_image_reference("oci-archive:image.tar") == OciArchiveReference(Path("image.tar"))
    archive = parse_image_reference("docker-archive:/tmp/image.tar.gz:app:1")
    assert archive == ArchiveReference(Path("/tmp/image.tar.gz"), "app:1")
    # "oci:" stays a layout directory.
    assert parse_image_reference("oci:/tmp/dir:t").transport == "oci"


@pytest.mark.registry
def test_an_oci_archive_written_by_skopeo_is_read_by_sanctum(
    busybox_image: BuiltImage, skopeo: Skopeo, tmp_path: Path
) -> None:
    archive = tmp_path / "skopeo-oci.tar"
    skopeo("copy", busybox_image.ref, f"oci-archive:{archive}:busy")
    with open_source(f"oci-archive:{archive}:busy") as source:
        assert source.manifest().raw == busybox_image.manifest
        listing = analyse_image(source)
        assert listing.files["/bin/busybox"].sha256 == sha256(Path("/bin/busybox").read_bytes())[7:]
    with pytest.raises(ImageError) as info:
        open_source(f"oci-archive:{archive}:absent-tag").manifest()
    assert info.value.code == "image.not_found"


@pytest.mark.registry
def test_a_conversion_to_an_oci_archive_is_read_by_skopeo_and_reproducible(
    busybox_image: BuiltImage, skopeo: Skopeo, tmp_path: Path
) -> None:
    source_archive = tmp_path / "in.tar"
    skopeo("copy", busybox_image.ref, f"oci-archive:{source_archive}:in")
    outputs = []
    for name in ("out.tar", "again.tar"):
        target = f"oci-archive:{tmp_path / name}:shielded"
        request = ConvertRequest.model_validate(
            {"inputImageName": f"oci-archive:{source_archive}:in", "outputImageName": target,
             "debug": True}
        )  # fmt: skip
        with open_source(request.input_image_name) as source, open_sink(target) as sink:
            response = convert(
                request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None
            )
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]  # Same input and options: the same tarball, byte for byte.
    raw = skopeo("inspect", "--raw", f"oci-archive:{tmp_path / 'out.tar'}:shielded")
    assert sha256(raw.encode()) == response.image_digest
    skopeo("copy", f"oci-archive:{tmp_path / 'out.tar'}:shielded", f"oci:{tmp_path / 'copy'}:c")
    with open_source(f"oci:{tmp_path / 'copy'}:c") as copy:
        assert copy.manifest().digest == response.image_digest
        assert copy.manifest().layers[:-1] == open_source(busybox_image.ref).manifest().layers


@pytest.mark.registry
def test_a_gzipped_docker_archive_round_trips_with_skopeo(
    busybox_image: BuiltImage, skopeo: Skopeo, tmp_path: Path
) -> None:
    plain = tmp_path / "saved.tar"
    skopeo("copy", busybox_image.ref, f"docker-archive:{plain}:example/busybox:1")
    gzipped = tmp_path / "saved.tar.gz"
    gzipped.write_bytes(gzip.compress(plain.read_bytes()))  # docker save | gzip
    with open_source(f"docker-archive:{gzipped}") as source:
        manifest = source.manifest()
        assert manifest.config.digest == busybox_image.config_digest
        assert [layer.digest for layer in manifest.layers] == busybox_image.diff_ids
        # Written gzip-compressed as a whole because of the name; skopeo reads it back.
        out = tmp_path / "copied.tar.gz"
        with open_sink(f"docker-archive:{out}:app:1") as sink:
            copy_image(source, sink)
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    with gzip.open(out) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        names = [member.name for member in tar]
    assert "manifest.json" in names
    # skopeo (and podman load) read docker-archives uncompressed only (docker load also reads
    # compressed ones, but Docker is not available here): give skopeo the decompressed tarball.
    unzipped = tmp_path / "copied.tar"
    unzipped.write_bytes(gzip.decompress(out.read_bytes()))
    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{unzipped}"))
    assert raw["config"]["digest"] == busybox_image.config_digest
    assert [layer["digest"] for layer in raw["layers"]] == busybox_image.diff_ids
    # Deterministic compression: the same image gives the same bytes.
    again = tmp_path / "again.tgz"
    with (
        open_source(f"docker-archive:{gzipped}") as source,
        open_sink(f"docker-archive:{again}:app:1") as sink,
    ):
        copy_image(source, sink)
    assert again.read_bytes() == out.read_bytes()


def _tar(path: Path, entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for info in entries:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_unpacking_an_oci_archive_takes_only_the_layout_and_refuses_links(tmp_path: Path) -> None:
    blob = "blobs/sha256/" + "a" * 64
    evil = tmp_path / "evil.tar"
    _tar(
        evil,
        [
            _entry("../escaped"),
            _entry("/etc/absolute"),
            _entry("./oci-layout"),
            _entry("index.json"),
            _entry("blobs/sha256/not-a-digest"),
            _entry(blob),
        ],
        {
            "../escaped": b"x",
            "/etc/absolute": b"x",
            "./oci-layout": b"{}",
            "index.json": b"{}",
            "blobs/sha256/not-a-digest": b"x",
            blob: b"blob",
        },
    )
    root = tmp_path / "unpacked" / "layout"
    unpack_layout(evil, root)
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert found == [blob, "index.json", "oci-layout"]
    assert not (tmp_path / "unpacked" / "escaped").exists()

    linked = tmp_path / "linked.tar"
    _tar(linked, [_entry("index.json", tarfile.SYMTYPE, "/etc/passwd")], {})
    with pytest.raises(ImageError) as info:
        unpack_layout(linked, tmp_path / "linked")
    assert info.value.code == "image.malformed"

    empty = tmp_path / "empty.tar"
    _tar(empty, [_entry("oci-layout")], {"oci-layout": b"{}"})
    with pytest.raises(ImageError, match=r"no index\.json"):
        unpack_layout(empty, tmp_path / "empty")
    with pytest.raises(ImageError) as info:
        open_source(f"oci-archive:{tmp_path / 'absent.tar'}")
    assert info.value.code == "image.not_found"
    (tmp_path / "junk.tar").write_bytes(b"not a tarball at all" * 100)
    with pytest.raises(ImageError) as info:
        open_source(f"oci-archive:{tmp_path / 'junk.tar'}")
    assert info.value.code == "image.malformed"


def test_a_corrupt_gzipped_docker_archive_is_refused(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(b"\0" * 10240))
    data[-6] ^= 0xFF  # The CRC-32 of the gzip trailer.
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(bytes(data))
    with pytest.raises(ImageError) as info:
        open_source(f"docker-archive:{broken}")
    assert info.value.code == "image.malformed"


def _sha256sum(tool: str, paths: list[Path]) -> dict[str, str]:
    """Return the hex SHA-256 of each file by name, computed by coreutils' ``sha256sum``."""
    out = subprocess.run([tool, "--", *map(str, paths)], check=True, capture_output=True, text=True)
    sums = {}
    for line in out.stdout.splitlines():
        digest, _, name = line.partition("  ")
        sums[Path(name).name] = digest
    return sums


def test_a_converted_gzipped_docker_archive_is_read_by_gnu_tar_and_sha256sum(
    busybox_image: BuiltImage, require_tool: Callable[..., str], tmp_path: Path
) -> None:
    tar_tool, sum_tool = require_tool("tar"), require_tool("sha256sum", package="coreutils")
    outputs = []
    for name in ("shielded.tar.gz", "again.tar.gz"):
        target = f"docker-archive:{tmp_path / name}:app:1"
        request = ConvertRequest.model_validate(
            {"inputImageName": busybox_image.ref, "outputImageName": target, "debug": True}
        )
        with open_source(busybox_image.ref) as source, open_sink(target) as sink:
            response = convert(
                request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None
            )
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]  # Reproducible, compression included.
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    # GNU tar and gzip, not Python's tarfile: an independent reader of the whole format.
    subprocess.run([tar_tool, "-xzf", str(tmp_path / "shielded.tar.gz"), "-C", str(unpacked)],
                   check=True)  # fmt: skip
    [entry] = json.loads((unpacked / "manifest.json").read_bytes())
    assert entry["RepoTags"] == ["app:1"]
    files = [unpacked / entry["Config"], *(unpacked / layer for layer in entry["Layers"])]
    sums = _sha256sum(sum_tool, files)
    # Every blob is named by its digest, and that digest is what sha256sum computes.
    assert all(sums[path.name] == path.name.partition(".")[0] for path in files)
    assert f"sha256:{sums[entry['Config']]}" == response.config_digest
    config = json.loads((unpacked / entry["Config"]).read_bytes())
    diff_ids = [f"sha256:{sums[layer]}" for layer in entry["Layers"]]
    assert config["rootfs"]["diff_ids"] == diff_ids
    assert diff_ids[:-1] == busybox_image.diff_ids  # The original layers, unchanged.
    assert config["config"]["Entrypoint"] == ["/sanctum/launcher"]
    # The runtime layer (last) holds the signed manifest, readable by GNU tar as well.
    listing = subprocess.run([tar_tool, "-tf", str(unpacked / entry["Layers"][-1])],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert "sanctum/manifest.json" in listing.split()
