"""The on-disk format of Sanctum encrypted directories, version 1 (pure functions over bytes).

This module encodes and decodes every object an encrypted directory stores on the host and
derives every key; it performs no I/O and reads no clock (nonces and times are passed in). The
format is specified in ``docs/encrypted-directories.md``; the summary:

- ``sanctum-encfs.json`` (the header, plaintext JSON): format name and version, chunk size,
  a random 128-bit directory id and a key check (HMAC-SHA256 under a key derived from the master
  key over the other fields), so a wrong key is told apart from tampering and the parameters
  cannot be changed.
- ``index`` (the integrity record): AES-256-GCM under the index key; maps every name to its
  entry (directory, or file with file id, generation, size, mode, mtime), plus an epoch counter
  and a clean-unmount flag. Replaced atomically on every commit.
- per file, ``<file id>.m`` (the file record): AES-256-GCM under the file key; the file id,
  generation, length, expected host sizes and, for every chunk, the slot holding it, the
  generation that wrote it, its nonce and its GCM tag.
- per file, ``<file id>.0`` and ``<file id>.1`` (two slot files): chunk ``i`` lives at offset
  ``i * chunk_size`` in one of them, always padded to a whole chunk. A new version of a chunk is
  written to the slot the committed record does not use, so a crash never damages committed data.

A chunk's associated data binds the file id, the chunk index, the generation that wrote it and a
final-chunk flag; its tag is kept in the authenticated file record, so a changed, swapped,
moved or older chunk never decrypts. Host file names are random file ids; names live only in
the encrypted index.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sanctum.encfs.errors import EncfsFormatError, EncfsUsageError, WrongKeyError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FILE_ID_SIZE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_NAME",
    "INDEX_NAME",
    "KEY_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "ChunkRecord",
    "DirectoryHeader",
    "DirectoryKeys",
    "Entry",
    "FileRecord",
    "Index",
    "chunk_aad",
    "chunk_count",
    "decode_file_record",
    "decode_header",
    "decode_index",
    "derive_gramine_key",
    "encode_file_record",
    "encode_header",
    "encode_index",
    "new_header",
    "open_chunk",
    "seal_chunk",
    "unlock",
]

FORMAT_NAME: Final = "sanctum-encfs"
FORMAT_VERSION: Final = 1
HEADER_NAME: Final = "sanctum-encfs.json"
INDEX_NAME: Final = "index"
KEY_SIZE: Final = 32
FILE_ID_SIZE: Final = 16
DIR_ID_SIZE: Final = 16
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
MIN_CHUNK_SIZE: Final = 64
MAX_CHUNK_SIZE: Final = 1024 * 1024
#: The slot value of a hole: a chunk of zeros that was never written (nothing on the host).
HOLE_SLOT: Final = 255
#: Index plaintext is padded to a multiple of this, so its size says little about the names.
INDEX_PAD: Final = 4096

_LABEL: Final = b"sanctum-encfs v1 "
_RECORD: Final = struct.Struct(">BQ12s16s")
_FILE_HEAD: Final = struct.Struct(">4sH16sQQQQI")
_FILE_MAGIC: Final = b"SEFR"
_AAD_CHUNK: Final = struct.Struct(">16s16sQQB")


def _derive(master: bytes, salt: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    """Return ``length`` bytes of HKDF-SHA256 output for ``info`` (domain-separated)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=_LABEL + info).derive(
        master
    )


def _check_master(key: bytes) -> None:
    """Refuse a master key that is not 32 bytes.

    Raises:
        EncfsUsageError: The key has the wrong length (``encfs.invalid_key``).
    """
    if len(key) != KEY_SIZE:
        raise EncfsUsageError(
            f"a directory key is {KEY_SIZE} bytes, got {len(key)}", code="encfs.invalid_key"
        )


def derive_gramine_key(master: bytes, key_name: str) -> bytes:
    """Return the 128-bit key of Gramine's encrypted mount ``key_name`` for this master key.

    Gramine's protected files take a 16-byte key through ``/dev/attestation/keys/<key_name>``;
    the manager holds one 256-bit master key per directory and the launcher derives this one.

    Raises:
        EncfsUsageError: ``master`` is not 32 bytes.
    """
    _check_master(master)
    return _derive(master, b"", b"gramine-pf " + key_name.encode("utf-8"), 16)


