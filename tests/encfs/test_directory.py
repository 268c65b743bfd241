"""The EncryptedDirectory API: files, directories, persistence and confidentiality."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sanctum.encfs import EncfsUsageError, EncryptedDirectory
from sanctum.encfs.format import HEADER_NAME, INDEX_NAME


def test_round_trip_across_reopen(open_dir, host: Path) -> None:
    with open_dir() as ed:
        ed.mkdir("data")
        ed.write_file("data/a.bin", bytes(range(256)) * 5)
        ed.create("empty")
        ed.create("sparse")
        ed.write("sparse", 1000, b"end")
    with open_dir() as ed:
        assert ed.list() == ["data", "empty", "sparse"]
        assert ed.list("data") == ["a.bin"]
        assert ed.read_file("data/a.bin") == bytes(range(256)) * 5
        assert ed.read_file("empty") == b""
        assert ed.read_file("sparse") == bytes(1000) + b"end"
        assert ed.stat("sparse").size == 1003
        assert ed.stat("data").kind == "dir"
        assert ed.read("data/a.bin", 250, 10) == bytes(range(250, 256)) + bytes(range(4))
        assert ed.verify() == 3


def test_host_sees_only_ciphertext(open_dir, host: Path) -> None:
    secret = b"ACCOUNT-BALANCE-4242-TOP-SECRET"
    with open_dir() as ed:
        ed.mkdir("customers-directory")
        ed.write_file("customers-directory/alice-secret-name.txt", secret * 40)
    names = [p.name for p in host.iterdir()]
    blob = b"".join((host / name).read_bytes() for name in names)
    for needle in (secret, b"alice-secret-name", b"customers-directory", secret[:16]):
        assert needle not in blob
        assert not any(needle.decode() in name for name in names)
    assert set(names) >= {HEADER_NAME, INDEX_NAME}


def test_sizes_are_padded_to_whole_chunks(open_dir, host: Path) -> None:
    with open_dir() as ed:
        ed.write_file("a", b"x")
        ed.write_file("b", b"y" * 63)
        a, b = ed.stat("a").file_id, ed.stat("b").file_id
    assert (host / f"{a}.0").stat().st_size == (host / f"{b}.0").stat().st_size == 64


def test_rename_delete_rmdir(open_dir) -> None:
    with open_dir() as ed:
        ed.mkdir("d")
        ed.mkdir("d/e")
        ed.write_file("d/e/f", b"F")
        ed.write_file("g", b"G")
        ed.rename("d", "moved")
        assert ed.read_file("moved/e/f") == b"F"
        ed.rename("g", "moved/e/f")
        assert ed.read_file("moved/e/f") == b"G"
        with pytest.raises(EncfsUsageError) as caught:
            ed.rmdir("moved")
        assert caught.value.code == "encfs.not_empty"
        ed.delete("moved/e/f")
        ed.rmdir("moved/e")
        ed.rmdir("moved")
        assert ed.list() == []
    with open_dir() as ed:
        assert ed.list() == []


def test_deleted_files_leave_no_host_files(open_dir, host: Path) -> None:
    with open_dir() as ed:
        ed.write_file("a", b"data" * 100)
        ed.delete("a")
    assert sorted([p.name for p in host.iterdir()]) == sorted([HEADER_NAME, INDEX_NAME])


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (lambda ed: ed.read("missing"), "encfs.not_found"),
        (lambda ed: ed.create("nodir/x"), "encfs.not_found"),
        (lambda ed: ed.read("d"), "encfs.is_directory"),
        (lambda ed: ed.mkdir("d"), "encfs.exists"),
        (lambda ed: ed.create("f"), "encfs.exists"),
        (lambda ed: ed.create("f/x"), "encfs.not_directory"),
        (lambda ed: ed.read("../etc/passwd"), "encfs.invalid_path"),
        (lambda ed: ed.rename("d", "d/inside"), "encfs.invalid_path"),
        (lambda ed: ed.rename("f", "d"), "encfs.is_directory"),
        (lambda ed: ed.write("f", -1, b"x"), "encfs.invalid_argument"),
    ],
)
def test_usage_errors(open_dir, action, code) -> None:
    with open_dir() as ed:
        ed.mkdir("d")
        ed.create("f")
        with pytest.raises(EncfsUsageError) as caught:
            action(ed)
        assert caught.value.code == code


def test_read_only_open_refuses_writes(open_dir, host: Path, key: bytes) -> None:
    with open_dir() as ed:
        ed.write_file("f", b"x")
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        assert ed.read_file("f") == b"x"
        with pytest.raises(EncfsUsageError) as caught:
            ed.write("f", 0, b"y")
        assert caught.value.code == "encfs.read_only"


def test_initialize_refuses_a_non_empty_directory(tmp_path: Path, key: bytes) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(EncfsUsageError) as caught:
        EncryptedDirectory.initialize(tmp_path, key)
    assert caught.value.code == "encfs.exists"


def test_interrupted_commit_keeps_committed_data(open_dir) -> None:
    ed = open_dir(cache_chunks=1)
    ed.write_file("f", b"A" * 300)
    # Uncommitted writes reach the slot files (cache of one chunk), then the "process dies".
    ed.write("f", 0, b"B" * 1000)
    ed.write("f", 2000, b"C")
    del ed
    with open_dir() as again:
        assert again.read_file("f") == b"A" * 300


def test_commit_interrupted_before_the_index_is_completed(open_dir) -> None:
    ed = open_dir()
    ed.write_file("f", b"old")
    ed.write("f", 0, b"new content")
    state = next(iter(ed._files.values()))
    assert state.commit() is not None  # The file record is replaced; the index is not.
    del ed
    with open_dir() as again:
        assert again.read_file("f") == b"new content"
    with open_dir() as third:
        assert third.read_file("f") == b"new content"


def test_epoch_grows_and_min_epoch_accepts_current(open_dir) -> None:
    with open_dir() as ed:
        ed.write_file("f", b"x")
    epoch = ed.epoch
    with open_dir(min_epoch=epoch) as ed:
        assert ed.read_file("f") == b"x"
        assert ed.epoch > epoch


def test_large_chunks_default_and_partial_overwrite(tmp_path: Path, key: bytes) -> None:
    data = os.urandom(200_000)
    with EncryptedDirectory.open(tmp_path / "h", key, create=True, durable=False) as ed:
        assert ed.chunk_size == 65536
        ed.write_file("f", data)
        ed.write("f", 65530, b"0123456789")
    expected = data[:65530] + b"0123456789" + data[65540:]
    with EncryptedDirectory.open(tmp_path / "h", key) as ed:
        assert ed.read_file("f") == expected


def test_one_writer_at_a_time(open_dir, host: Path, key: bytes) -> None:
    with open_dir() as writer:
        writer.write_file("f", b"x")
        for writable in (True, False):
            with pytest.raises(EncfsUsageError) as caught:
                EncryptedDirectory.open(host, key, writable=writable)
            assert caught.value.code == "encfs.busy"
    with (
        EncryptedDirectory.open(host, key, writable=False) as one,
        EncryptedDirectory.open(host, key, writable=False) as two,
    ):
        assert one.read_file("f") == two.read_file("f") == b"x"
        with pytest.raises(EncfsUsageError):
            EncryptedDirectory.open(host, key)
    with open_dir() as writer:
        assert writer.read_file("f") == b"x"


def test_crash_residue_is_tolerated_read_only_and_trimmed_by_a_writer(
    open_dir, host: Path, key: bytes
) -> None:
    ed = open_dir(cache_chunks=1)
    ed.write_file("f", b"A" * 100)
    file_id = ed.stat("f").file_id
    ed.write("f", 0, b"B" * 1000)  # Evicted chunks land in the free slots, uncommitted.
    del ed  # The process dies: the index still says "in use".
    slot_sizes = {p.name: p.stat().st_size for p in host.iterdir() if p.name.startswith(file_id)}
    with EncryptedDirectory.open(host, key, writable=False) as reader:
        assert reader.read_file("f") == b"A" * 100
    with open_dir() as writer:
        assert writer.read_file("f") == b"A" * 100
    trimmed = {p.name: p.stat().st_size for p in host.iterdir() if p.name.startswith(file_id)}
    assert sum(trimmed.values()) < sum(slot_sizes.values())
