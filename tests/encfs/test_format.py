"""The pure format functions: round trips, binding of every field, versions."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from sanctum.encfs import EncfsFormatError, EncfsUsageError, WrongKeyError
from sanctum.encfs.format import (
    HOLE,
    TAG_SIZE,
    ChunkRecord,
    Entry,
    FileRecord,
    Index,
    decode_file_record,
    decode_header,
    decode_index,
    derive_gramine_key,
    encode_file_record,
    encode_index,
    new_header,
    open_chunk,
    seal_chunk,
    unlock,
)

MASTER = bytes(range(32))
DIR_ID = bytes(16)
FILE_ID = b"\x01" * 16


def _seal(aead: AESGCM, plaintext: bytes, **changes):
    fields = {
        "file_id": FILE_ID,
        "dir_id": DIR_ID,
        "index": 3,
        "generation": 7,
        "final": False,
        "slot": 1,
        "nonce": b"\x02" * 12,
    }
    fields.update(changes)
    out = bytearray(len(plaintext) + TAG_SIZE)
    record = seal_chunk(aead, plaintext=plaintext, out=out, **fields)
    return bytes(out), record


@pytest.mark.parametrize(
    "change",
    [
        {"file_id": b"\x09" * 16},
        {"dir_id": b"\x09" * 16},
        {"index": 4},
        {"final": True},
    ],
)
def test_chunk_binds_its_context(change) -> None:
    aead = AESGCM(os.urandom(32))
    sealed, record = _seal(aead, b"p" * 64)
    base = {"file_id": FILE_ID, "dir_id": DIR_ID, "index": 3, "final": False}
    assert open_chunk(aead, record=record, sealed=sealed, **base) == b"p" * 64
    with pytest.raises(InvalidTag):
        open_chunk(aead, record=record, sealed=sealed, **{**base, **change})
    older = ChunkRecord(record.slot, 6, record.nonce, record.tag)
    with pytest.raises(InvalidTag):
        open_chunk(aead, record=older, sealed=sealed, **base)


@given(
    length=st.integers(0, 10**12),
    chunks=st.lists(
        st.builds(
            ChunkRecord,
            st.sampled_from([0, 1, 255]),
            st.integers(0, 2**63),
            st.binary(min_size=12, max_size=12),
            st.binary(min_size=16, max_size=16),
        ),
        max_size=20,
    ),
)
def test_file_record_round_trip(length: int, chunks) -> None:
    aead = AESGCM(MASTER)
    record = FileRecord(FILE_ID, 9, length, (640, 128), tuple(chunks))
    data = encode_file_record(aead, DIR_ID, record, b"\x03" * 12)
    assert decode_file_record(aead, DIR_ID, FILE_ID, data) == record
    with pytest.raises(InvalidTag):
        decode_file_record(aead, DIR_ID, b"\x04" * 16, data)
    with pytest.raises(InvalidTag):
        decode_file_record(aead, b"\x05" * 16, FILE_ID, data)


@given(names=st.lists(st.text(min_size=1, max_size=30), max_size=10, unique=True))
def test_index_round_trip_and_padding(names) -> None:
    aead = AESGCM(MASTER)
    entries = {name: Entry("file", 0o600, 5, FILE_ID, 3, 99) for name in names}
    entries[""] = Entry("dir", 0o755, 1)
    index = Index(epoch=42, clean=False, entries=entries)
    data = encode_index(aead, DIR_ID, index, b"\x06" * 12)
    assert (len(data) - 12 - 16) % 4096 == 0
    assert decode_index(aead, DIR_ID, data) == index


def test_header_and_keys() -> None:
    header = decode_header(new_header(MASTER, DIR_ID, 4096))
    assert header.chunk_size == 4096
    keys = unlock(header, MASTER)
    assert keys.chunk_size == 4096
    with pytest.raises(WrongKeyError):
        unlock(header, bytes(32))
    with pytest.raises(EncfsUsageError):
        new_header(MASTER, DIR_ID, 1000)
    with pytest.raises(EncfsUsageError):
        unlock(header, b"short")
    assert keys.file_aead(FILE_ID).encrypt(b"\0" * 12, b"x", None) != keys.file_aead(
        b"\x02" * 16
    ).encrypt(b"\0" * 12, b"x", None)


def test_unknown_versions_and_formats_are_refused() -> None:
    text = new_header(MASTER, DIR_ID).decode()
    with pytest.raises(EncfsFormatError) as caught:
        decode_header(text.replace('"version": 1', '"version": 2').encode())
    assert caught.value.code == "encfs.format_unsupported"
    with pytest.raises(EncfsFormatError) as caught:
        decode_header(b"{}")
    assert caught.value.code == "encfs.header_malformed"
    with pytest.raises(EncfsFormatError) as caught:
        decode_header(text.replace("sanctum-encfs", "other").encode())
    assert caught.value.code == "encfs.not_encrypted_directory"


def test_gramine_key_is_128_bits_and_separated() -> None:
    key = derive_gramine_key(MASTER, "sanctum_fs")
    assert len(key) == 16
    assert key != derive_gramine_key(MASTER, "other")
    assert key != derive_gramine_key(bytes(32), "sanctum_fs")
    assert HOLE.is_hole
