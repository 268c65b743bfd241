"""Nodes on SQLite and PostgreSQL: collateral rollback at re-join and re-check (TCB info and QE
identity tcbEvaluationDataNumber), and the certificate of a flagged, failed or deactivated node
revoked onto the account's CRL (read with cryptography and ``openssl crl``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from cryptography import x509
from sqlalchemy import select, update

from conftest import START
from sanctum.attestation.collateral import Collateral
from sanctum.manager.models_attestation import (
    CertificateRecord,
    CertificateStatus,
    Node,
    NodeStatus,
)
from sanctum.manager.services.attestation import wire_collateral
from sanctum.manager.services.node_recheck import RecheckReport, run_node_recheck
from sanctum.platforms.collateral_source import SimulatedCollateralSource
from sanctum.platforms.simulated import TcbDial

INTERVAL = dt.timedelta(hours=1)


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    return Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))


def _token(kit: Kit, name: str) -> tuple[str, str]:
    """Register a node; return its id and join token."""
    created = kit.client.post(
        kit.harness.url("/nodes"), json={"name": name}, headers=kit.harness.headers()
    )
    assert created.status_code == 201, created.text
    return created.json()["node"]["id"], created.json()["join_token"]


def _new_token(kit: Kit, node_id: str) -> str:
    renewed = kit.client.post(
        kit.harness.url(f"/nodes/{node_id}/join-token"), headers=kit.harness.headers()
    )
    assert renewed.status_code == 200, renewed.text
    return str(renewed.json()["join_token"])


def _join(kit: Kit, name: str, token: str, **options: Any) -> Any:
    request = Workload.make(kit.platform(name, **options)).request("node", kit.challenge())
    body = {key: request[key] for key in ("quote", "csr", "nonce", "collateral")}
    return kit.client.post("/v1/nodes/join", json={"token": token, **body})


def _joined(kit: Kit, name: str, **options: Any) -> dict[str, Any]:
    _, token = _token(kit, name)
    response = _join(kit, name, token, **options)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _node(kit: Kit, node_id: str) -> Node:
    with kit.harness.runtime.db.transaction() as session:
        node = session.get(Node, node_id)
        assert node is not None
        session.expunge(node)
        return node


def _set(kit: Kit, node_id: str, **values: Any) -> None:
    with kit.harness.runtime.db.transaction() as session:
        session.execute(update(Node).where(Node.id == node_id).values(**values))


def _certificates(kit: Kit, node_id: str) -> list[CertificateRecord]:
    with kit.harness.runtime.db.transaction() as session:
        records = list(
            session.scalars(
                select(CertificateRecord)
                .where(CertificateRecord.node_id == node_id)
                .order_by(CertificateRecord.created_at, CertificateRecord.id)
            ).all()
        )
        session.expunge_all()
        return records


def _recheck(kit: Kit, source: Any, now: dt.datetime, **options: Any) -> RecheckReport:
    return run_node_recheck(
        kit.harness.runtime.db.transaction,
        source,
        now,
        trust=kit.harness.app.state.node_recheck.trust,
        interval=INTERVAL,
        runtime=kit.harness.runtime,
        **options,
    )


# --- Rollback: a re-join never judges the node with older collateral -----------------------


def test_the_join_records_both_evaluation_data_numbers(kit):
    node_id = _joined(kit, "node-n")["node"]["id"]
    node = _node(kit, node_id)
    assert (node.tcb_evaluation_data_number, node.qe_tcb_evaluation_data_number) == (1, 1)
    shown = kit.client.get(
        kit.harness.url(f"/nodes/{node_id}"), headers=kit.harness.headers()
    ).json()
    assert (shown["tcb_evaluation_data_number"], shown["qe_tcb_evaluation_data_number"]) == (1, 1)
    # A re-join with collateral as new as recorded is accepted.
    again = _join(kit, "node-n", _new_token(kit, node_id))
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("column", "part"),
    [("tcb_evaluation_data_number", "tcb_info"), ("qe_tcb_evaluation_data_number", "qe_identity")],
)
def test_a_rejoin_with_older_collateral_is_refused(kit, column, part):
    joined = _joined(kit, "node-r")
    node_id, serial = joined["node"]["id"], joined["node"]["certificate_serial"]
    # The node was already judged with evaluation data number 2 (after a TCB recovery); the
    # collateral of the re-join is the older issue 1.
    _set(kit, node_id, **{column: 2})
    before = _node(kit, node_id)
    count = kit.certificate_count()
    refused = _join(kit, "node-r", _new_token(kit, node_id), tcb=TcbDial.OUT_OF_DATE)
    assert refused.status_code == 503, refused.text
    problem = refused.json()
    assert problem["code"] == "collateral.rollback"
    assert problem["details"]["part"] == part
    assert (
        problem["details"]["tcb_evaluation_data_number"],
        problem["details"]["highest_seen"],
    ) == (
        1,
        2,
    )
    # Nothing about the node changed: not judged, not lowered, no certificate issued or revoked.
    after = _node(kit, node_id)
    assert (after.status, after.tcb_status, after.flag) == (NodeStatus.active, "UpToDate", None)
    assert getattr(after, column) == 2
    assert (after.certificate_serial, after.attested_at) == (serial, before.attested_at)
    assert kit.certificate_count() == count
    assert [record.status for record in _certificates(kit, node_id)] == [CertificateStatus.active]
    assert kit.audit_actions("node.join_refused")[-1].details["code"] == "collateral.rollback"
    assert not kit.audit_actions("certificate.revoked")


# --- The join checks its collateral before judging the node (ADR 0131) ----------------------


@dataclass(frozen=True)
class _Source:
    """The manager's collateral source, answering with one fixed collateral."""

    collateral: Collateral

    def for_quote(self, quote: Any, *, now: dt.datetime) -> Collateral:  # noqa: ARG002
        return self.collateral


