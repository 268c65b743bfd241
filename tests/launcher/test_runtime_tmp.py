"""The runtime layer gives scratch images an empty /tmp (mode 1777), reproducibly."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import tarfile

import pytest

from sanctum.converter.keys import debug_signing_key
from sanctum.converter.manifest import EnclaveManifest, EnclaveSpec, ManagerSpec, sign_manifest
from sanctum.converter.manifest_errors import BuildOptionError
from sanctum.converter.runtime_layer import (
    EXEC_MODE,
    MANIFEST_PATH,
    SCRATCH_TMP,
    RuntimeDirectory,
    RuntimeFile,
    build_runtime_layer,
    default_directories,
)

LAUNCHER = RuntimeFile("/sanctum/launcher", b"\x7fELF launcher", mode=EXEC_MODE)
BASE = EnclaveManifest(
    target="simulated",
    app="bank",
    entrypoint=("/app",),
    args=(),
    workdir="/",
    user="",
    env={},
    allow_cmdline_args=False,
    host_env_passthrough=(),
    encrypted_dirs=(),
    rw_dirs=("/tmp",),
    enclave=EnclaveSpec(size=1 << 30, threads=4, debug=True, isvprodid=0, isvsvn=0),
    trusted_files={"/app": hashlib.sha256(b"app").hexdigest()},
    manager=ManagerSpec(url=None, ca_pin=None),
)


def _files(manifest: EnclaveManifest) -> list[RuntimeFile]:
    signed = sign_manifest(manifest, key=debug_signing_key(), date=dt.date(2026, 1, 1))
    return [RuntimeFile(MANIFEST_PATH, signed.manifest_bytes), LAUNCHER]


def _members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_an_image_without_tmp_gets_an_empty_sticky_tmp():
    layer = build_runtime_layer(_files(BASE))
    members = _members(layer.blob)
    assert list(members) == ["sanctum", "sanctum/launcher", "sanctum/manifest.json", "tmp"]
    tmp = members["tmp"]
    assert tmp.isdir()
    assert tmp.mode == 0o1777
    assert (tmp.mtime, tmp.uid, tmp.gid, tmp.uname, tmp.gname) == (0, 0, 0, "", "")
    # Reproducible: the same files give the same bytes, whatever their order.
    assert build_runtime_layer(list(reversed(_files(BASE)))).digest == layer.digest


@pytest.mark.parametrize(
    "change",
    [
        {"symlinks": {"/tmp": "var/tmp"}},
        {"trusted_files": {"/tmp": hashlib.sha256(b"odd").hexdigest()}},
    ],
    ids=["tmp-is-a-symlink", "tmp-is-a-file"],
)
def test_a_non_directory_tmp_of_the_image_is_left_alone(change):
    manifest = dataclasses.replace(BASE, **change)
    assert default_directories(_files(manifest)) == ()
    assert "tmp" not in _members(build_runtime_layer(_files(manifest)).blob)


def test_without_a_manifest_nothing_is_known_and_nothing_is_added():
    assert default_directories([LAUNCHER]) == ()
    assert default_directories([RuntimeFile(MANIFEST_PATH, b"{}"), LAUNCHER]) == ()
    assert "tmp" not in _members(build_runtime_layer([LAUNCHER]).blob)


def test_explicit_directories_override_the_default():
    files = _files(BASE)
    assert "tmp" not in _members(build_runtime_layer(files, directories=()).blob)
    cache = RuntimeDirectory("/var/cache/app", 0o700)
    members = _members(build_runtime_layer(files, directories=(cache, SCRATCH_TMP)).blob)
    assert members["var/cache/app"].mode == 0o700
    assert members["var"].mode == EXEC_MODE
    assert members["tmp"].mode == 0o1777


def test_a_directory_cannot_also_be_a_file_or_be_given_twice():
    with pytest.raises(BuildOptionError, match="both a file and a directory"):
        build_runtime_layer(
            [RuntimeFile("/tmp", b"x")], directories=(RuntimeDirectory("/tmp", 0o1777),)
        )
    with pytest.raises(BuildOptionError, match="given twice"):
        build_runtime_layer([LAUNCHER], directories=(SCRATCH_TMP, SCRATCH_TMP))
    with pytest.raises(BuildOptionError, match="both a file and a directory"):
        build_runtime_layer(
            [RuntimeFile("/tmp/x", b"x")], directories=(RuntimeDirectory("/tmp/x"),)
        )
