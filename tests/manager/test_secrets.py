"""Secrets at rest: envelope encryption, KEK handling and rotation, and a raw scan of the
database (SQLite file, PostgreSQL dump) for known secret bytes."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.engine import make_url

from conftest import BOOTSTRAP_PASSWORD, KEK, PG_BIN
from sanctum.errors import EvidenceError, UsageError
from sanctum.manager.models import DataKey, ManagerSecret
from sanctum.manager.secretbox import (
    Keyring,
    LocalKeyProvider,
    SecretBox,
    ensure_kek_file,
    load_kek_env,
    load_kek_file,
    rotate_kek,
)

KNOWN = [b"top-secret-value-\x01\x02\x03-sanctum", b"another secret: hunter2hunter2"]


def _forms(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
    ]


def _write_known_secrets(harness) -> list[bytes]:
    runtime = harness.runtime
    now = harness.clock.now()
    with runtime.db.transaction() as session:
        for number, value in enumerate(KNOWN):
            session.add(
                ManagerSecret(
                    name=f"test-{number}",
                    sealed=runtime.box.seal(session, value, context=f"test:{number}", now=now),
                    public=None,
                    created_at=now,
                )
            )
    api_key = harness.client.post(
        harness.url("/apikeys"), json={"name": "scan"}, headers=harness.headers()
    ).json()["secret"]
    invitation = harness.client.post(
        harness.url("/users"),
        json={"email": "scan@example.org", "name": "S"},
        headers=harness.headers(),
    ).json()["invitation_token"]
    signer_raw = runtime.audit_signer()._key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return [
        *KNOWN,
        runtime.token_key,
        signer_raw,
        KEK,
        api_key.encode(),
        invitation.encode(),
        BOOTSTRAP_PASSWORD.encode(),
    ]


def _dump(harness) -> bytes:
    db = harness.runtime.db
    url = make_url(str(db.engine.url.render_as_string(hide_password=False)))
    if db.backend == "sqlite":
        db.dispose()
        path = Path(url.database)
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    result = subprocess.run(
        [
            str(PG_BIN / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(url.port),
            "-U",
            "postgres",
            "--data-only",
            url.database,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return result.stdout


def test_raw_database_holds_no_secret(harness):
    secrets_written = _write_known_secrets(harness)
    # The secrets are really there (decryptable through the box)...
    with harness.runtime.db.transaction() as session:
        row = session.get(ManagerSecret, "test-0")
        assert harness.runtime.box.open(session, row.sealed, context="test:0") == KNOWN[0]
    raw = _dump(harness)
    assert b"scan@example.org" in raw  # The dump really holds the data...
    for secret in secrets_written:
        for form in _forms(secret):
            assert form not in raw, f"found a secret in the raw database: {secret[:6]!r}..."


def test_sealed_blobs_are_bound_to_context_and_kek(harness):
    runtime = harness.runtime
    now = harness.clock.now()
    with runtime.db.transaction() as session:
        blob = runtime.box.seal(session, b"v", context="a", now=now)
        with pytest.raises(EvidenceError) as moved:
            runtime.box.open(session, blob, context="b")
        assert moved.value.code == "secret.corrupt"
        tampered = blob[:-1] + bytes([blob[-1] ^ 1])
        with pytest.raises(EvidenceError):
            runtime.box.open(session, tampered, context="a")
        with pytest.raises(EvidenceError):
            runtime.box.open(session, b"S1short", context="a")
        other = SecretBox(Keyring(LocalKeyProvider(b"\x07" * 32)))
        with pytest.raises(EvidenceError) as wrong_kek:
            other.open(session, blob, context="a")
        assert wrong_kek.value.code == "kek.unknown"


def test_kek_rotation_rewraps_data_keys(harness):
    runtime = harness.runtime
    now = harness.clock.now()
    with runtime.db.transaction() as session:
        blob = runtime.box.seal(session, b"survives rotation", context="rot", now=now)
    new = LocalKeyProvider(b"\x42" * 32)
    keyring = Keyring(new, [runtime.box.keyring.current])
    with runtime.db.transaction() as session:
        assert rotate_kek(session, keyring) >= 1
        assert rotate_kek(session, keyring) == 0
        assert {k.kek_id for k in session.scalars(select(DataKey))} == {new.kek_id}
    # Only the new KEK is needed now.
    fresh = SecretBox(Keyring(new))
    with runtime.db.transaction() as session:
        assert fresh.open(session, blob, context="rot") == b"survives rotation"
        old_only = SecretBox(Keyring(LocalKeyProvider(KEK)))
        with pytest.raises(EvidenceError):
            old_only.open(session, blob, context="rot")


def test_kek_file_created_0600_and_sources(tmp_path):
    path = tmp_path / "dir" / "kek.b64"
    provider, created = ensure_kek_file(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = ensure_kek_file(path)
    assert not created_again
    assert again.kek_id == provider.kek_id
    assert load_kek_file(path).kek_id == provider.kek_id
    raw = tmp_path / "raw"
    raw.write_bytes(os.urandom(32))
    load_kek_file(raw)
    env = {"K": base64.b64encode(b"\x01" * 32).decode()}
    assert load_kek_env("K", env).kek_id == LocalKeyProvider(b"\x01" * 32).kek_id
    for bad in ({"K": "short"}, {}):
        with pytest.raises(UsageError):
            load_kek_env("K", bad)
    (tmp_path / "bad").write_text("not base64 !!")
    with pytest.raises(UsageError):
        load_kek_file(tmp_path / "bad")
    with pytest.raises(UsageError):
        load_kek_file(tmp_path / "absent")
