"""Nodes on SQLite and PostgreSQL: collateral rollback at re-join and re-check (TCB info and QE
identity tcbEvaluationDataNumber), and the certificate of a flagged, failed or deactivated node
revoked onto the account's CRL (read with cryptography and ``openssl crl``)."""

from __future__ import annotations

import datetime as dt
import subprocess
from typing import Any

import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from cryptography import x509
from sqlalchemy import select, update

from conftest import START
from sanctum.manager.models_attestation import (
    CertificateRecord,
    CertificateStatus,
    Node,
    NodeStatus,
)
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
