"""The scheduled node re-check on SQLite and PostgreSQL: flagging after new TCB info, idempotent
periods, concurrent runs, an unreachable collateral source, the worker in the app's lifespan."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from conftest import START
from sanctum.attestation.collateral import Collateral
from sanctum.attestation.quote import Quote
from sanctum.errors import UsageError
from sanctum.manager.models_attestation import (
    CertificateRecord,
    CertificateStatus,
    Node,
    NodeStatus,
)
from sanctum.manager.services.node_recheck import (
    NodeRecheckWorker,
    RecheckReport,
    RecheckTrust,
    run_node_recheck,
)
from sanctum.platforms.collateral_source import CollateralSource, SimulatedCollateralSource
from sanctum.platforms.errors import CollateralUnavailableError
from sanctum.platforms.simulated import SimulatedPlatform, TcbDial

INTERVAL = dt.timedelta(hours=1)
OTHER_FMSPC = bytes.fromhex("53494d0000aa")


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    return Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))


def _join(kit: Kit, name: str, platform: SimulatedPlatform) -> str:
    created = kit.client.post(
        kit.harness.url("/nodes"), json={"name": name}, headers=kit.harness.headers()
    )
    assert created.status_code == 201, created.text
    request = Workload.make(platform).request("node", kit.challenge())
    body = {key: request[key] for key in ("quote", "csr", "nonce", "collateral")}
    joined = kit.client.post("/v1/nodes/join", json={"token": created.json()["join_token"], **body})
    assert joined.status_code == 200, joined.text
    return str(joined.json()["node"]["id"])


def _recheck(
    kit: Kit, source: CollateralSource, now: dt.datetime, **options: object
) -> RecheckReport:
    options.setdefault("trust", kit.harness.app.state.node_recheck.trust)
    return run_node_recheck(
        kit.harness.runtime.db.transaction,
        source,
        now,
        interval=INTERVAL,
        runtime=kit.harness.runtime,
        **options,  # type: ignore[arg-type]
    )


def _node(kit: Kit, node_id: str) -> Node:
    with kit.harness.runtime.db.transaction() as session:
        node = session.get(Node, node_id)
        assert node is not None
        session.expunge(node)
        return node


def _source(kit: Kit, label: str, **options: object) -> SimulatedCollateralSource:
    return SimulatedCollateralSource(kit.platform(label, **options))


@dataclass
class _Unreachable:
    """A collateral source whose server does not answer."""

    calls: int = 0

    def for_quote(self, quote: Quote, *, now: dt.datetime) -> Collateral:
        del quote, now
        self.calls += 1
        raise CollateralUnavailableError("the PCCS does not answer", code="pcs.unreachable")


def test_join_records_the_platform_tcb(kit):
    platform = kit.platform("node-1")
    node = _node(kit, _join(kit, "node-1", platform))
    assert node.platform_tcb is not None
    assert node.platform_tcb["fmspc"] == platform.pck_extension.fmspc.hex()
    assert node.platform_tcb["cpu_svn_components"] == list(platform.pck_extension.cpu_svn)
    assert node.platform_tcb["pck_serial"] == format(platform.pck_certificate.serial_number, "x")
    assert node.recheck_claimed_at == START
    assert node.rechecked_at == START


def test_a_run_flags_nodes_once_per_period(kit):
    first = _join(kit, "node-a", kit.platform("node-a"))
    second = _join(kit, "node-b", kit.platform("node-b"))
    elsewhere = _join(kit, "node-c", kit.platform("node-c", fmspc=OTHER_FMSPC))
    # Intel publishes new TCB info for node-a's FMSPC (node-b shares it); the source has none
    # for node-c's FMSPC.
    outdated = _source(kit, "node-a", tcb=TcbDial.OUT_OF_DATE)
    assert _recheck(kit, outdated, START + dt.timedelta(minutes=30)).outcome == "idle"
    report = _recheck(kit, outdated, START + INTERVAL)
    assert (report.claimed, report.checked, report.lost, report.outcome) == (3, 2, 0, "partial")
    assert sorted(change.node_id for change in report.flagged) == sorted([first, second])
    assert {(c.old_tcb_status, c.new_tcb_status) for c in report.changes} == {
        ("UpToDate", "OutOfDate")
    }
    [failure] = report.failures
    assert (failure.node_ids, failure.code, failure.retry) == (
        (elsewhere,),
        "collateral.not_found",
        True,
    )
    for node_id in (first, second):
        node = _node(kit, node_id)
        assert (node.status, node.tcb_status) == (NodeStatus.failed, "OutOfDate")
        assert node.flag is not None
        assert node.flag.startswith("node.tcb_status_rejected")
        assert node.rechecked_at == START + INTERVAL
    untouched = _node(kit, elsewhere)
    assert (untouched.status, untouched.tcb_status) == (NodeStatus.active, "UpToDate")
    assert untouched.rechecked_at == START
    entries = kit.audit_actions("node.flagged")
    assert sorted(entry.target_id for entry in entries) == sorted([first, second])
    assert {entry.actor_type for entry in entries} == {"system"}
    assert entries[0].details["old_tcb_status"] == "UpToDate"
    assert entries[0].details["new_tcb_status"] == "OutOfDate"
    assert entries[0].details["run_id"] == report.run_id
    # The same period again: nothing is due, nothing changes.
    again = _recheck(kit, outdated, START + INTERVAL + dt.timedelta(minutes=5))
    assert (again.claimed, again.changes, again.failures) == (0, (), ())
    assert len(kit.audit_actions("node.flagged")) == 2
    # The next period retries node-c; flagged nodes are no longer active.
    fixed = _source(kit, "node-c", fmspc=OTHER_FMSPC)
    later = _recheck(kit, fixed, START + 2 * INTERVAL)
    assert (later.claimed, later.checked, later.changes, later.outcome) == (1, 1, (), "ok")
    assert _node(kit, elsewhere).rechecked_at == START + 2 * INTERVAL


def test_an_acceptable_change_is_recorded_not_flagged(kit):
    node_id = _join(kit, "node-s", kit.platform("node-s"))
    hardening = _source(kit, "node-s", tcb=TcbDial.SW_HARDENING_NEEDED)
    report = _recheck(kit, hardening, START + INTERVAL)
    [change] = report.changes
    assert (change.flagged, change.new_tcb_status) == (False, "SWHardeningNeeded")
    assert change.new_advisory_ids == ("SANCTUM-SIM-SA-00001",)
    node = _node(kit, node_id)
    assert (node.status, node.tcb_status, node.flag) == (
        NodeStatus.active,
        "SWHardeningNeeded",
        None,
    )
    assert node.advisory_ids == ["SANCTUM-SIM-SA-00001"]
    [entry] = kit.audit_actions("node.tcb_changed")
    assert entry.details["old_advisory_ids"] == []
    assert not kit.audit_actions("node.flagged")


def test_an_unreachable_source_leaves_nodes_untouched(kit):
    node_id = _join(kit, "node-u", kit.platform("node-u"))
    source = _Unreachable()
    report = _recheck(kit, source, START + INTERVAL)
    assert (report.claimed, report.checked, report.outcome) == (1, 0, "failed")
    [failure] = report.failures
    assert (failure.code, failure.retry, failure.node_ids) == ("pcs.unreachable", True, (node_id,))
    node = _node(kit, node_id)
    assert (node.status, node.tcb_status, node.rechecked_at) == (
        NodeStatus.active,
        "UpToDate",
        START,
    )
    assert not kit.audit_actions("node.flagged")
    # Not again in the same period; retried in the next one.
    assert _recheck(kit, source, START + INTERVAL + dt.timedelta(minutes=1)).claimed == 0
    assert source.calls == 1
    revoked = _source(kit, "node-u", tcb=TcbDial.REVOKED)
    retried = _recheck(kit, revoked, START + 2 * INTERVAL)
    assert [change.new_tcb_status for change in retried.flagged] == ["Revoked"]


def test_on_demand_reports_an_unreachable_source(kit):
    _join(kit, "node-d", kit.platform("node-d"))
    kit.harness.app.state.node_recheck.source = _Unreachable()
    response = kit.client.post(kit.harness.url("/nodes/recheck"), headers=kit.harness.headers())
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["outcome"], body["checked"]) == ("failed", 0)
    assert body["failures"][0]["retry"] is True
    metrics = kit.client.get("/metrics").text
    assert 'sanctum_node_rechecks_total{outcome="failed",trigger="manual"} 1.0' in metrics
    assert 'sanctum_node_recheck_failures_total{code="pcs.unreachable"} 1.0' in metrics


def test_concurrent_runs_write_one_set_of_audit_entries(kit):
    nodes = [_join(kit, f"node-{n}", kit.platform(f"node-{n}")) for n in range(3)]
    outdated = _source(kit, "node-0", tcb=TcbDial.OUT_OF_DATE)
    now = START + INTERVAL
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: _recheck(kit, outdated, now), range(2)))
    # Each node was claimed, checked and flagged by exactly one of the runs.
    assert sum(report.claimed for report in reports) == len(nodes)
    assert sum(report.checked for report in reports) == len(nodes)
    assert sum(report.lost for report in reports) == 0
    flagged = [change.node_id for report in reports for change in report.flagged]
    assert sorted(flagged) == sorted(nodes)
    assert sorted(entry.target_id for entry in kit.audit_actions("node.flagged")) == sorted(nodes)
    # Each flagged node's certificate was revoked once (ADR 0130).
    revoked = kit.audit_actions("certificate.revoked")
    assert sorted(entry.target_id for entry in revoked) == sorted(nodes)


def test_forced_runs_racing_write_one_set_of_audit_entries(kit):
    nodes = [_join(kit, f"node-{n}", kit.platform(f"node-{n}")) for n in range(3)]
    outdated = _source(kit, "node-0", tcb=TcbDial.OUT_OF_DATE)
    both_fetched = threading.Barrier(2, timeout=30)

    @dataclass
    class _Together:
        """Lets each run fetch only once both runs hold their claims."""

        def for_quote(self, quote: Quote, *, now: dt.datetime) -> Collateral:
            both_fetched.wait()
            return outdated.for_quote(quote, now=now)

    now = START + dt.timedelta(minutes=1)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: _recheck(kit, _Together(), now, force=True), range(2)))
    assert [report.claimed for report in reports] == [3, 3]
    # The later claim won every node; the other run's writes were refused, not duplicated.
    assert sorted((report.checked, report.lost) for report in reports) == [(0, 3), (3, 0)]
    assert sorted(entry.target_id for entry in kit.audit_actions("node.flagged")) == sorted(nodes)
    revoked = kit.audit_actions("certificate.revoked")
    assert sorted(entry.target_id for entry in revoked) == sorted(nodes)


def test_a_node_joined_before_the_tcb_was_recorded_is_read_from_its_quote(kit):
    node_id = _join(kit, "node-l", kit.platform("node-l"))
    with kit.harness.runtime.db.transaction() as session:
        session.execute(update(Node).where(Node.id == node_id).values(platform_tcb=None))
    report = _recheck(kit, _source(kit, "node-l", tcb=TcbDial.OUT_OF_DATE), START + INTERVAL)
    assert [change.node_id for change in report.flagged] == [node_id]
    assert _node(kit, node_id).platform_tcb is not None


def test_an_account_run_touches_only_that_account(kit):
    node_id = _join(kit, "node-o", kit.platform("node-o"))
    outdated = _source(kit, "node-o", tcb=TcbDial.OUT_OF_DATE)
    other = _recheck(kit, outdated, START, account_id="no-such-account", force=True)
    assert other.claimed == 0
    mine = _recheck(kit, outdated, START, account_id=kit.harness.account_id, force=True)
    assert [change.node_id for change in mine.flagged] == [node_id]


def test_a_rejoin_during_a_run_wins(kit):
    platform = kit.platform("node-j")
    node_id = _join(kit, "node-j", platform)
    outdated = _source(kit, "node-j", tcb=TcbDial.OUT_OF_DATE)

    @dataclass
    class _RejoinMeanwhile:
        """The node re-joins while the run fetches collateral."""

        def for_quote(self, quote: Quote, *, now: dt.datetime) -> Collateral:
            token = kit.client.post(
                kit.harness.url(f"/nodes/{node_id}/join-token"), headers=kit.harness.headers()
            ).json()["join_token"]
            request = Workload.make(platform).request("node", kit.challenge())
            body = {key: request[key] for key in ("quote", "csr", "nonce", "collateral")}
            kit.harness.clock.advance(dt.timedelta(seconds=1))
            assert kit.client.post("/v1/nodes/join", json={"token": token, **body}).is_success
            return outdated.for_quote(quote, now=now)

    report = _recheck(kit, _RejoinMeanwhile(), START + INTERVAL)
    assert (report.checked, report.lost, report.changes) == (0, 1, ())
    node = _node(kit, node_id)
    assert node.status == NodeStatus.active
    # The lost write revoked nothing: the re-joined node's new certificate stays valid.
    with kit.harness.runtime.db.transaction() as session:
        status = session.scalar(
            select(CertificateRecord.status).where(
                CertificateRecord.serial == node.certificate_serial
            )
        )
    assert status == CertificateStatus.active
    assert [entry.details["reason"] for entry in kit.audit_actions("certificate.revoked")] == [
        "superseded"
    ]


def test_the_worker_runs_in_the_lifespan(harness_factory, tmp_path):
    pki = simulation_pki(tmp_path)
    platform = SimulatedPlatform(pki, tee="sgx", now=START, seed=b"node-w")
    outdated = SimulatedPlatform(pki, tee="sgx", now=START, seed=b"node-w", tcb="out_of_date")
    bundle = tmp_path / "collateral.json"
    bundle.write_bytes(outdated.collateral_json(now=START))
    harness = harness_factory(
        **simulation_settings(tmp_path),
        collateral_dir=bundle,
        node_recheck_interval_seconds=0.05,
    )
    kit = Kit(harness, pki)
    node_id = _join(kit, "node-w", platform)
    assert _node(kit, node_id).status == NodeStatus.active
    harness.clock.advance(dt.timedelta(minutes=1))
    flagged = threading.Event()
    with TestClient(harness.app):  # Runs the lifespan: the worker polls every 50 ms.
        for _ in range(400):
            if _node(kit, node_id).status == NodeStatus.failed:
                flagged.set()
                break
            flagged.wait(0.05)
    assert flagged.is_set()
    assert kit.audit_actions("node.flagged")[0].actor_type == "system"
    metrics = harness.client.get("/metrics").text
    assert 'sanctum_node_recheck_changes_total{code="node.tcb_status_rejected",kind="flagged"}' in (
        metrics
    )


def test_the_worker_needs_a_positive_interval_and_a_source(kit):
    rechecker = kit.harness.app.state.node_recheck
    assert rechecker.worker() is None  # No collateral source configured.
    rechecker.source = _Unreachable()
    worker = rechecker.worker()
    assert isinstance(worker, NodeRecheckWorker)
    with pytest.raises(UsageError):
        NodeRecheckWorker(
            kit.harness.runtime.db.transaction,
            _Unreachable(),
            trust=rechecker.trust,
            interval=dt.timedelta(0),
            clock=kit.harness.clock.now,
            runtime=kit.harness.runtime,
        )
    node_id = _join(kit, "node-x", kit.platform("node-x"))
    kit.harness.clock.advance(INTERVAL)
    report = worker.run_once()
    assert report.failures[0].node_ids == (node_id,)


def test_naive_times_are_refused(kit):
    with pytest.raises(UsageError):
        _recheck(kit, _Unreachable(), START.replace(tzinfo=None))


def test_simulated_nodes_follow_the_simulation_settings(kit):
    node_id = _join(kit, "node-sim", kit.platform("node-sim"))
    source = _source(kit, "node-sim")
    trusted = kit.harness.app.state.node_recheck.trust
    assert trusted.allows_simulated("default")
    # A manager that no longer trusts the simulation root cannot judge the node: untouched.
    untrusted = RecheckTrust(intel=trusted.intel)
    report = _recheck(kit, source, START + INTERVAL, trust=untrusted)
    assert [failure.code for failure in report.failures] == ["attest.simulated_not_allowed"]
    assert _node(kit, node_id).status == NodeStatus.active
    # Trusted, but the account is no longer allowed simulated evidence: flagged.
    closed = RecheckTrust(intel=trusted.intel, simulated=trusted.simulated)
    report = _recheck(kit, source, START, trust=closed, force=True)
    assert [change.code for change in report.flagged] == ["attest.simulated_not_allowed"]
    assert _node(kit, node_id).status == NodeStatus.failed
