"""Guards of the node re-check on SQLite and PostgreSQL: stale cached collateral, older TCB info
(tcbEvaluationDataNumber), simulated and real nodes sharing an FMSPC, tampered collateral, and
flagged nodes staying flagged."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from sqlalchemy import update

from conftest import START
from sanctum.attestation.collateral import Collateral, load_collateral_bundle
from sanctum.attestation.quote import Quote, parse_quote
from sanctum.attestation.trust import TrustAnchor
from sanctum.manager.models import Account
from sanctum.manager.models_attestation import Node, NodeStatus
from sanctum.manager.node_tcb import platform_tcb_from_quote
from sanctum.manager.services.node_recheck import (
    RecheckReport,
    StalenessReportingSource,
    run_node_recheck,
)
from sanctum.platforms.collateral_source import CollateralSource, SimulatedCollateralSource
from sanctum.platforms.pcs import CollateralFetch, PcsCollateralSource, PcsRequest, ResourceStatus
from sanctum.platforms.simulated import TcbDial

INTERVAL = dt.timedelta(hours=1)
DCAP = Path("/work/shared/dcap-data/cases")
REAL_CASE = "sgx-v3-automata-00606a"
REAL_AT = dt.datetime.fromtimestamp(1756530546, tz=dt.UTC)


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    return Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))


def _join(kit: Kit, name: str, **options: object) -> str:
    platform = kit.platform(name, **options)
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
    return run_node_recheck(
        kit.harness.runtime.db.transaction,
        source,
        now,
        trust=kit.harness.app.state.node_recheck.trust,
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


def _untouched(kit: Kit, node_id: str) -> None:
    node = _node(kit, node_id)
    assert (node.status, node.tcb_status, node.flag, node.rechecked_at) == (
        NodeStatus.active,
        "UpToDate",
        None,
        START,
    )
    assert not kit.audit_actions("node.flagged")
    assert not kit.audit_actions("node.tcb_changed")


def _outdated(kit: Kit, name: str, **options: object) -> SimulatedCollateralSource:
    return SimulatedCollateralSource(kit.platform(name, tcb=TcbDial.OUT_OF_DATE, **options))


@dataclass
class _StaleCache:
    """A PCS whose refresh failed: it answers the cached (still valid) copy and says so."""

    inner: SimulatedCollateralSource

    def fetch_for_quote(self, quote: Quote, *, now: dt.datetime) -> CollateralFetch:
        collateral = self.inner.for_quote(quote, now=now)
        request = PcsRequest(tee="sgx", fmspc="53494d000001", ca="platform")
        statuses = tuple(
            ResourceStatus(
                kind,  # type: ignore[arg-type]
                f"https://pccs.invalid/{kind}",
                now - dt.timedelta(days=2),
                now + dt.timedelta(days=5),
                from_cache=True,
                stale=kind == "tcb_info",
                refresh_error="collateral.unreachable" if kind == "tcb_info" else None,
            )
            for kind in ("tcb_info", "qe_identity", "pck_crl", "root_ca_crl")
        )
        return CollateralFetch(request=request, collateral=collateral, resources=statuses)

    def for_quote(self, quote: Quote, *, now: dt.datetime) -> Collateral:
        return self.fetch_for_quote(quote, now=now).collateral


def test_the_pcs_source_reports_staleness():
    assert issubclass(PcsCollateralSource, StalenessReportingSource)


def test_stale_cached_collateral_is_a_retryable_failure(kit):
    node_id = _join(kit, "node-st")
    stale = _StaleCache(_outdated(kit, "node-st"))
    kit.harness.app.state.node_recheck.source = stale
    response = kit.client.post(kit.harness.url("/nodes/recheck"), headers=kit.harness.headers())
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["outcome"], body["checked"], body["changes"]) == ("failed", 0, [])
    [failure] = body["failures"]
    assert (failure["code"], failure["retry"], failure["node_ids"]) == (
        "collateral.stale",
        True,
        [node_id],
    )
    _untouched(kit, node_id)
    metrics = kit.client.get("/metrics").text
    assert 'sanctum_node_recheck_failures_total{code="collateral.stale"} 1.0' in metrics
    # Once the source answers fresh collateral again, the next run judges the node.
    fresh = _recheck(kit, stale.inner, START + 3 * INTERVAL, force=True)
    assert [change.node_id for change in fresh.flagged] == [node_id]


def test_the_join_records_the_tcb_evaluation_data_number(kit):
    node_id = _join(kit, "node-n")
    assert _node(kit, node_id).tcb_evaluation_data_number == 1
    report = _recheck(kit, SimulatedCollateralSource(kit.platform("node-n")), START + INTERVAL)
    assert (report.checked, report.failures) == (1, ())
    assert _node(kit, node_id).tcb_evaluation_data_number == 1


def test_older_tcb_info_than_already_seen_is_refused(kit):
    node_id = _join(kit, "node-r")
    # The node was already judged with tcbEvaluationDataNumber 2 (after a TCB recovery); a
    # lagging PCCS now serves the older issue 1.
    with kit.harness.runtime.db.transaction() as session:
        session.execute(update(Node).where(Node.id == node_id).values(tcb_evaluation_data_number=2))
    report = _recheck(kit, _outdated(kit, "node-r"), START + INTERVAL)
    assert (report.claimed, report.checked, report.outcome) == (1, 0, "failed")
    [failure] = report.failures
    assert (failure.code, failure.retry, failure.node_ids) == (
        "collateral.rollback",
        True,
        (node_id,),
    )
    _untouched(kit, node_id)
    assert _node(kit, node_id).tcb_evaluation_data_number == 2


def test_a_flagged_node_stays_flagged_when_acceptable_collateral_arrives(kit):
    node_id = _join(kit, "node-f")
    flagged = _recheck(kit, _outdated(kit, "node-f"), START + INTERVAL)
    assert [change.node_id for change in flagged.flagged] == [node_id]
    good = SimulatedCollateralSource(kit.platform("node-f"))
    for moment in (START + 2 * INTERVAL, START + 3 * INTERVAL):
        report = _recheck(kit, good, moment, force=True)
        assert (report.claimed, report.changes) == (0, ())
    node = _node(kit, node_id)
    assert (node.status, node.tcb_status) == (NodeStatus.failed, "OutOfDate")
    assert node.flag is not None
    assert node.flag.startswith("node.tcb_status_rejected")
    assert len(kit.audit_actions("node.flagged")) == 1


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


@dataclass
class _Tampered:
    """Serves the collateral of ``inner`` with one part changed on the way."""

    inner: SimulatedCollateralSource
    part: str

    def for_quote(self, quote: Quote, *, now: dt.datetime) -> Collateral:
        genuine = self.inner.for_quote(quote, now=now)
        changed = _flip_last(getattr(genuine, self.part))
        return dataclasses.replace(genuine, **{self.part: changed})


@pytest.mark.parametrize(
    ("part", "code"),
    [
        ("qe_identity_signature", "qe_identity.signature_invalid"),
        ("tcb_info_signature", "tcb_info.signature_invalid"),
        ("pck_crl", "crl.invalid"),
    ],
)
def test_tampered_collateral_fails_the_run_without_changes(kit, part, code):
    node_id = _join(kit, "node-t")
    outdated = _outdated(kit, "node-t")
    report = _recheck(kit, _Tampered(outdated, part), START + INTERVAL)
    assert (report.claimed, report.checked, report.outcome) == (1, 0, "failed")
    [failure] = report.failures
    assert (failure.code, failure.node_ids) == (code, (node_id,))
    _untouched(kit, node_id)
    # The nodes stay claimed for the period, and the next period retries them.
    assert _recheck(kit, outdated, START + INTERVAL + dt.timedelta(minutes=1)).claimed == 0
    retried = _recheck(kit, outdated, START + 2 * INTERVAL)
    assert [change.node_id for change in retried.flagged] == [node_id]


@dataclass
class _PerAnchor:
    """Answers real Intel collateral for the real quote and simulated collateral otherwise."""

    real_quote: Quote
    real: Collateral
    simulated: SimulatedCollateralSource
    asked: list[str]

    def for_quote(self, quote: Quote, *, now: dt.datetime) -> Collateral:
        if quote == self.real_quote:
            self.asked.append("real")
            return self.real
        self.asked.append("simulated")
        return self.simulated.for_quote(quote, now=now)


def test_a_simulated_node_does_not_decide_a_real_nodes_collateral(kit):
    raw = (DCAP / f"{REAL_CASE}.quote.bin").read_bytes()
    collateral = load_collateral_bundle((DCAP / f"{REAL_CASE}.collateral.json").read_bytes())
    real_tcb = platform_tcb_from_quote(raw, TrustAnchor.intel())
    fmspc = real_tcb.fmspc
    # A simulated node claims the real platform's FMSPC (and sorts first).
    simulated_id = _join(kit, "a-sim", fmspc=fmspc)
    real_id = str(uuid.uuid4())
    with kit.harness.runtime.db.transaction() as session:
        account = session.get(Account, kit.harness.account_id)
        assert account is not None
        session.add(
            Node(
                id=real_id,
                account_id=account.id,
                name="b-real",
                status=NodeStatus.active,
                tee="sgx",
                fmspc=fmspc.hex(),
                tcb_status="SWHardeningNeeded",
                advisory_ids=["INTEL-SA-00615"],
                simulated=False,
                last_quote=raw,
                created_at=START,
                attested_at=START,
                platform_tcb=json.loads(json.dumps(real_tcb.to_json())),
                tcb_evaluation_data_number=1,
            )
        )
    asked: list[str] = []
    source = _PerAnchor(
        parse_quote(raw),
        collateral,
        SimulatedCollateralSource(kit.platform("a-sim", fmspc=fmspc)),
        asked,
    )
    report = _recheck(kit, source, REAL_AT, force=True, account_id=kit.harness.account_id)
    assert report.claimed == 2
    assert sorted(asked) == ["real", "simulated"]
    # The real node was judged with Intel's collateral, whatever happened to the simulated one.
    assert report.checked >= 1
    assert real_id not in {node for failure in report.failures for node in failure.node_ids}
    real = _node(kit, real_id)
    assert (real.status, real.tcb_status, real.rechecked_at) == (
        NodeStatus.active,
        "SWHardeningNeeded",
        REAL_AT,
    )
    assert real.tcb_evaluation_data_number is not None
    assert real.tcb_evaluation_data_number >= 1
    assert simulated_id not in {change.node_id for change in report.changes}
