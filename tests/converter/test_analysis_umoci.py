"""Differential test: the streamed analysis agrees with umoci's real unpacking."""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from converter_images import (
    LAYERED_COMPRESSION,
    BuiltImage,
    TarEntry,
    build_image,
    directory,
    file,
    hardlink,
    layered_entries,
    opaque,
    symlink,
    whiteout,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanctum.converter.analysis import FileEntry, analyse_image
from sanctum.converter.oci import open_source


def _walk(rootfs: Path) -> dict[str, tuple[str, int, int, int, str | None, str | None]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            rel = "/" + str(path.relative_to(rootfs))
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("symlink", mode, info.st_uid, info.st_gid, None, str(path.readlink()))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", mode, info.st_uid, info.st_gid, None, None)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", mode, info.st_uid, info.st_gid, digest, None)
    return out


def _ours(entry: FileEntry) -> tuple[str, int, int, int, str | None, str | None]:
    kind = "file" if entry.kind == "hardlink" else entry.kind
    link = entry.link_target if entry.kind == "symlink" else None
    mode = 0o777 if entry.kind == "symlink" else entry.mode
    return (kind, mode, entry.uid, entry.gid, entry.sha256, link)


def _compare(image: BuiltImage, tmp_path: Path, umoci: str) -> None:
    bundle = tmp_path / "bundle"
    result = subprocess.run(
        [umoci, "unpack", "--image", f"{image.layout}:{image.tag}", str(bundle)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    theirs = _walk(bundle / "rootfs")
    with open_source(image.ref) as source:
        listing = analyse_image(source)
    ours = {path: _ours(entry) for path, entry in listing.files.items()}
    assert ours == theirs


@pytest.fixture
def umoci(require_tool: Callable[..., str]) -> str:
    if os.geteuid() != 0:
        pytest.skip("umoci unpack keeps ownership only as root")
    return require_tool("umoci")


def test_layered_image_matches_umoci(tmp_path: Path, umoci: str, require_tool):
    require_tool("/bin/busybox", package="busybox-static")
    # Debian's umoci reads no zstd layers: same image, gzip instead.
    compression = ["gzip" if c == "zstd" else c for c in LAYERED_COMPRESSION]
    image = build_image(tmp_path / "img", layered_entries(), compression=compression)
    _compare(image, tmp_path, umoci)


def test_changeset_rules_match_umoci(tmp_path: Path, umoci: str):
    layers = [
        [
            directory("a"),
            directory("a/b"),
            file("a/b/c", b"c"),
            file("a/x", b"x", 0o640, uid=5, gid=6),
            directory("d"),
            file("d/1", b"1"),
            directory("t"),
            file("t/leaf", b"leaf"),
            symlink("s", "a/x"),
        ],
        [
            whiteout("a/b"),
            file("d/2", b"2"),
            opaque("d"),
            file("t", b"file replaces dir"),
            hardlink("h", "a/x"),
            file("deep/er/file", b"implied parents", 0o700),
        ],
        [file("a/b", b"back as a file"), whiteout("s"), symlink("s2", "/abs/target")],
    ]
    image = build_image(tmp_path / "img", layers, compression=["gzip", "gzip", "none"])
    _compare(image, tmp_path, umoci)


_NAMES = ("a", "b", "c")
_PATHS = [
    "/".join(parts) for depth in (1, 2, 3) for parts in itertools.product(_NAMES, repeat=depth)
]


@st.composite
def _layer(draw: st.DrawFn) -> list[TarEntry]:
    """One layer of random changes that the OCI spec gives a single meaning to.

    Every entry's parents are listed as directories first; a path is created or whited out in
    a layer, never both; opaque markers come right after their directory; hard links point to a
    file written earlier in the same layer.
    """
    chosen = draw(st.lists(st.sampled_from(_PATHS), min_size=1, max_size=6, unique=True))
    # Drop paths whose ancestor is also chosen as a non-directory operation target.
    ops: dict[str, str] = {}
    for path in sorted(chosen, key=lambda p: p.count("/")):
        if any(path.startswith(other + "/") for other in ops if ops[other] != "dir"):
            continue
        ops[path] = draw(st.sampled_from(["file", "file", "dir", "symlink", "whiteout", "opaque"]))
    entries: list[TarEntry] = []
    dirs_done: set[str] = set()
    files: list[str] = []

    def parents(path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in dirs_done and ops.get(parent) in {None, "dir", "opaque"}:
                dirs_done.add(parent)
                entries.append(directory(parent, draw(st.sampled_from([0o755, 0o700]))))

    for path, op in ops.items():
        parents(path)
        if op in {"dir", "opaque"}:
            if path not in dirs_done:
                dirs_done.add(path)
                entries.append(directory(path))
            if op == "opaque":
                entries.append(opaque(path))
        elif op == "whiteout":
            entries.append(whiteout(path))
        elif op == "symlink":
            entries.append(symlink(path, draw(st.sampled_from(["a", "../b", "/c/a"]))))
        elif files and draw(st.booleans()):
            entries.append(hardlink(path, draw(st.sampled_from(files))))
        else:
            data = draw(st.binary(max_size=20))
            entries.append(file(path, data, draw(st.sampled_from([0o644, 0o600, 0o755]))))
            files.append(path)
    return entries


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(layers=st.lists(_layer(), min_size=1, max_size=4))
def test_random_changesets_match_umoci(layers, tmp_path_factory, umoci: str):
    tmp = tmp_path_factory.mktemp("random")
    image = build_image(tmp / "img", layers, compression="none")
    _compare(image, tmp, umoci)
