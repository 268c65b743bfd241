"""Tampering with the host files directly: every case fails with a clear error, never garbage."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from sanctum.encfs import EncfsIntegrityError, EncryptedDirectory, WrongKeyError
from sanctum.encfs.format import HEADER_NAME, INDEX_NAME

CHUNK = 64  # The chunk size of the open_dir fixture.

A = bytes(range(200)) + b"A" * 56  # Four chunks of 64 bytes.
B = b"B" * 256


def _setup(open_dir) -> tuple[str, str]:
    with open_dir() as ed:
        ed.write_file("a", A)
        ed.write_file("b", B)
        return ed.stat("a").file_id, ed.stat("b").file_id


def _patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _chunk(path: Path, index: int) -> bytes:
    return path.read_bytes()[index * CHUNK : (index + 1) * CHUNK]


def _refused(open_dir, code: str, name: str = "a") -> EncfsIntegrityError:
    with pytest.raises(EncfsIntegrityError) as caught, open_dir() as ed:
        ed.read_file(name)
    assert caught.value.code == code, caught.value
    return caught.value


def test_modified_chunk(open_dir, host: Path) -> None:
    a, _ = _setup(open_dir)
    path = host / f"{a}.0"
    _patch(path, CHUNK + 5, bytes([path.read_bytes()[CHUNK + 5] ^ 1]))
    error = _refused(open_dir, "encfs.tampered")
    assert "chunk 1" in error.message


def test_truncated_file(open_dir, host: Path) -> None:
    a, _ = _setup(open_dir)
    os.truncate(host / f"{a}.0", 3 * CHUNK)
    _refused(open_dir, "encfs.truncated")


def test_truncated_mid_chunk(open_dir, host: Path) -> None:
    a, _ = _setup(open_dir)
    os.truncate(host / f"{a}.0", 3 * CHUNK + 10)
    _refused(open_dir, "encfs.truncated")


def test_truncated_while_open_is_detected_on_read(open_dir, host: Path) -> None:
    a, _ = _setup(open_dir)
    with open_dir() as ed:
        ed.read("a", 0, 1)
        os.truncate(host / f"{a}.0", CHUNK)
        with pytest.raises(EncfsIntegrityError) as caught:
            ed.read("a", 3 * CHUNK, 10)
        assert caught.value.code == "encfs.truncated"


def test_extended_file(open_dir, host: Path) -> None:
    a, _ = _setup(open_dir)
    with (host / f"{a}.0").open("ab") as handle:
        handle.write(b"\0" * CHUNK)
    _refused(open_dir, "encfs.extended")


def test_chunks_swapped_within_a_file(open_dir, host: Path) -> None:
    a, _ = _setup(open_dir)
    path = host / f"{a}.0"
    first, second = _chunk(path, 0), _chunk(path, 1)
    _patch(path, 0, second)
    _patch(path, CHUNK, first)
    _refused(open_dir, "encfs.tampered")


def test_chunk_swapped_between_files(open_dir, host: Path) -> None:
    a, b = _setup(open_dir)
    _patch(host / f"{a}.0", 0, _chunk(host / f"{b}.0", 0))
    _refused(open_dir, "encfs.tampered")


def test_file_renamed_on_the_host(open_dir, host: Path) -> None:
    a, _ = _setup(open_dir)
    for suffix in ("m", "0"):
        (host / f"{a}.{suffix}").rename(host / f"{'0' * 32}.{suffix}")
    _refused(open_dir, "encfs.missing")


def test_files_swapped_on_the_host(open_dir, host: Path) -> None:
    a, b = _setup(open_dir)
    for suffix in ("m", "0"):
        (host / f"{a}.{suffix}").rename(host / "tmp")
        (host / f"{b}.{suffix}").rename(host / f"{a}.{suffix}")
        (host / "tmp").rename(host / f"{b}.{suffix}")
    _refused(open_dir, "encfs.tampered", "a")
    _refused(open_dir, "encfs.tampered", "b")


def test_file_replaced_by_another(open_dir, host: Path) -> None:
    a, b = _setup(open_dir)
    for suffix in ("m", "0"):
        shutil.copyfile(host / f"{b}.{suffix}", host / f"{a}.{suffix}")
    _refused(open_dir, "encfs.tampered")


def test_data_replaced_by_another_files_data(open_dir, host: Path) -> None:
    a, b = _setup(open_dir)
    shutil.copyfile(host / f"{b}.0", host / f"{a}.0")
    _refused(open_dir, "encfs.tampered")


def _snapshot(host: Path, file_id: str) -> dict[str, bytes]:
    return {
        name: (host / name).read_bytes()
        for name in [p.name for p in host.iterdir()]
        if name.startswith(file_id)
    }


def _restore(host: Path, file_id: str, snapshot: dict[str, bytes]) -> None:
    """Put the snapshot back in place (same inodes, as a host writing into the files would)."""
    for name in [p.name for p in host.iterdir()]:
        if name.startswith(file_id):
            (host / name).write_bytes(snapshot.get(name, b""))


def test_older_version_within_one_mount(open_dir, host: Path) -> None:
    with open_dir() as ed:
        ed.write_file("a", A)
        file_id = ed.stat("a").file_id
        old = _snapshot(host, file_id)
        ed.write("a", 0, b"version two")
        ed.flush()
        _restore(host, file_id, old)
        with pytest.raises(EncfsIntegrityError) as caught:
            ed.read_file("a")
        assert caught.value.code == "encfs.rollback"
        # Reloading the file's state does not help the attacker either.
        ed.release("a")
        with pytest.raises(EncfsIntegrityError) as caught:
            ed.read_file("a")
        assert caught.value.code == "encfs.rollback"


def test_older_version_of_a_file_across_mounts(open_dir, host: Path) -> None:
    with open_dir() as ed:
        ed.write_file("a", A)
        old = _snapshot(host, ed.stat("a").file_id)
        ed.write_file("a", B)
        file_id = ed.stat("a").file_id
    _restore(host, file_id, old)
    _refused(open_dir, "encfs.rollback")


def test_older_index_refused_with_min_epoch(open_dir, host: Path) -> None:
    _setup(open_dir)
    old_index = (host / INDEX_NAME).read_bytes()
    with open_dir() as ed:
        ed.write_file("c", b"new")
    epoch = ed.epoch
    (host / INDEX_NAME).write_bytes(old_index)
    with pytest.raises(EncfsIntegrityError) as caught:
        open_dir(min_epoch=epoch)
    assert caught.value.code == "encfs.rollback"


def test_older_index_than_a_file_record(open_dir, host: Path) -> None:
    _setup(open_dir)
    old_index = (host / INDEX_NAME).read_bytes()
    with open_dir() as ed:
        ed.write("a", 0, b"changed")
    (host / INDEX_NAME).write_bytes(old_index)
    _refused(open_dir, "encfs.rollback")


def test_modified_index(open_dir, host: Path) -> None:
    _setup(open_dir)
    _patch(host / INDEX_NAME, 20, b"\xff")
    with pytest.raises(EncfsIntegrityError) as caught:
        open_dir()
    assert caught.value.code == "encfs.tampered"


def test_modified_file_record(open_dir, host: Path) -> None:
    a, _ = _setup(open_dir)
    path = host / f"{a}.m"
    _patch(path, 30, bytes([path.read_bytes()[30] ^ 0x80]))
    _refused(open_dir, "encfs.tampered")


def test_wrong_key(open_dir, host: Path) -> None:
    _setup(open_dir)
    with pytest.raises(WrongKeyError) as caught:
        open_dir(key=os.urandom(32))
    assert caught.value.code == "encfs.wrong_key"


def test_header_parameters_cannot_be_changed(open_dir, host: Path, key: bytes) -> None:
    _setup(open_dir)
    path = host / HEADER_NAME
    path.write_text(path.read_text().replace('"chunk_size": 64', '"chunk_size": 128'))
    with pytest.raises(WrongKeyError):
        EncryptedDirectory.open(host, key)


def test_directory_swapped_with_another_directory(tmp_path: Path, key: bytes) -> None:
    with EncryptedDirectory.open(tmp_path / "one", key, create=True, chunk_size=64) as one:
        one.write_file("a", A)
        id_one = one.stat("a").file_id
    with EncryptedDirectory.open(tmp_path / "two", key, create=True, chunk_size=64) as two:
        two.write_file("a", B)
        id_two = two.stat("a").file_id
    shutil.copyfile(tmp_path / "two" / f"{id_two}.0", tmp_path / "one" / f"{id_one}.0")
    with (
        pytest.raises(EncfsIntegrityError) as caught,
        EncryptedDirectory.open(tmp_path / "one", key) as one,
    ):
        one.read_file("a")
    assert caught.value.code == "encfs.tampered"


def test_every_detection_logs_an_audit_line(open_dir, host: Path, caplog) -> None:
    a, _ = _setup(open_dir)
    _patch(host / f"{a}.0", 0, b"\0\0\0\0")
    with caplog.at_level(logging.ERROR, logger="sanctum.encfs.audit"):
        _refused(open_dir, "encfs.tampered")
    records = [r for r in caplog.records if getattr(r, "event", "") == "encfs.integrity_failure"]
    assert len(records) == 1
    assert records[0].audit is True
    assert records[0].code == "encfs.tampered"
    assert records[0].encfs_file_id == a
