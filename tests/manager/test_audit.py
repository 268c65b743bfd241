"""The audit log: hash chains detect modified, deleted and inserted entries; signed
checkpoints; concurrent appends; queries, paging and export."""

from __future__ import annotations

import csv
import io
import json
import logging
import threading

from sqlalchemy import delete, select, text, update

from sanctum.manager.models import AuditChainHead, AuditEntry, Role
from sanctum.manager.services.audit import (
    record,
    sign_chain_heads,
    verify_chain,
)


def _make_entries(harness, count=5):
    for number in range(count):
        harness.client.post(
            harness.url("/apikeys"), json={"name": f"k{number}"}, headers=harness.headers()
        )


def _verify(harness):
    return harness.client.get(harness.url("/audit/verify"), headers=harness.headers()).json()


def _entry_ids(harness):
    with harness.runtime.db.transaction() as session:
        return session.scalars(
            select(AuditEntry.id)
            .where(AuditEntry.chain == harness.account_id)
            .order_by(AuditEntry.seq)
        ).all()


def test_intact_chain_verifies(harness):
    _make_entries(harness)
    report = _verify(harness)
    assert report["intact"] is True
    assert report["entries_checked"] == report["head_seq"] >= 6


def test_modified_entry_is_detected(harness):
    _make_entries(harness)
    victim = _entry_ids(harness)[2]
    with harness.runtime.db.engine.begin() as connection:
        connection.execute(
            update(AuditEntry).where(AuditEntry.id == victim).values(outcome="failure")
        )
    report = _verify(harness)
    assert report["intact"] is False
    assert report["problem"]["code"] == "audit.entry_modified"
    assert report["problem"]["entry_id"] == victim


def test_deleted_entry_is_detected(harness):
    _make_entries(harness)
    ids = _entry_ids(harness)
    with harness.runtime.db.engine.begin() as connection:
        connection.execute(delete(AuditEntry).where(AuditEntry.id == ids[3]))
    report = _verify(harness)
    assert report["problem"]["code"] == "audit.link_missing"
    assert report["problem"]["seq"] == 4


def test_deleted_tail_is_detected_by_the_head(harness):
    _make_entries(harness)
    ids = _entry_ids(harness)
    with harness.runtime.db.engine.begin() as connection:
        connection.execute(delete(AuditEntry).where(AuditEntry.id == ids[-1]))
    assert _verify(harness)["problem"]["code"] == "audit.head_mismatch"


def test_inserted_entry_is_detected(harness):
    _make_entries(harness, 3)
    with harness.runtime.db.transaction() as session:
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.chain == harness.account_id)
            .order_by(AuditEntry.seq)
        ).all()
        second = entries[1]
        forged = {
            column.name: getattr(second, column.key)
            for column in AuditEntry.__table__.columns
            if column.name != "id"
        }
    # Make room after entry 2 and insert a forged entry that links to it.
    later = list(reversed(_entry_ids(harness)[2:]))
    with harness.runtime.db.engine.begin() as connection:
        for entry_id in later:
            connection.execute(
                update(AuditEntry).where(AuditEntry.id == entry_id).values(seq=AuditEntry.seq + 1)
            )
        forged.update(seq=3, prev_hash=second.entry_hash, action="apikey.revoked")
        connection.execute(AuditEntry.__table__.insert().values(**forged))
    report = _verify(harness)
    assert report["intact"] is False
    assert report["problem"]["code"] in {"audit.entry_modified", "audit.link_broken"}
    assert report["problem"]["seq"] == 3


def test_rewritten_chain_is_caught_by_signed_checkpoint(harness):
    _make_entries(harness, 3)
    runtime = harness.runtime
    with runtime.db.transaction() as session:
        assert sign_chain_heads(session, runtime.audit_signer(), harness.clock.now()) >= 1
        assert sign_chain_heads(session, runtime.audit_signer(), harness.clock.now()) == 0
    # Rewrite history consistently: drop the last entry and move the head back.
    ids = _entry_ids(harness)
    with runtime.db.engine.begin() as connection:
        last = connection.execute(
            select(AuditEntry.seq, AuditEntry.prev_hash).where(AuditEntry.id == ids[-1])
        ).one()
        connection.execute(delete(AuditEntry).where(AuditEntry.id == ids[-1]))
        connection.execute(
            update(AuditChainHead)
            .where(AuditChainHead.chain == harness.account_id)
            .values(seq=last.seq - 1, entry_hash=last.prev_hash)
        )
    report = _verify(harness)
    assert report["checkpoints_checked"] == 1
    assert report["problem"]["code"] == "audit.checkpoint_mismatch"