def _join_with(
    kit: Kit, name: str, token: str, collateral: Collateral | None, **options: Any
) -> Any:
    """Join with ``collateral`` sent by the node (``None``: none, the manager's source's)."""
    request = Workload.make(kit.platform(name, **options)).request("node", kit.challenge())
    body = {key: request[key] for key in ("quote", "csr", "nonce")}
    if collateral is not None:
        body["collateral"] = wire_collateral(collateral).model_dump(mode="json")
    return kit.client.post("/v1/nodes/join", json={"token": token, **body})


def _broken_tcb_info_signature(collateral: Collateral) -> Collateral:
    signature = collateral.tcb_info_signature
    return dataclasses.replace(
        collateral, tcb_info_signature=signature[:5] + bytes([signature[5] ^ 1]) + signature[6:]
    )


def _assert_unchanged(kit: Kit, node_id: str, serial: str, before: Node) -> None:
    """The refused join left the node as it was: not judged, nothing revoked or issued."""
    after = _node(kit, node_id)
    assert (after.status, after.tcb_status, after.flag, after.advisory_ids) == (
        before.status,
        before.tcb_status,
        before.flag,
        before.advisory_ids,
    )
    assert (after.tcb_evaluation_data_number, after.qe_tcb_evaluation_data_number) == (
        before.tcb_evaluation_data_number,
        before.qe_tcb_evaluation_data_number,
    )
    assert (after.certificate_serial, after.attested_at, after.platform_tcb) == (
        serial,
        before.attested_at,
        before.platform_tcb,
    )
    assert [(r.serial, r.status) for r in _certificates(kit, node_id)] == [
        (serial, CertificateStatus.active)
    ]
    assert not kit.audit_actions("certificate.revoked")


def _judged_node(kit: Kit, name: str, **numbers: int) -> tuple[str, str, Node]:
    """Join a node, then record evaluation data numbers it was judged with."""
    joined = _joined(kit, name)
    node_id, serial = joined["node"]["id"], joined["node"]["certificate_serial"]
    if numbers:
        _set(kit, node_id, **numbers)
    return node_id, serial, _node(kit, node_id)


@pytest.mark.parametrize(
    "options", [{"tcb": TcbDial.REVOKED}, {"expired": True}], ids=["revoked-tcb", "expired"]
)
def test_older_collateral_sent_by_the_node_is_a_rollback_whatever_else_fails(kit, options):
    # Probe of the review: older collateral that would also fail (a Revoked TCB level, or a
    # replayed issue past its nextUpdate) is refused as a rollback, before the node is judged.
    node_id, serial, before = _judged_node(kit, "node-o", tcb_evaluation_data_number=2)
    expired = options.pop("expired", False)
    older = kit.platform("node-o", **options).collateral(now=START, expired=expired)
    refused = _join_with(kit, "node-o", _new_token(kit, node_id), older, **options)
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "collateral.rollback"
    _assert_unchanged(kit, node_id, serial, before)
    assert kit.audit_actions("node.join_refused")[-1].details["code"] == "collateral.rollback"


