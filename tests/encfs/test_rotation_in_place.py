"""In-place key rotation: interrupted anywhere, the directory stays readable; a rerun finishes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sanctum.encfs import (
    EncfsIntegrityError,
    EncfsIOError,
    EncryptedDirectory,
    WrongKeyError,
    rotation,
)
from sanctum.encfs.rotation import STAGING_NAME, recover_rotation, rotate_key_in_place

NEW = bytes(range(100, 132))
FILES = {f"d/f{i}": os.urandom(300 + i) for i in range(5)} | {"top": b"top" * 50}
#: More than the renames and removals of a rotation of the directory :func:`_fill` makes (the
#: commit marker, one move per staged entry, one removal per old entry: 27 with today's format).
MAX_STEPS = 40


def _fill(host: Path, key: bytes) -> int:
    with EncryptedDirectory.open(host, key, create=True, chunk_size=64, durable=False) as ed:
        ed.mkdir("d", 0o750)
        for name, data in FILES.items():
            ed.write_file(name, data, 0o600)
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        return ed.epoch


def _contents(host: Path, key: bytes) -> dict[str, bytes]:
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        return {name: ed.read_file(name) for name in FILES}


def _opens_with(host: Path, key: bytes) -> bool:
    try:
        return _contents(host, key) == FILES
    except WrongKeyError:
        return False


def test_rotate_in_place_keeps_the_directory_itself(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    _fill(host, key)
    inode = host.stat().st_ino
    assert rotate_key_in_place(host, key, NEW, durable=False) == len(FILES)
    assert host.stat().st_ino == inode  # Not renamed: works on a volume's mount point.
    assert _contents(host, NEW) == FILES
    with pytest.raises(WrongKeyError):
        EncryptedDirectory.open(host, key, writable=False)
    assert not (host / STAGING_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol"]


def test_interrupted_copy_leaves_the_old_directory_whole(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    _fill(host, key)
    with pytest.raises(KeyboardInterrupt):
        rotate_key_in_place(host, key, NEW, durable=False, fail_after_files=2)
    # Midway: the old key still reads everything (old and new data coexist on the host).
    assert (host / STAGING_NAME).is_dir()
    assert _contents(host, key) == FILES
    assert not _opens_with(host, NEW)
    # A later run discards the partial copy and completes.
    assert rotate_key_in_place(host, key, NEW, durable=False) == len(FILES)
    assert _contents(host, NEW) == FILES
    assert not (host / STAGING_NAME).exists()


def test_recover_alone_discards_a_partial_copy(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    _fill(host, key)
    with pytest.raises(KeyboardInterrupt):
        rotate_key_in_place(host, key, NEW, durable=False, fail_after_files=0)
    assert recover_rotation(host) == "discarded"
    assert _contents(host, key) == FILES


@pytest.mark.parametrize("crash_at", range(MAX_STEPS))
def test_a_crash_at_any_step_of_the_switch_loses_nothing(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    """Fail the n-th rename or removal of the switch; the next run always ends under one key."""
    host = tmp_path / "vol"
    _fill(host, key)
    calls = {"n": 0, "limit": MAX_STEPS * 10}
    real_replace, real_move, real_remove = Path.replace, rotation._move, rotation._remove

    def step() -> None:
        calls["n"] += 1
        if calls["n"] > calls["limit"]:
            raise OSError(5, "simulated crash")

    def replace(self: Path, target: Any) -> Path:
        step()
        return real_replace(self, target)

    def move(*args: Any) -> None:
        step()
        real_move(*args)

    def remove(*args: Any) -> None:
        step()
        real_remove(*args)

    monkeypatch.setattr(Path, "replace", replace)
    monkeypatch.setattr(rotation, "_move", move)
    monkeypatch.setattr(rotation, "_remove", remove)
    # Count the steps of an uninterrupted rotation of an identical directory first.
    _fill(tmp_path / "count", key)
    rotate_key_in_place(tmp_path / "count", key, NEW, durable=False)
    steps = calls["n"]
    assert steps < MAX_STEPS
    calls.update(n=0, limit=crash_at)
    code = None
    try:
        rotate_key_in_place(host, key, NEW, durable=False)
    except EncfsIOError as error:
        code = error.code
    monkeypatch.undo()
    finished = code is None
    assert code in {None, "encfs.rotation_failed"}
    # The parameters reach past the last step: the final cases run without a crash.
    assert finished == (crash_at >= steps)
    if not finished:
        # Whatever the state, exactly one key reads the whole directory after recovery...
        outcome = recover_rotation(host, (NEW,))
        assert outcome in {"discarded", "completed"}
        under_new = _opens_with(host, NEW)
        assert under_new != _opens_with(host, key)
        assert under_new == (outcome == "completed")
        # ...and a rerun (if the switch had not committed) completes it.
        if not under_new:
            rotate_key_in_place(host, key, NEW, durable=False)
    assert _contents(host, NEW) == FILES
    assert not (host / STAGING_NAME).exists()


def test_a_tampered_directory_is_refused_and_left_alone(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    _fill(host, key)
    victim = next(p for p in host.iterdir() if p.suffix == ".0" and p.stat().st_size > 0)
    victim.write_bytes(os.urandom(victim.stat().st_size))
    with pytest.raises(EncfsIntegrityError):
        rotate_key_in_place(host, key, NEW, durable=False)
    recover_rotation(host)
    assert not (host / STAGING_NAME).exists()
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        assert ed.exists("top")


def test_a_rolled_back_directory_is_not_rotated(tmp_path: Path, key: bytes) -> None:
    host = tmp_path / "vol"
    epoch = _fill(host, key)
    with pytest.raises(EncfsIntegrityError) as raised:
        rotate_key_in_place(host, key, NEW, durable=False, min_epoch=epoch + 1)
    assert raised.value.code == "encfs.rollback"
    assert not (host / STAGING_NAME).exists()
    assert _contents(host, key) == FILES
