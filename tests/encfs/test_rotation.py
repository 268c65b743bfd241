"""Key rotation: re-encrypt under a new key; interruptions lose nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sanctum.encfs import EncfsIntegrityError, EncryptedDirectory, WrongKeyError
from sanctum.encfs.rotation import recover_rotation, rotate_key

NEW = bytes(range(100, 132))


def _fill(host: Path, key: bytes) -> None:
    with EncryptedDirectory.open(host, key, create=True, chunk_size=64, durable=False) as ed:
        ed.mkdir("d", 0o750)
        ed.write_file("d/a", b"alpha" * 100, 0o600)
        ed.write_file("b", b"")
        ed.set_attributes("b", mtime_ns=123_456_789)


def _check(host: Path, key: bytes) -> None:
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        assert ed.read_file("d/a") == b"alpha" * 100
        assert ed.stat("d/a").mode == 0o600
        assert ed.stat("d").mode == 0o750
        assert ed.read_file("b") == b""
        assert ed.stat("b").mtime_ns == 123_456_789
        assert ed.chunk_size == 64


def test_rotate_key(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    _fill(host, key)
    assert rotate_key(host, key, NEW) == 2
    _check(host, NEW)
    with pytest.raises(WrongKeyError):
        EncryptedDirectory.open(host, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol"]


def test_interrupted_copy_is_discarded_and_redone(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    _fill(host, key)
    partial = tmp_path / "vol.rekey-new"
    EncryptedDirectory.initialize(partial, NEW)
    assert recover_rotation(host) == "discarded"
    _check(host, key)
    EncryptedDirectory.initialize(partial, NEW)
    rotate_key(host, key, NEW)
    _check(host, NEW)


def test_interrupted_swap_is_completed(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    _fill(host, key)
    rotate_key(host, key, NEW)
    # Rebuild the state "old moved aside, new not yet moved in".
    shutil.copytree(host, tmp_path / "vol.rekey-new")
    host.rename(tmp_path / "vol.rekey-old")
    assert recover_rotation(host) == "completed"
    _check(host, NEW)
    assert not (tmp_path / "vol.rekey-old").exists()


def test_tampered_directory_is_not_laundered(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    _fill(host, key)
    data = next(p for p in host.iterdir() if p.suffix == ".0")
    data.write_bytes(os.urandom(data.stat().st_size))
    with pytest.raises(EncfsIntegrityError):
        rotate_key(host, key, NEW)
    recover_rotation(host)
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        assert ed.exists("d/a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol"]
