"""When ending a request's transaction needs I/O: the request session ends on the event loop only
when it does not (nothing flushed, nothing pending, or the handler committed already)."""

from __future__ import annotations

import datetime as dt

from sanctum.manager.db import Database
from sanctum.manager.models_attestation import AttestNonce

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _nonce(label: str) -> AttestNonce:
    return AttestNonce(
        nonce_hash=label * 64, created_at=NOW, expires_at=NOW + dt.timedelta(minutes=5)
    )


def test_pending_objects_or_an_open_connection_need_io(database_url) -> None:
    db = Database(database_url)
    db.migrate()
    try:
        with db.transaction() as session:
            assert not db.holds_connection(session)  # Opened, nothing done: no I/O to end it.
            session.add(_nonce("a"))
            assert db.holds_connection(session)  # The commit would flush (and connect).
            session.flush()
            assert db.holds_connection(session)
            db.commit(session)
            assert not db.holds_connection(session)  # The handler committed already.
        with db.transaction() as session:
            assert session.get(AttestNonce, "a" * 64) is not None  # The early commit stuck.
            assert db.holds_connection(session)  # A read opened the transaction.
    finally:
        db.dispose()
