"""Provisioning keys to Gramine's encrypted mounts, against a fake /dev/attestation/keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from sanctum.encfs import EncfsIOError, EncfsUsageError, derive_gramine_key
from sanctum.encfs.gramine import provision_gramine_key


@pytest.fixture
def keys_root(tmp_path: Path) -> Path:
    root = tmp_path / "dev" / "attestation" / "keys"
    root.mkdir(parents=True)
    # Gramine lists the keys of the manifest's mounts, initially all zeros.
    (root / "sanctum_fs").write_bytes(bytes(16))
    (root / "_sgx_mrenclave").write_bytes(b"\x01" * 16)
    return root


def test_writes_the_derived_128_bit_key(keys_root: Path, key: bytes) -> None:
    provision_gramine_key(key, "sanctum_fs", root=keys_root)
    written = (keys_root / "sanctum_fs").read_bytes()
    assert len(written) == 16
    assert written == derive_gramine_key(key, "sanctum_fs")
    assert written not in key
    assert derive_gramine_key(key, "other") != written


def test_reserved_and_bad_names_are_refused(keys_root: Path, key: bytes) -> None:
    for name in ("_sgx_mrenclave", "", "a/b", ".."):
        with pytest.raises(EncfsUsageError) as caught:
            provision_gramine_key(key, name, root=keys_root)
        assert caught.value.code == "encfs.invalid_key_name"
    assert (keys_root / "_sgx_mrenclave").read_bytes() == b"\x01" * 16


def test_unknown_key_name_fails(keys_root: Path, key: bytes) -> None:
    with pytest.raises(EncfsIOError) as caught:
        provision_gramine_key(key, "not_in_manifest", root=keys_root)
    assert caught.value.code == "encfs.gramine_key_failed"


def test_not_under_gramine(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(EncfsIOError) as caught:
        provision_gramine_key(key, "sanctum_fs", root=tmp_path / "missing")
    assert caught.value.code == "encfs.gramine_unavailable"


def test_bad_master_key(keys_root: Path) -> None:
    with pytest.raises(EncfsUsageError):
        provision_gramine_key(b"short", "sanctum_fs", root=keys_root)