def test_older_and_expired_collateral_of_the_source_is_a_rollback(kit, monkeypatch):
    node_id, serial, before = _judged_node(kit, "node-s", qe_tcb_evaluation_data_number=2)
    older = kit.platform("node-s", tcb=TcbDial.REVOKED).collateral(now=START, expired=True)
    monkeypatch.setattr(kit.harness.app.state.attestation, "collateral_source", _Source(older))
    refused = _join_with(kit, "node-s", _new_token(kit, node_id), None, tcb=TcbDial.REVOKED)
    assert refused.status_code == 503, refused.text
    assert (refused.json()["code"], refused.json()["details"]["part"]) == (
        "collateral.rollback",
        "qe_identity",
    )
    _assert_unchanged(kit, node_id, serial, before)


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda p: p.collateral(now=START, expired=True), "collateral.expired"),
        (
            lambda p: _broken_tcb_info_signature(p.collateral(now=START)),
            "tcb_info.signature_invalid",
        ),
        (lambda p: p.collateral(now=START + dt.timedelta(days=1)), "collateral.expired"),
    ],
    ids=["expired", "bad-signature", "not-yet-valid"],
)
def test_unusable_collateral_of_the_source_does_not_judge_the_node(kit, monkeypatch, make, cause):
    node_id, serial, before = _judged_node(kit, "node-u")
    source = _Source(make(kit.platform("node-u", tcb=TcbDial.REVOKED)))
    monkeypatch.setattr(kit.harness.app.state.attestation, "collateral_source", source)
    refused = _join_with(kit, "node-u", _new_token(kit, node_id), None, tcb=TcbDial.REVOKED)
    assert refused.status_code == 503, refused.text
    problem = refused.json()
    assert problem["code"] == "node.collateral_unusable"
    assert problem["details"] == {"cause": cause, "supplier": "source"}
    _assert_unchanged(kit, node_id, serial, before)
    # The same source with current collateral judges the node (Revoked: failed, revoked).
    current = _Source(kit.platform("node-u", tcb=TcbDial.REVOKED).collateral(now=START))
    monkeypatch.setattr(kit.harness.app.state.attestation, "collateral_source", current)
    judged = _join_with(kit, "node-u", _new_token(kit, node_id), None, tcb=TcbDial.REVOKED)
    assert judged.status_code == 422, judged.text
    assert judged.json()["code"] == "tcb.revoked"
    assert _node(kit, node_id).status == NodeStatus.failed
    assert [r.status for r in _certificates(kit, node_id)] == [CertificateStatus.revoked]


def test_source_collateral_for_another_platform_does_not_judge_the_node(kit, monkeypatch):
    node_id, serial, before = _judged_node(kit, "node-p")
    other = kit.platform("node-p", fmspc=bytes.fromhex("53494d0000aa")).collateral(now=START)
    monkeypatch.setattr(kit.harness.app.state.attestation, "collateral_source", _Source(other))
    refused = _join_with(kit, "node-p", _new_token(kit, node_id), None)
    assert refused.status_code == 503, refused.text
    assert refused.json()["details"] == {"cause": "tcb_info.fmspc_mismatch", "supplier": "source"}
    _assert_unchanged(kit, node_id, serial, before)
    # The same collateral sent by the node is its evidence: refused, and the node fails.
    monkeypatch.setattr(kit.harness.app.state.attestation, "collateral_source", None)
    sent = _join_with(kit, "node-p", _new_token(kit, node_id), other)
    assert sent.status_code == 422, sent.text
    assert sent.json()["code"] == "tcb_info.fmspc_mismatch"
    assert _node(kit, node_id).status == NodeStatus.failed


def test_expired_collateral_sent_by_the_node_does_not_judge_it(kit):
    node_id, serial, before = _judged_node(kit, "node-e")
    expired = kit.platform("node-e").collateral(now=START, expired=True)
    refused = _join_with(kit, "node-e", _new_token(kit, node_id), expired)
    assert refused.status_code == 503, refused.text
    assert (refused.json()["code"], refused.json()["details"]) == (
        "node.collateral_unusable",
        {"cause": "collateral.expired", "supplier": "node"},
    )
    _assert_unchanged(kit, node_id, serial, before)


def test_forged_collateral_sent_by_the_node_fails_it(kit):
    # Collateral the node sends is its evidence: a broken signature is refused like a quote's,
    # the node fails and its certificate is revoked.
    node_id, serial, _ = _judged_node(kit, "node-x")
    forged = _broken_tcb_info_signature(kit.platform("node-x").collateral(now=START))
    refused = _join_with(kit, "node-x", _new_token(kit, node_id), forged)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "tcb_info.signature_invalid"
    assert _node(kit, node_id).status == NodeStatus.failed
    [record] = _certificates(kit, node_id)
    assert (record.serial, record.status) == (serial, CertificateStatus.revoked)