def test_concurrent_appends_stay_linear(harness):
    runtime = harness.runtime
    errors = []

    def writer(number):
        try:
            for index in range(10):
                with runtime.db.transaction() as session:
                    record(
                        session,
                        now=harness.clock.now(),
                        action="system.test",
                        account_id=harness.account_id,
                        actor_type="system",
                        details={"writer": number, "index": index},
                    )
        except Exception as error:  # noqa: BLE001 (collected and asserted below)
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with runtime.db.transaction() as session:
        report = verify_chain(session, harness.account_id, runtime.audit_public_keys)
    assert report.intact
    assert report.entries_checked >= 40


def test_query_filters_and_cursor_paging(harness):
    _make_entries(harness, 5)
    harness.client.post(
        "/v1/auth/token", json={"email": "admin@example.org", "password": "bad-password-1"}
    )
    page = harness.client.get(
        harness.url("/audit"), params={"limit": 2, "family": "apikey"}, headers=harness.headers()
    ).json()
    assert len(page["entries"]) == 2
    assert all(e["action"] == "apikey.created" for e in page["entries"])
    seen = [e["id"] for e in page["entries"]]
    cursor = page["next_cursor"]
    while cursor:
        page = harness.client.get(
            harness.url("/audit"),
            params={"limit": 2, "family": "apikey", "cursor": cursor},
            headers=harness.headers(),
        ).json()
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
    actor = harness.client.get(
        harness.url("/audit"),
        params={"actor_id": harness.admin_id, "outcome": "success"},
        headers=harness.headers(),
    ).json()["entries"]
    assert {e["actor_id"] for e in actor} == {harness.admin_id}
    bad = harness.client.get(
        harness.url("/audit"), params={"cursor": "!!"}, headers=harness.headers()
    )
    assert bad.status_code == 400
    future = harness.client.get(
        harness.url("/audit"), params={"since": "2030-01-01T00:00:00Z"}, headers=harness.headers()
    ).json()
    assert future["entries"] == []


def test_export_jsonl_and_csv(harness):
    _make_entries(harness, 2)
    jsonl = harness.client.get(harness.url("/audit/export"), headers=harness.headers())
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    assert lines[-1]["action"] == "apikey.created"
    as_csv = harness.client.get(
        harness.url("/audit/export"), params={"format": "csv"}, headers=harness.headers()
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == len(lines)
    assert rows[0]["entry_hash"] == lines[0]["entry_hash"]


def test_entries_are_logged_as_json_after_commit(harness, caplog):
    with caplog.at_level(logging.INFO, logger="sanctum.audit"):
        harness.client.post(
            harness.url("/apikeys"), json={"name": "logged"}, headers=harness.headers()
        )
        harness.client.post(harness.url("/apikeys"), json={"name": ""}, headers=harness.headers())
    logged = [r.audit for r in caplog.records if hasattr(r, "audit")]
    assert [entry["action"] for entry in logged] == ["apikey.created"]
    assert logged[0]["details"]["name"] == "logged"


def test_viewer_reads_audit_but_not_other_accounts(harness):
    _, viewer = harness.add_user(Role.viewer)
    assert (
        harness.client.get(harness.url("/audit"), headers=harness.headers(viewer)).status_code
        == 200
    )
    other = harness.client.post(
        "/v1/accounts", json={"name": "o"}, headers=harness.headers()
    ).json()
    assert (
        harness.client.get(
            f"/v1/accounts/{other['id']}/audit", headers=harness.headers(viewer)
        ).status_code
        == 403
    )
    with harness.runtime.db.engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
