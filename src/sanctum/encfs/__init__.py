"""Encrypted directories: data at rest that only an attested build of the app can read.

A pure on-disk format (:mod:`sanctum.encfs.format`), a directory API over it
(:class:`EncryptedDirectory`), a FUSE mount for the simulated platform
(:func:`mount_encrypted`, needs the ``encfs-fuse`` extra), a decrypt-to-tmpfs fallback, and the
key provisioning of Gramine's encrypted mounts. This package imports nothing from the manager;
keys are passed in. See ``docs/encrypted-directories.md``.
"""

from __future__ import annotations

from sanctum.encfs.directory import EncryptedDirectory, Stat, normalise_path
from sanctum.encfs.errors import (
    EncfsError,
    EncfsFormatError,
    EncfsIntegrityError,
    EncfsIOError,
    EncfsUsageError,
    WrongKeyError,
)
from sanctum.encfs.fallback import PlaintextSession, run_app_supervised, start_sync_keeper
from sanctum.encfs.format import DEFAULT_CHUNK_SIZE, KEY_SIZE, derive_gramine_key
from sanctum.encfs.fuse import FuseMount, fuse_available, mount_encrypted
from sanctum.encfs.gramine import gramine_key_name, provision_gramine_key
from sanctum.encfs.rotation import recover_rotation, rotate_key, rotate_key_in_place

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "KEY_SIZE",
    "EncfsError",
    "EncfsFormatError",
    "EncfsIOError",
    "EncfsIntegrityError",
    "EncfsUsageError",
    "EncryptedDirectory",
    "FuseMount",
    "PlaintextSession",
    "Stat",
    "WrongKeyError",
    "derive_gramine_key",
    "fuse_available",
    "gramine_key_name",
    "mount_encrypted",
    "normalise_path",
    "provision_gramine_key",
    "recover_rotation",
    "rotate_key",
    "rotate_key_in_place",
    "run_app_supervised",
    "start_sync_keeper",
]