# --- Rollback: the re-check tracks the QE identity's number too -----------------------------


def test_the_recheck_refuses_an_older_qe_identity(kit):
    node_id = _joined(kit, "node-q")["node"]["id"]
    _set(kit, node_id, qe_tcb_evaluation_data_number=2)
    outdated = SimulatedCollateralSource(kit.platform("node-q", tcb=TcbDial.OUT_OF_DATE))
    report = _recheck(kit, outdated, START + INTERVAL)
    assert (report.claimed, report.checked, report.changes) == (1, 0, ())
    [failure] = report.failures
    assert (failure.code, failure.retry, failure.node_ids) == (
        "collateral.rollback",
        True,
        (node_id,),
    )
    assert "QE identity" in failure.message
    node = _node(kit, node_id)
    assert (node.status, node.tcb_status, node.qe_tcb_evaluation_data_number) == (
        NodeStatus.active,
        "UpToDate",
        2,
    )


def test_the_recheck_records_the_qe_identity_number(kit):
    node_id = _joined(kit, "node-b")["node"]["id"]
    # Joined before the column existed (migration 0010): the first re-check records it.
    _set(kit, node_id, qe_tcb_evaluation_data_number=None)
    current = SimulatedCollateralSource(kit.platform("node-b"))
    report = _recheck(kit, current, START + INTERVAL)
    assert (report.checked, report.failures) == (1, ())
    assert _node(kit, node_id).qe_tcb_evaluation_data_number == 1


# --- A flagged, failed or deactivated node's certificate is revoked --------------------------


def _crl(kit: Kit, issuing_pem: str) -> tuple[x509.CertificateRevocationList, bytes]:
    response = kit.client.get(kit.harness.url("/ca/crl"))
    assert response.status_code == 200, response.text
    crl = x509.load_der_x509_crl(response.content)
    issuing = x509.load_pem_x509_certificate(issuing_pem.encode())
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    assert crl.issuer == issuing.subject
    return crl, response.content