# -- The header --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectoryHeader:
    """The plaintext header of a directory (``sanctum-encfs.json``).

    Attributes:
        version: Format version (1).
        chunk_size: Plaintext bytes per chunk.
        dir_id: Random 16-byte directory id (salt of every key derivation).
        key_check: HMAC-SHA256 over the other fields under a key derived from the master key.
    """

    version: int
    chunk_size: int
    dir_id: bytes
    key_check: bytes


def _check_chunk_size(chunk_size: int) -> None:
    """Refuse a chunk size that is not a power of two within bounds.

    Raises:
        EncfsUsageError: The size is out of range.
    """
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or chunk_size & (chunk_size - 1):
        raise EncfsUsageError(
            f"chunk size must be a power of two in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]",
            code="encfs.invalid_argument",
        )


def _header_mac(master: bytes, version: int, chunk_size: int, dir_id: bytes) -> bytes:
    """Return the key check of a header with these fields."""
    mac_key = _derive(master, dir_id, b"header")
    fields = f"{FORMAT_NAME}|{version}|{chunk_size}|{dir_id.hex()}".encode("ascii")
    return hmac.new(mac_key, fields, hashlib.sha256).digest()


def new_header(master: bytes, dir_id: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """Return the encoded header of a new directory.

    Args:
        master: The 32-byte directory key.
        dir_id: 16 random bytes.
        chunk_size: Plaintext bytes per chunk (a power of two, 64 B to 1 MiB).

    Raises:
        EncfsUsageError: A bad key, id or chunk size.
    """
    _check_master(master)
    _check_chunk_size(chunk_size)
    if len(dir_id) != DIR_ID_SIZE:
        raise EncfsUsageError("a directory id is 16 bytes", code="encfs.invalid_argument")
    mac = _header_mac(master, FORMAT_VERSION, chunk_size, dir_id)
    return encode_header(DirectoryHeader(FORMAT_VERSION, chunk_size, dir_id, mac))


def encode_header(header: DirectoryHeader) -> bytes:
    """Return the JSON bytes of ``header``."""
    document = {
        "format": FORMAT_NAME,
        "version": header.version,
        "chunk_size": header.chunk_size,
        "dir_id": header.dir_id.hex(),
        "key_check": header.key_check.hex(),
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")


def decode_header(data: bytes) -> DirectoryHeader:
    """Parse a header.

    Raises:
        EncfsFormatError: Not a Sanctum encrypted directory header, or an unknown version.
    """
    try:
        document = json.loads(data)
        if document["format"] != FORMAT_NAME:
            raise EncfsFormatError(
                "not a Sanctum encrypted directory", code="encfs.not_encrypted_directory"
            )
        version = document["version"]
        header = DirectoryHeader(
            version=version,
            chunk_size=int(document["chunk_size"]),
            dir_id=bytes.fromhex(document["dir_id"]),
            key_check=bytes.fromhex(document["key_check"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise EncfsFormatError(
            f"the directory header is malformed: {error}", code="encfs.header_malformed"
        ) from None
    if version != FORMAT_VERSION:
        raise EncfsFormatError(
            f"encrypted directory format version {version} is not supported (this code reads "
            f"version {FORMAT_VERSION})",
            code="encfs.format_unsupported",
        )
    return header


@dataclass(frozen=True, slots=True)
class DirectoryKeys:
    """The keys of one directory, derived from its master key after the key check passed."""

    dir_id: bytes
    chunk_size: int
    index: AESGCM = field(repr=False)
    _master: bytes = field(repr=False)

    def file_aead(self, file_id: bytes) -> AESGCM:
        """Return the AES-256-GCM instance of one file (its key is derived from the file id)."""
        return AESGCM(_derive(self._master, self.dir_id, b"file " + file_id))


def unlock(header: DirectoryHeader, master: bytes) -> DirectoryKeys:
    """Check ``master`` against the header and derive the directory's keys.

    Raises:
        EncfsUsageError: ``master`` is not 32 bytes.
        WrongKeyError: The key is not this directory's key (or the header was altered).
    """
    _check_master(master)
    _check_chunk_size(header.chunk_size)
    expected = _header_mac(master, header.version, header.chunk_size, header.dir_id)
    if not hmac.compare_digest(expected, header.key_check):
        raise WrongKeyError(
            "the key does not open this encrypted directory (wrong key, or the header was altered)",
            hint="check that the key belongs to this directory (sanctum files inspect)",
        )
    return DirectoryKeys(
        dir_id=header.dir_id,
        chunk_size=header.chunk_size,
        index=AESGCM(_derive(master, header.dir_id, b"index")),
        _master=master,
    )


# -- Chunks ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """Where one chunk is and how to authenticate it (an entry of the file record's table).

    Attributes:
        slot: Slot file (0 or 1) holding the chunk, or :data:`HOLE_SLOT` for a chunk of zeros
            never written.
        generation: Generation of the commit that wrote this version of the chunk.
        nonce: The 12-byte GCM nonce.
        tag: The 16-byte GCM tag.
    """

    slot: int
    generation: int
    nonce: bytes
    tag: bytes

    @property
    def is_hole(self) -> bool:
        """Return whether this chunk is all zeros and has no ciphertext on the host."""
        return self.slot == HOLE_SLOT


HOLE: Final = ChunkRecord(HOLE_SLOT, 0, bytes(NONCE_SIZE), bytes(TAG_SIZE))


def chunk_count(length: int, chunk_size: int) -> int:
    """Return the number of chunks of a file of ``length`` bytes."""
    return -(-length // chunk_size)


def chunk_aad(file_id: bytes, dir_id: bytes, index: int, generation: int, final: bool) -> bytes:
    """Return the associated data of chunk ``index`` of a file."""
    return b"SEFC" + _AAD_CHUNK.pack(file_id, dir_id, index, generation, int(final))


def seal_chunk(
    aead: AESGCM,
    *,
    file_id: bytes,
    dir_id: bytes,
    index: int,
    generation: int,
    final: bool,
    slot: int,
    nonce: bytes,
    plaintext: bytes | bytearray | memoryview,
    out: bytearray | memoryview,
) -> ChunkRecord:
    """Encrypt one whole (padded) chunk into ``out``.

    Args:
        aead: The file's cipher.
        file_id: The file's id.
        dir_id: The directory's id.
        index: The chunk index.
        generation: The generation of the commit this chunk version belongs to.
        final: Whether this is the file's last chunk.
        slot: The slot file it will be written to.
        nonce: 12 fresh random bytes.
        plaintext: The chunk (a whole chunk, zero-padded).
        out: A buffer of ``len(plaintext) + TAG_SIZE`` bytes: receives the ciphertext followed
            by the tag (only the ciphertext goes to the slot file).

    Returns:
        The chunk's record for the file's table (it keeps the tag).
    """
    aead.encrypt_into(nonce, plaintext, chunk_aad(file_id, dir_id, index, generation, final), out)
    return ChunkRecord(slot, generation, nonce, bytes(out[-TAG_SIZE:]))


def open_chunk(
    aead: AESGCM,
    *,
    file_id: bytes,
    dir_id: bytes,
    index: int,
    final: bool,
    record: ChunkRecord,
    sealed: bytes | bytearray | memoryview,
    out: bytearray | memoryview | None = None,
) -> bytes | bytearray | memoryview:
    """Decrypt and authenticate one chunk against its record.

    Args:
        aead: The file's cipher.
        file_id: The file's id.
        dir_id: The directory's id.
        index: The chunk index.
        final: Whether this is the file's last chunk.
        record: The chunk's record from the file record.
        sealed: The ciphertext followed by the record's tag.
        out: A buffer of the plaintext's length to decrypt into (saves a copy).

    Returns:
        The plaintext (``out`` when given).

    Raises:
        cryptography.exceptions.InvalidTag: The chunk does not authenticate (the caller turns
            this into an integrity error with the file's context).
    """
    aad = chunk_aad(file_id, dir_id, index, record.generation, final)
    if out is None:
        return aead.decrypt(record.nonce, sealed, aad)
    aead.decrypt_into(record.nonce, sealed, aad, out)
    return out


# -- File records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileRecord:
    """The authenticated description of one committed file version (``<file id>.m``).

    Attributes:
        file_id: The file's random id (also its host name).
        generation: Commit counter of the file, starting at 0 for an empty new file.
        length: Plaintext length in bytes.
        slot_sizes: Expected sizes of the two slot files after this commit.
        chunks: One record per chunk.
    """

    file_id: bytes
    generation: int
    length: int
    slot_sizes: tuple[int, int]
    chunks: tuple[ChunkRecord, ...]


def _file_aad(dir_id: bytes, file_id: bytes) -> bytes:
    return b"SEFR" + dir_id + file_id


def encode_file_record(aead: AESGCM, dir_id: bytes, record: FileRecord, nonce: bytes) -> bytes:
    """Return ``nonce || AES-GCM(record)``, bound to the directory and the file id."""
    parts = [
        _FILE_HEAD.pack(
            _FILE_MAGIC,
            FORMAT_VERSION,
            record.file_id,
            record.generation,
            record.length,
            record.slot_sizes[0],
            record.slot_sizes[1],
            len(record.chunks),
        )
    ]
    parts.extend(
        _RECORD.pack(chunk.slot, chunk.generation, chunk.nonce, chunk.tag)
        for chunk in record.chunks
    )
    return nonce + aead.encrypt(nonce, b"".join(parts), _file_aad(dir_id, record.file_id))


def decode_file_record(aead: AESGCM, dir_id: bytes, file_id: bytes, data: bytes) -> FileRecord:
    """Decrypt and parse a file record expected to belong to ``file_id``.

    Raises:
        cryptography.exceptions.InvalidTag: It does not authenticate as this file's record
            (tampered, truncated, or another file's record).
        ValueError: It authenticates but is malformed (a bug or an unknown version).
    """
    plain = aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], _file_aad(dir_id, file_id))
    magic, version, stored_id, generation, length, size0, size1, count = _FILE_HEAD.unpack_from(
        plain
    )
    if magic != _FILE_MAGIC or version != FORMAT_VERSION or stored_id != file_id:
        msg = "file record header mismatch"
        raise ValueError(msg)
    if len(plain) != _FILE_HEAD.size + count * _RECORD.size:
        msg = "file record length mismatch"
        raise ValueError(msg)
    chunks = tuple(
        ChunkRecord(*_RECORD.unpack_from(plain, _FILE_HEAD.size + i * _RECORD.size))
        for i in range(count)
    )
    return FileRecord(stored_id, generation, length, (size0, size1), chunks)


# -- The index ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One name of the directory tree.

    Attributes:
        kind: ``"file"`` or ``"dir"``.
        mode: Permission bits.
        mtime_ns: Modification time (nanoseconds since the epoch).
        file_id: The file's id (files only, else empty).
        generation: The file's committed generation (files only).
        size: The file's committed length (files only).
    """

    kind: Literal["file", "dir"]
    mode: int
    mtime_ns: int
    file_id: bytes = b""
    generation: int = 0
    size: int = 0


@dataclass(frozen=True, slots=True)
class Index:
    """The directory's integrity record.

    Attributes:
        epoch: Incremented on every write of the index (a monotonic counter a manager can pin).
        clean: Whether the last mount was closed cleanly (crash residue is tolerated only if not).
        entries: Every name (relative POSIX path without leading slash) and its entry.
    """

    epoch: int
    clean: bool
    entries: Mapping[str, Entry]


def _index_aad(dir_id: bytes) -> bytes:
    return b"SEFI" + dir_id


def encode_index(aead: AESGCM, dir_id: bytes, index: Index, nonce: bytes) -> bytes:
    """Return ``nonce || AES-GCM(padded JSON of index)``."""
    document = {
        "version": FORMAT_VERSION,
        "epoch": index.epoch,
        "clean": index.clean,
        "entries": {
            name: [
                entry.kind,
                entry.mode,
                entry.mtime_ns,
                entry.file_id.hex(),
                entry.generation,
                entry.size,
            ]
            for name, entry in sorted(index.entries.items())
        },
    }
    plain = json.dumps(document, separators=(",", ":")).encode("utf-8")
    plain += b" " * (-len(plain) % INDEX_PAD)
    return nonce + aead.encrypt(nonce, plain, _index_aad(dir_id))


def decode_index(aead: AESGCM, dir_id: bytes, data: bytes) -> Index:
    """Decrypt and parse the index.

    Raises:
        cryptography.exceptions.InvalidTag: The index does not authenticate.
        ValueError: It authenticates but is malformed.
    """
    if len(data) < NONCE_SIZE + TAG_SIZE:
        raise InvalidTag
    plain = aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], _index_aad(dir_id))
    document = json.loads(plain)
    if document.get("version") != FORMAT_VERSION:
        msg = "unknown index version"
        raise ValueError(msg)
    entries: dict[str, Entry] = {}
    for name, (kind, mode, mtime_ns, file_id, generation, size) in document["entries"].items():
        if kind not in ("file", "dir"):
            msg = f"unknown entry kind {kind!r}"
            raise ValueError(msg)
        entries[name] = Entry(kind, mode, mtime_ns, bytes.fromhex(file_id), generation, size)
    return Index(epoch=int(document["epoch"]), clean=bool(document["clean"]), entries=entries)
