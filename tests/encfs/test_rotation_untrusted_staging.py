"""The staging copy of an in-place rotation is written on the host: recovery trusts none of it.

A host that edits the ``COMMIT`` list, swaps the staging folder or an entry for a symlink, or
forges the staged copy must not make the (root) launcher move files anywhere outside the
directory, nor replace the directory's data with a copy the new key does not open.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from sanctum.encfs import EncfsIntegrityError, EncryptedDirectory
from sanctum.encfs.format import HEADER_NAME, INDEX_NAME
from sanctum.encfs.rotation import STAGING_NAME, recover_rotation, rotate_key_in_place

NEW = bytes(range(100, 132))
OTHER = bytes(range(200, 232))
FILES = {"a": b"alpha" * 40, "b": b"beta" * 30}


def _committed(host: Path, key: bytes, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Leave ``host`` with a committed, not yet moved, staging copy under ``NEW``.

    Built the way a rotation interrupted right after its commit point leaves it: the same
    directory re-encrypted under ``NEW``, its entries in ``.sanctum-rekey`` with a ``COMMIT`` list.
    """
    del monkeypatch  # The state is built from the outside, independent of the rotation's code.
    with EncryptedDirectory.open(host, key, create=True, chunk_size=64, durable=False) as ed:
        for name, data in FILES.items():
            ed.write_file(name, data, 0o600)
    twin = host.with_name(host.name + "-twin")
    shutil.copytree(host, twin)
    rotate_key_in_place(twin, key, NEW, durable=False)
    staging = host / STAGING_NAME
    shutil.copytree(twin, staging)
    shutil.rmtree(twin)
    _write_commit(staging, sorted(p.name for p in staging.iterdir()))
    return staging


def _commit_list(staging: Path) -> list[str]:
    names: list[str] = json.loads((staging / "COMMIT").read_text(encoding="utf-8"))
    return names


def _write_commit(staging: Path, names: list[str]) -> None:
    (staging / "COMMIT").write_text(json.dumps(names), encoding="utf-8")


def _refused(host: Path, keys: tuple[bytes, ...] = (NEW,)) -> None:
    with pytest.raises(EncfsIntegrityError) as raised:
        recover_rotation(host, keys)
    assert raised.value.code == "encfs.rotation_tampered"


def _still_whole(host: Path, key: bytes) -> None:
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        assert {name: ed.read_file(name) for name in FILES} == FILES


@pytest.mark.parametrize(
    "bad", ["../etc/evil.conf", "../../escape", "..", ".", "sub/x", "/etc/evil.conf", 7]
)
def test_traversing_names_in_commit_are_refused(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch, bad: object
) -> None:
    host = tmp_path / "vol"
    staging = _committed(host, key, monkeypatch)
    # What the reproduced attack used: a file staged at <staging>/../etc/evil.conf.
    (host / "etc").mkdir()
    (host / "etc" / "evil.conf").write_text("evil", encoding="utf-8")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "evil.conf").write_text("good", encoding="utf-8")
    _write_commit(staging, [*_commit_list(staging), bad])  # type: ignore[list-item]
    _refused(host)
    assert (tmp_path / "etc" / "evil.conf").read_text(encoding="utf-8") == "good"
    assert (host / "etc" / "evil.conf").read_text(encoding="utf-8") == "evil"
    _still_whole(host, key)


def test_a_symlinked_staging_folder_is_refused(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = tmp_path / "vol"
    staging = _committed(host, key, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    staging.rename(elsewhere)
    (host / STAGING_NAME).symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    _refused(host)
    assert sorted(p.name for p in elsewhere.iterdir()) == before
    assert (host / STAGING_NAME).is_symlink()
    _still_whole(host, key)


def test_a_symlinked_staged_entry_is_refused(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = tmp_path / "vol"
    staging = _committed(host, key, monkeypatch)
    target = tmp_path / "secret"
    target.write_bytes(b"outside")
    victim = next(name for name in _commit_list(staging) if name.endswith(".m"))
    (staging / victim).unlink()
    (staging / victim).symlink_to(target)
    _refused(host)
    assert target.read_bytes() == b"outside"
    _still_whole(host, key)


def test_a_staged_copy_under_another_key_is_refused(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host forges a whole staged copy (its own key): the directory is not replaced."""
    host = tmp_path / "vol"
    staging = _committed(host, key, monkeypatch)
    forged = tmp_path / "forged"
    with EncryptedDirectory.open(forged, OTHER, create=True, durable=False) as ed:
        ed.write_file("a", b"host data", 0o600)
    for name in (HEADER_NAME, INDEX_NAME):
        (staging / name).write_bytes((forged / name).read_bytes())
    _refused(host)
    _still_whole(host, key)


def test_a_staged_file_of_no_entry_is_refused(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = tmp_path / "vol"
    staging = _committed(host, key, monkeypatch)
    extra = "ab" * 16 + ".m"
    (staging / extra).write_bytes(os.urandom(64))
    _write_commit(staging, [*_commit_list(staging), extra])
    _refused(host)
    _still_whole(host, key)


def test_a_committed_copy_needs_a_key(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = tmp_path / "vol"
    _committed(host, key, monkeypatch)
    _refused(host, ())
    _refused(host, (OTHER,))
    # With the new key it completes, every entry moved through the descriptors.
    assert recover_rotation(host, (OTHER, NEW)) == "completed"
    _still_whole(host, NEW)
    assert not (host / STAGING_NAME).exists()
