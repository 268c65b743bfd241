"""The deterministic runtime layer."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from sanctum.converter.manifest_errors import BuildOptionError
from sanctum.converter.runtime_layer import EXEC_MODE, RuntimeFile, build_runtime_layer

FILES = [
    RuntimeFile("/sanctum/manifest.json", b'{"schema":"x"}'),
    RuntimeFile("/sanctum/launcher", b"\x7fELF...", mode=EXEC_MODE),
    RuntimeFile("/sanctum/manifest.sigstruct", bytes(1808)),
]


def test_layer_is_deterministic_and_order_independent() -> None:
    a = build_runtime_layer(FILES)
    b = build_runtime_layer(list(reversed(FILES)))
    assert a == b
    assert a.digest == "sha256:" + hashlib.sha256(a.blob).hexdigest()
    assert a.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(a.blob)).hexdigest()
    assert a.size == len(a.blob)


def test_gzip_header_has_no_name_and_no_time() -> None:
    blob = build_runtime_layer(FILES).blob
    assert blob[:2] == b"\x1f\x8b"
    flags, mtime = blob[3], blob[4:8]
    assert flags & 0x08 == 0  # FNAME not set.
    assert mtime == b"\x00\x00\x00\x00"


def test_tar_entries_are_sorted_and_pinned() -> None:
    layer = build_runtime_layer(FILES)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.blob))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [
            "sanctum",
            "sanctum/launcher",
            "sanctum/manifest.json",
            "sanctum/manifest.sigstruct",
        ]
        for member in members:
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
                0,
                0,
                0,
                "",
                "",
            )
            assert not member.pax_headers
        assert members[0].isdir()
        assert members[0].mode == 0o755
        assert members[1].mode == 0o755
        assert members[2].mode == 0o644
        launcher = tar.extractfile("sanctum/launcher")
        assert launcher is not None
        assert launcher.read() == b"\x7fELF..."


def test_content_changes_change_the_digest() -> None:
    other = [*FILES[:2], RuntimeFile("/sanctum/manifest.sigstruct", b"\x01" * 1808)]
    assert build_runtime_layer(FILES).digest != build_runtime_layer(other).digest


@pytest.mark.parametrize(
    "files",
    [
        [RuntimeFile("relative", b"")],
        [RuntimeFile("/a/../b", b"")],
        [RuntimeFile("/", b"")],
        [RuntimeFile("/a", b""), RuntimeFile("/a", b"")],
        [RuntimeFile("/a", b""), RuntimeFile("/a/b", b"")],
        [RuntimeFile("/" + "x" * 300, b"")],
    ],
)
def test_bad_paths_are_refused(files: list[RuntimeFile]) -> None:
    with pytest.raises(BuildOptionError):
        build_runtime_layer(files)


def test_gnu_tar_reads_the_layer(tmp_path: Path, require_tool) -> None:
    tar = require_tool("tar")
    layer = build_runtime_layer(FILES)
    (tmp_path / "layer.tar.gz").write_bytes(layer.blob)
    listing = subprocess.run(
        [tar, "-tvzf", str(tmp_path / "layer.tar.gz")], check=True, capture_output=True, text=True
    ).stdout
    assert "sanctum/launcher" in listing
    assert "1970-01-01" in listing


def test_streamed_layer_counts_the_whole_tar() -> None:
    """The tar is compressed as it is written; its size and digest are of the full stream."""
    big = [*FILES, RuntimeFile("/sanctum/launcher.d/lib/libbig.so", bytes(range(256)) * 40000)]
    layer = build_runtime_layer(big)
    raw = gzip.decompress(layer.blob)
    assert layer.tar_size == len(raw)
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
        assert names == sorted(names)
        member = tar.getmember("sanctum/launcher.d/lib/libbig.so")
        assert member.size == 256 * 40000
        assert tar.getmember("sanctum/launcher.d/lib").isdir()
