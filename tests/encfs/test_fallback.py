"""The decrypt-to-tmpfs fallback and the tree copies it is built on."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from sanctum.encfs import EncfsIntegrityError, EncfsUsageError, EncryptedDirectory
from sanctum.encfs.fallback import PlaintextSession, is_memory_filesystem
from sanctum.encfs.transfer import import_tree, load_key, sync_tree


def test_session_round_trip_with_sqlite(tmp_path: Path, key: bytes) -> None:
    host, work = tmp_path / "host", tmp_path / "work"
    with PlaintextSession(host, work, key, durable=False) as session:
        (work / "notes").mkdir()
        (work / "notes" / "a.txt").write_text("secret note")
        with sqlite3.connect(work / "bank.db") as db:
            db.execute("create table accounts (name text, balance int)")
            db.execute("insert into accounts values ('alice', 4242)")
        db.close()
        session.sync()
        epoch = session.epoch
    assert not work.exists()
    blob = b"".join(p.read_bytes() for p in host.iterdir())
    assert b"secret note" not in blob
    assert b"alice" not in blob
    with PlaintextSession(host, work, key, min_epoch=epoch) as session:
        assert (work / "notes" / "a.txt").read_text() == "secret note"
        db = sqlite3.connect(work / "bank.db")
        assert db.execute("select balance from accounts").fetchall() == [(4242,)]
        db.close()
        (work / "notes" / "a.txt").unlink()
    with EncryptedDirectory.open(host, key) as ed:
        assert ed.list("notes") == []


def test_session_refuses_tampered_host_and_leaves_nothing(tmp_path: Path, key: bytes) -> None:
    host, work = tmp_path / "host", tmp_path / "work"
    with PlaintextSession(host, work, key, durable=False):
        (work / "f").write_bytes(b"x" * 1000)
    data = next(p for p in host.iterdir() if p.suffix == ".0")
    data.write_bytes(b"\0" * data.stat().st_size)
    with pytest.raises(EncfsIntegrityError), PlaintextSession(host, work, key):
        pass
    assert not work.exists()


def test_session_error_does_not_sync(tmp_path: Path, key: bytes) -> None:
    host, work = tmp_path / "host", tmp_path / "work"
    with PlaintextSession(host, work, key, durable=False):
        (work / "f").write_text("kept")

    def crashing_app() -> None:
        with PlaintextSession(host, work, key, durable=False):
            (work / "f").write_text("lost")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        crashing_app()
    with EncryptedDirectory.open(host, key) as ed:
        assert ed.read_file("f") == b"kept"


def test_sync_tree_rewrites_only_changed_files(tmp_path: Path, key: bytes) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "same").write_text("same")
    (source / "changed").write_text("v1")
    (source / "becomes-dir").write_text("file")
    with EncryptedDirectory.open(tmp_path / "h", key, create=True, durable=False) as ed:
        sync_tree(source, ed)
        generation = ed.stat("same").generation
        (source / "changed").write_text("v2 longer")
        (source / "becomes-dir").unlink()
        (source / "becomes-dir").mkdir()
        (source / "becomes-dir" / "inner").write_text("in")
        stats = sync_tree(source, ed)
        assert stats.files == 2
        assert ed.stat("same").generation == generation
        assert ed.read_file("changed") == b"v2 longer"
        assert ed.read_file("becomes-dir/inner") == b"in"


def test_links_are_refused(tmp_path: Path, key: bytes) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "link").symlink_to("/etc/passwd")
    with EncryptedDirectory.open(tmp_path / "h", key, create=True, durable=False) as ed:
        with pytest.raises(EncfsUsageError) as caught:
            import_tree(source, ed)
        assert caught.value.code == "encfs.unsupported_file"


def test_load_key_forms(tmp_path: Path) -> None:
    raw, text = tmp_path / "raw", tmp_path / "hex"
    raw.write_bytes(os.urandom(32))
    text.write_text(raw.read_bytes().hex() + "\n")
    assert load_key(raw) == load_key(text)
    with pytest.raises(EncfsUsageError):
        load_key(tmp_path / "missing")


def test_is_memory_filesystem() -> None:
    assert is_memory_filesystem(Path("/dev/shm")) is Path("/dev/shm").is_dir()
    assert not is_memory_filesystem(Path("/proc/self/nonexistent-xyz"))
