"""Fixtures for the encrypted-directory tests: a key and a small-chunk directory opener."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sanctum.encfs import EncryptedDirectory

CHUNK = 64


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return tmp_path / "host"


@pytest.fixture
def open_dir(host: Path, key: bytes) -> Callable[..., EncryptedDirectory]:
    """Open (creating on first use) the test directory with 64-byte chunks and no fsync."""

    def _open(**options: Any) -> EncryptedDirectory:
        options.setdefault("chunk_size", CHUNK)
        options.setdefault("durable", False)
        return EncryptedDirectory.open(host, options.pop("key", key), create=True, **options)

    return _open
