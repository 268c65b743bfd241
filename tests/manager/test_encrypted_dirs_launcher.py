"""The launcher's encrypted-directory step: Gramine key provisioning, FUSE mounts, refusals.

These tests drive :func:`sanctum.launcher.encrypted.open_encrypted_dirs` directly (the full
sequence with a real manager is in ``test_encrypted_dirs_e2e.py``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sanctum.encfs import EncfsUsageError, EncryptedDirectory, derive_gramine_key, fuse_available
from sanctum.encfs.gramine import gramine_key_name
from sanctum.errors import EvidenceError
from sanctum.launcher import encrypted
from sanctum.launcher.encrypted import GRAMINE_KEY_NAME, open_encrypted_dirs
from sanctum.launcher.errors import LauncherConfigError
from sanctum.protocol.messages import DirectoryKey

KEY = bytes(range(32))


def _key(path: str, key: bytes = KEY) -> DirectoryKey:
    return DirectoryKey(path=path, version=1, key=key)


def test_gramine_keys_are_derived_and_provisioned_per_directory(tmp_path):
    keys_root = tmp_path / "keys"
    keys_root.mkdir()
    other = bytes(32)
    names = {path: gramine_key_name(path) for path in ("/data", "/var/lib/db")}
    assert len(set(names.values())) == 2
    assert all(name.startswith(GRAMINE_KEY_NAME + "_") for name in names.values())
    for name in names.values():
        (keys_root / name).write_bytes(b"")
    lines: list[str] = []
    opened = open_encrypted_dirs(
        tmp_path,
        ("/data", "/var/lib/db"),
        {"/data": _key("/data"), "/var/lib/db": _key("/var/lib/db", other)},
        gramine=True,
        owner=None,
        log=lines.append,
        gramine_keys_root=keys_root,
    )
    assert [(o.path, o.mode, o.key_name) for o in opened] == [
        ("/data", "gramine", names["/data"]),
        ("/var/lib/db", "gramine", names["/var/lib/db"]),
    ]
    # Two directories, two keys, each under the name the converter wrote for its path.
    assert (keys_root / names["/data"]).read_bytes() == derive_gramine_key(KEY, names["/data"])
    assert (keys_root / names["/var/lib/db"]).read_bytes() == derive_gramine_key(
        other, names["/var/lib/db"]
    )
    assert "keys provisioned to Gramine" in lines[-1]
    assert not (tmp_path / "data").exists()  # Gramine encrypts; the launcher mounts nothing.


def test_gramine_names_match_the_converted_manifest():
    from sanctum.converter.gramine import GramineOptions  # noqa: PLC0415

    # The converter writes gramine_key_name(path) with no option to change the prefix, the
    # launcher provisions the same names: the two cannot disagree.
    assert not any("key_name" in name for name in GramineOptions.__dataclass_fields__)
    assert gramine_key_name("/data").startswith(GRAMINE_KEY_NAME + "_")
    assert gramine_key_name("/data/") == gramine_key_name("/data")
    assert gramine_key_name("/data") != gramine_key_name("/data2")


def test_gramine_key_name_is_refused_when_reserved():
    with pytest.raises(EncfsUsageError):
        gramine_key_name("/data", prefix="_sgx")


def test_a_directory_without_a_released_key_is_refused(tmp_path):
    with pytest.raises(EvidenceError) as raised:
        open_encrypted_dirs(
            tmp_path, ("/data", "/db"), {"/data": _key("/data")}, gramine=False, owner=None,
            log=print,
        )  # fmt: skip
    assert raised.value.code == "launcher.encrypted_dir_key_missing"
    assert "/db" in raised.value.message


def test_without_fuse_the_launcher_refuses_rather_than_write_plaintext(tmp_path, monkeypatch):
    monkeypatch.setattr(encrypted, "fuse_available", lambda: "/dev/fuse is missing")
    with pytest.raises(LauncherConfigError) as raised:
        open_encrypted_dirs(
            tmp_path, ("/data",), {"/data": _key("/data")}, gramine=False, owner=None, log=print
        )
    assert raised.value.code == "launcher.encrypted_dir_unavailable"
    assert not (tmp_path / "data").exists()


def test_no_encrypted_dirs_is_a_no_op(tmp_path):
    assert open_encrypted_dirs(tmp_path, (), {}, gramine=False, owner=None, log=print) == []


def test_fuse_mount_over_the_directory_keeps_the_host_copy_encrypted(tmp_path):
    reason = fuse_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {reason}")
        pytest.skip(reason)
    lines: list[str] = []
    [opened] = open_encrypted_dirs(
        tmp_path, ("/data",), {"/data": _key("/data")}, gramine=False, owner=None,
        log=lines.append,
    )  # fmt: skip
    assert opened.mount is not None
    data = tmp_path / "data"
    try:
        assert os.path.ismount(data)
        (data / "hello.txt").write_bytes(b"PLAINTEXT-MARKER")
    finally:
        opened.mount.unmount()
    deadline = time.monotonic() + 10
    while os.path.ismount(data) and time.monotonic() < deadline:
        time.sleep(0.05)
    host = [p.read_bytes() for p in Path(data).rglob("*") if p.is_file()]
    assert host
    assert all(b"PLAINTEXT-MARKER" not in blob for blob in host)
    with EncryptedDirectory.open(data, KEY, writable=False) as directory:
        assert directory.read("/hello.txt", 0, 100) == b"PLAINTEXT-MARKER"
    assert "mounted (FUSE, key version 1)" in lines[0]
