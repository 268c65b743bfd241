"""Signed encrypted-directory reports: EC and RSA signatures over the exact payload bytes."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import ValidationError

from sanctum.errors import EvidenceError, UsageError
from sanctum.protocol.dir_reports import (
    DIR_REPORT_LABEL,
    DirReport,
    SignedDirReport,
    sign_dir_report,
    verify_dir_report_signature,
)

NOW = dt.datetime(2026, 11, 28, 9, tzinfo=dt.UTC)
CERT = "-----BEGIN CERTIFICATE-----\n" + "A" * 64 + "\n-----END CERTIFICATE-----\n"
REPORT = DirReport(event="mounted", path="/data", version=1, epoch=42, issued_at=NOW)


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048)],
    ids=["ec", "rsa"],
)
def test_sign_and_verify(key):
    signed = sign_dir_report(key, CERT, REPORT)
    assert verify_dir_report_signature(key.public_key(), signed) == REPORT
    # The wire form round-trips (base64 payload and signature).
    again = SignedDirReport.model_validate_json(signed.model_dump_json())
    assert verify_dir_report_signature(key.public_key(), again) == REPORT
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(EvidenceError) as raised:
        verify_dir_report_signature(other.public_key(), signed)
    assert raised.value.code == "dir_report.signature_invalid"


def test_payload_bytes_and_label_are_what_is_signed():
    key = ec.generate_private_key(ec.SECP256R1())
    signed = sign_dir_report(key, CERT, REPORT)
    changed = signed.model_copy(update={"payload": signed.payload.replace(b"42", b"43")})
    with pytest.raises(EvidenceError):
        verify_dir_report_signature(key.public_key(), changed)
    # A signature over the bare payload (no label) does not verify either.
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    bare = signed.model_copy(
        update={"signature": key.sign(signed.payload, ec.ECDSA(hashes.SHA256()))}
    )
    with pytest.raises(EvidenceError):
        verify_dir_report_signature(key.public_key(), bare)
    assert DIR_REPORT_LABEL.endswith(b"\x00")


def test_malformed_payload_and_unsupported_keys():
    key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    payload = b'{"event": "mounted"}'
    signature = key.sign(DIR_REPORT_LABEL + payload, ec.ECDSA(hashes.SHA256()))
    signed = SignedDirReport(certificate=CERT, payload=payload, signature=signature)
    with pytest.raises(EvidenceError) as raised:
        verify_dir_report_signature(key.public_key(), signed)
    assert raised.value.code == "dir_report.malformed"
    with pytest.raises(UsageError):
        sign_dir_report(ed25519.Ed25519PrivateKey.generate(), CERT, REPORT)
    with pytest.raises(EvidenceError):
        verify_dir_report_signature(
            ed25519.Ed25519PrivateKey.generate().public_key(),
            sign_dir_report(key, CERT, REPORT),
        )


@pytest.mark.parametrize("path", ["data", "/a/../b", "/a\x00b"])
def test_report_paths_must_be_absolute_and_clean(path):
    with pytest.raises(ValidationError):
        DirReport(event="mounted", path=path, version=1, epoch=1, issued_at=NOW)