def _openssl_lists(openssl: str, der: bytes, tmp_path: Any, serial: str, reason: str) -> None:
    path = tmp_path / "account.crl"
    path.write_bytes(der)
    text = subprocess.run(
        [openssl, "crl", "-inform", "DER", "-in", str(path), "-noout", "-text"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    listed = [
        line.split(":", 1)[1].strip().lower().lstrip("0")
        for line in text.splitlines()
        if line.strip().startswith("Serial Number:")
    ]
    assert serial in listed, text
    assert reason in text


def test_a_flagged_nodes_certificate_is_on_the_crl(kit, require_tool, tmp_path):
    openssl = require_tool("openssl")
    joined = _joined(kit, "node-f")
    node_id, serial = joined["node"]["id"], joined["node"]["certificate_serial"]
    # Another platform family (its own FMSPC): the outdated collateral is not for it.
    other = _joined(kit, "node-ok", fmspc=bytes.fromhex("53494d0000aa"))
    crl, _ = _crl(kit, joined["chain"][0])
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is None
    outdated = SimulatedCollateralSource(kit.platform("node-f", tcb=TcbDial.OUT_OF_DATE))
    report = _recheck(kit, outdated, START + INTERVAL, account_id=kit.harness.account_id)
    assert [change.node_id for change in report.flagged] == [node_id]
    assert [failure.node_ids for failure in report.failures] == [(other["node"]["id"],)]
    assert _node(kit, node_id).status == NodeStatus.failed
    [record] = _certificates(kit, node_id)
    assert (record.status, record.revocation_reason) == (
        CertificateStatus.revoked,
        "privilegeWithdrawn",
    )
    assert record.revoked_at is not None
    [revoked] = kit.audit_actions("certificate.revoked")
    assert (revoked.target_type, revoked.target_id, revoked.actor_type) == (
        "node",
        node_id,
        "system",
    )
    assert revoked.details == {"reason": "privilegeWithdrawn", "count": 1}
    # The node not flagged (not judged: the collateral is another family's) keeps its certificate.
    assert [r.status for r in _certificates(kit, other["node"]["id"])] == [CertificateStatus.active]
    crl, der = _crl(kit, joined["chain"][0])
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.privilege_withdrawn
    assert (
        crl.get_revoked_certificate_by_serial_number(int(other["node"]["certificate_serial"], 16))
        is None
    )
    _openssl_lists(openssl, der, tmp_path, serial, "Privilege Withdrawn")
    # A re-check that changes nothing revokes nothing more.
    again = _recheck(kit, outdated, START + 2 * INTERVAL, force=True)
    assert again.changes == ()
    assert len(kit.audit_actions("certificate.revoked")) == 1


def test_a_node_failing_a_rejoin_loses_its_certificate(kit):
    joined = _joined(kit, "node-j")
    node_id, serial = joined["node"]["id"], joined["node"]["certificate_serial"]
    refused = _join(kit, "node-j", _new_token(kit, node_id), tcb=TcbDial.OUT_OF_DATE)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "node.tcb_status_rejected"
    assert _node(kit, node_id).status == NodeStatus.failed
    [record] = _certificates(kit, node_id)
    assert (record.serial, record.status, record.revocation_reason) == (
        serial,
        CertificateStatus.revoked,
        "privilegeWithdrawn",
    )
    crl, _ = _crl(kit, joined["chain"][0])
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    # Once its platform is updated, a re-join issues a new certificate.
    rejoined = _join(kit, "node-j", _new_token(kit, node_id))
    assert rejoined.status_code == 200, rejoined.text
    assert rejoined.json()["node"]["status"] == "active"
    statuses = {r.serial: r.status for r in _certificates(kit, node_id)}
    assert statuses == {
        serial: CertificateStatus.revoked,
        rejoined.json()["node"]["certificate_serial"]: CertificateStatus.active,
    }


def test_a_deactivated_nodes_certificate_is_on_the_crl(kit, require_tool, tmp_path):
    openssl = require_tool("openssl")
    joined = _joined(kit, "node-d")
    node_id, serial = joined["node"]["id"], joined["node"]["certificate_serial"]
    response = kit.client.post(
        kit.harness.url(f"/nodes/{node_id}/deactivate"), headers=kit.harness.headers()
    )
    assert response.status_code == 200, response.text
    [revoked] = kit.audit_actions("certificate.revoked")
    assert (revoked.target_type, revoked.target_id) == ("node", node_id)
    assert revoked.details["reason"] == "cessationOfOperation"
    crl, der = _crl(kit, joined["chain"][0])
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.cessation_of_operation
    _openssl_lists(openssl, der, tmp_path, serial, "Cessation Of Operation")


def test_the_recheck_revokes_certificates_failed_and_deactivated_nodes_still_hold(kit, monkeypatch):
    # Nodes failed or deactivated before certificates were revoked with them (ADR 0130) still
    # hold an active certificate; the next re-check run revokes it, once, audited.
    failed = _joined(kit, "node-old-failed")
    gone = _joined(kit, "node-old-gone")
    active = _joined(kit, "node-active")
    failed_id, gone_id = failed["node"]["id"], gone["node"]["id"]
    _set(kit, failed_id, status=NodeStatus.failed, flag="node.tcb_status_rejected: old")
    _set(kit, gone_id, status=NodeStatus.deactivated)
    assert [r.status for r in _certificates(kit, failed_id)] == [CertificateStatus.active]
    source = SimulatedCollateralSource(kit.platform("node-active"))
    report = _recheck(kit, source, START + INTERVAL, account_id=kit.harness.account_id)
    assert (report.claimed, report.checked, report.changes, report.revoked) == (1, 1, (), 2)
    assert report.to_dict()["revoked"] == 2
    for node_id, serial, reason in (
        (failed_id, failed["node"]["certificate_serial"], "privilegeWithdrawn"),
        (gone_id, gone["node"]["certificate_serial"], "cessationOfOperation"),
    ):
        [record] = _certificates(kit, node_id)
        assert (record.serial, record.status, record.revocation_reason) == (
            serial,
            CertificateStatus.revoked,
            reason,
        )
    audited = {
        (entry.target_id, entry.details["reason"], entry.actor_type)
        for entry in kit.audit_actions("certificate.revoked")
    }
    assert audited == {
        (failed_id, "privilegeWithdrawn", "system"),
        (gone_id, "cessationOfOperation", "system"),
    }
    assert [r.status for r in _certificates(kit, active["node"]["id"])] == [
        CertificateStatus.active
    ]
    crl, _ = _crl(kit, failed["chain"][0])
    assert crl.get_revoked_certificate_by_serial_number(
        int(failed["node"]["certificate_serial"], 16)
    )
    # Idempotent: a second run (the route's, on demand) revokes and audits nothing more.
    monkeypatch.setattr(kit.harness.app.state.node_recheck, "source", source)
    again = kit.client.post(kit.harness.url("/nodes/recheck"), headers=kit.harness.headers())
    assert again.status_code == 200, again.text
    assert again.json()["revoked"] == 0
    assert len(kit.audit_actions("certificate.revoked")) == 2
