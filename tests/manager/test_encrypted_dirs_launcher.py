"""The launcher's encrypted-directory step: Gramine key provisioning, FUSE mounts, refusals.

These tests drive :func:`sanctum.launcher.encrypted.open_encrypted_dirs` directly (the full
sequence with a real manager is in ``test_encrypted_dirs_e2e.py``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sanctum.encfs import EncryptedDirectory, derive_gramine_key, fuse_available
from sanctum.errors import EvidenceError
from sanctum.launcher import encrypted
from sanctum.launcher.encrypted import GRAMINE_KEY_NAME, open_encrypted_dirs
from sanctum.launcher.errors import LauncherConfigError
from sanctum.protocol.messages import DirectoryKey

KEY = bytes(range(32))


def _key(path: str, key: bytes = KEY) -> DirectoryKey:
    return DirectoryKey(path=path, version=1, key=key)


def test_gramine_key_is_derived_and_provisioned(tmp_path):
    keys_root = tmp_path / "keys"
    keys_root.mkdir()
    (keys_root / GRAMINE_KEY_NAME).write_bytes(b"")
    lines: list[str] = []
    opened = open_encrypted_dirs(
        tmp_path,
        ("/data",),
        {"/data": _key("/data")},
        gramine=True,
        owner=None,
        log=lines.append,
        gramine_keys_root=keys_root,
    )
    assert [(o.path, o.mode) for o in opened] == [("/data", "gramine")]
    assert (keys_root / GRAMINE_KEY_NAME).read_bytes() == derive_gramine_key(KEY, "sanctum_fs")
    assert "key provisioned to Gramine" in lines[0]
    assert not (tmp_path / "data").exists()  # Gramine encrypts; the launcher mounts nothing.


def test_gramine_refuses_two_different_keys_under_one_key_name(tmp_path):
    with pytest.raises(LauncherConfigError) as raised:
        open_encrypted_dirs(
            tmp_path,
            ("/a", "/b"),
            {"/a": _key("/a"), "/b": _key("/b", bytes(32))},
            gramine=True,
            owner=None,
            log=print,
            gramine_keys_root=tmp_path,
        )
    assert raised.value.code == "launcher.encrypted_dir_keys_conflict"


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
