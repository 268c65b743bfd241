"""The node re-check: refresh collateral, re-appraise every active node, flag the unacceptable.

Intel's TCB info changes (TCB recoveries, revocations) after nodes joined. A re-check run
(:func:`run_node_recheck`) asks the configured collateral source for current collateral, one
request per platform family (TEE, FMSPC, PCK CA), verifies it (:mod:`sanctum.manager.node_tcb`),
re-evaluates each node's TCB as recorded at join, and records the outcome:

- a node that is no longer acceptable becomes ``failed`` with its ``flag`` set (the code and a
  sentence) and a ``node.flagged`` audit entry with the old and new TCB status, and its node
  certificate is revoked (``privilegeWithdrawn``: it appears on the account's CRL);
- a node whose status or advisories changed but stays acceptable gets a ``node.tcb_changed``
  entry;
- a failed or deactivated node that still holds an active certificate (it failed before
  ADR 0130) has it revoked (``privilegeWithdrawn`` / ``cessationOfOperation``), once;
- collateral that cannot be obtained (:class:`~sanctum.errors.UnavailableError`), is a stale
  cached copy the source could not refresh (``collateral.stale``), is an older issue than a
  node was already judged with (``collateral.rollback``), or cannot be trusted leaves the nodes
  concerned untouched; the run reports it and the next period retries.

**Multi-replica safety.** Each node row is its own lease. A run first claims the nodes that are
due (``recheck_claimed_at`` older than the interval, or never) with one conditional ``UPDATE``
that stamps its run id and the time; concurrent runs on other replicas then find nothing due,
so the work of a period happens once (the database serialises the two ``UPDATE`` statements:
PostgreSQL re-evaluates the condition on rows another transaction changed, SQLite takes the
writer lock). Every outcome is written with a conditional ``UPDATE`` that still requires the run's
claim, the node to be active and unchanged since it was read; only a row the update changed
gets its audit entry, so a forced run racing another never produces duplicates. A run that dies
leaves its claims, which expire with the period.

:func:`run_node_recheck` is a plain function of a session factory, a collateral source and the
time, so tests drive it without threads; :class:`NodeRecheckWorker` calls it periodically in
the manager (``node_recheck_interval_seconds``), and ``POST /v1/accounts/{id}/nodes/recheck``
runs it on demand for one account.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from sanctum.attestation.collateral import Collateral
from sanctum.attestation.quote import Quote, parse_quote
from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import EvidenceError, SanctumError, UnavailableError, UsageError
from sanctum.manager.models import Account
from sanctum.manager.models_attestation import (
    CertificateRecord,
    CertificateStatus,
    Node,
    NodeStatus,
)
from sanctum.manager.node_tcb import (
    NodePlatformTcb,
    NodePolicy,
    NodeReappraisal,
    platform_tcb_from_quote,
    reappraise_node,
    verify_node_collateral,
)
from sanctum.manager.services.audit import Outcome, Severity, audit
from sanctum.manager.services.certificates import revoke_where
from sanctum.manager.services.context import Actor, ServiceContext
from sanctum.platforms.collateral_source import CollateralSource
from sanctum.platforms.errors import CollateralUnavailableError
from sanctum.platforms.pcs import CollateralFetch, pcs_request_for_quote
from sanctum.platforms.simulated.pki import ROOT_CN as SIMULATED_ROOT_CN

if TYPE_CHECKING:
    from sanctum.manager.runtime import Runtime

__all__ = [
    "DEACTIVATED_NODE_REVOCATION_REASON",
    "FLAGGED_NODE_REVOCATION_REASON",
    "NodeChange",
    "NodeRecheckMetrics",
    "NodeRecheckWorker",
    "NodeRechecker",
    "RecheckFailure",
    "RecheckReport",
    "RecheckTrust",
    "SessionFactory",
    "StalenessReportingSource",
    "revoke_withdrawn_node_certificates",
    "run_node_recheck",
]

_log = logging.getLogger(__name__)
#: The CRL reason of a flagged node's certificate (RFC 5280 ``privilegeWithdrawn``): the node
#: is no longer an acceptable platform, which says nothing about its key.
FLAGGED_NODE_REVOCATION_REASON: Final = "privilegeWithdrawn"
#: The CRL reason of a deactivated node's certificate (as ``deactivate_node`` revokes it).
DEACTIVATED_NODE_REVOCATION_REASON: Final = "cessationOfOperation"
#: Why a node in each status holds no valid certificate.
_WITHDRAWN: Final = {
    NodeStatus.failed: FLAGGED_NODE_REVOCATION_REASON,
    NodeStatus.deactivated: DEACTIVATED_NODE_REVOCATION_REASON,
}
_FLAG_LIMIT: Final = 200
_MESSAGE_LIMIT: Final = 500
#: The worker looks for due nodes at least this often (seconds), whatever the interval.
_MAX_POLL_SECONDS: Final = 60.0

#: Opens one transaction and yields its session (``Database.transaction``).
SessionFactory = Callable[[], AbstractContextManager[Session]]


@runtime_checkable
class StalenessReportingSource(Protocol):
    """A collateral source that also says whether it answered from a stale cache (a PCS).

    :class:`~sanctum.platforms.pcs.PcsCollateralSource` is one: when Intel's service cannot be
    reached it answers with the cached copy until that copy's ``nextUpdate``, and says so.
    """

    def fetch_for_quote(self, quote: Quote, *, now: dt.datetime) -> CollateralFetch:
        """Return the collateral for ``quote`` and where each part came from.

        Raises:
            sanctum.errors.EvidenceError: The quote lacks what is needed to pick collateral.
            sanctum.errors.UnavailableError: The collateral could not be obtained.
        """
        ...


def _fetch(source: CollateralSource, quote: Quote, now: dt.datetime) -> Collateral:
    """Return current collateral for ``quote``, refusing a stale cached copy.

    A re-check that used a cached copy the source could not refresh would report "ok" while
    it judged nodes with collateral Intel may already have replaced (a TCB recovery); it is a
    retryable failure instead, visible in the failure metrics.

    Raises:
        CollateralUnavailableError: ``collateral.stale``: part of the collateral is a cached
            copy whose refresh failed.
        sanctum.errors.SanctumError: What the source raises.
    """
    if not isinstance(source, StalenessReportingSource):
        return source.for_quote(quote, now=now)
    fetched = source.fetch_for_quote(quote, now=now)
    stale = [resource for resource in fetched.resources if resource.stale]
    if stale:
        raise CollateralUnavailableError(
            "the collateral source could not refresh "
            + ", ".join(resource.kind.replace("_", " ") for resource in stale)
            + " and offered a cached copy; nodes are not judged with stale collateral",
            code="collateral.stale",
            hint="restore access to the PCS/PCCS; the next re-check retries",
            details={
                "resources": [resource.kind for resource in stale],
                "causes": sorted({resource.refresh_error or "unknown" for resource in stale}),
            },
        )
    return fetched.collateral


@dataclass(frozen=True, slots=True)
class RecheckTrust:
    """The trust anchors fresh collateral may chain to, and who may use simulated evidence.

    Attributes:
        intel: The Intel SGX Root CA.
        simulated: The simulation root, when the manager trusts the simulated platform.
        simulation_accounts: Account names whose nodes may be simulated (``"*"``: all).
    """

    intel: TrustAnchor
    simulated: TrustAnchor | None = None
    simulation_accounts: frozenset[str] = frozenset()

    def anchor_for(self, collateral: Collateral) -> TrustAnchor:
        """Return the anchor the collateral's TCB signing chain ends in (Intel by default).

        Verification under the returned anchor still checks every signature; this only picks
        which root to check against.

        Raises:
            EvidenceError: The chain ends in a simulation root this manager does not trust
                (``attest.simulated_not_allowed``).
        """
        try:
            root = x509.load_pem_x509_certificates(
                collateral.tcb_info_issuer_chain.encode("ascii")
            )[-1]
        except (ValueError, IndexError):
            return self.intel
        der = root.public_bytes(serialization.Encoding.DER)
        if self.simulated is not None and der == self.simulated.der:
            return self.simulated
        names = root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if der != self.intel.der and any(name.value == SIMULATED_ROOT_CN for name in names):
            raise EvidenceError(
                "the collateral comes from a simulated platform this manager does not trust",
                code="attest.simulated_not_allowed",
            )
        return self.intel

    def allows_simulated(self, account_name: str) -> bool:
        """Whether ``account_name``'s nodes may present simulated evidence."""
        return self.simulated is not None and (
            "*" in self.simulation_accounts or account_name in self.simulation_accounts
        )


@dataclass(frozen=True, slots=True)
class NodeChange:
    """A node whose TCB appraisal changed in a run.

    Attributes:
        node_id: The node.
        account_id: Its account.
        name: Its name.
        old_tcb_status: The TCB status recorded before.
        new_tcb_status: The status now (``None`` when no TCB level covers the platform).
        old_advisory_ids: Advisory IDs recorded before.
        new_advisory_ids: Advisory IDs now.
        flagged: Whether the node was flagged (now ``failed``).
        code: Why it was flagged, else ``None``.
        reason: The operator-facing sentence, else ``None``.
    """

    node_id: str
    account_id: str
    name: str
    old_tcb_status: str | None
    new_tcb_status: str | None
    old_advisory_ids: tuple[str, ...]
    new_advisory_ids: tuple[str, ...]
    flagged: bool
    code: str | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (API answers, audit details)."""
        return {
            "node_id": self.node_id,
            "account_id": self.account_id,
            "name": self.name,
            "old_tcb_status": self.old_tcb_status,
            "new_tcb_status": self.new_tcb_status,
            "old_advisory_ids": list(self.old_advisory_ids),
            "new_advisory_ids": list(self.new_advisory_ids),
            "flagged": self.flagged,
            "code": self.code,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class RecheckFailure:
    """Nodes a run could not judge (they were left untouched), and why.

    Attributes:
        tee: The platform family's TEE (``None`` when the node's evidence is unreadable).
        fmspc: The family's FMSPC (hex), if known.
        node_ids: The nodes concerned.
        code: The error's code (``collateral.*``, ``pcs.*``, ``tcb_info.*``...).
        message: The error's message.
        retry: Whether the failure is transient (the source was unavailable): the next
            period retries. Other failures need an operator (wrong or untrusted collateral).
    """

    tee: str | None
    fmspc: str | None
    node_ids: tuple[str, ...]
    code: str
    message: str
    retry: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "tee": self.tee,
            "fmspc": self.fmspc,
            "node_ids": list(self.node_ids),
            "code": self.code,
            "message": self.message,
            "retry": self.retry,
        }


@dataclass(frozen=True, slots=True)
class RecheckReport:
    """What one run did.

    Attributes:
        run_id: The run's id (the claim stamped on the nodes).
        started_at: The run's time.
        claimed: Nodes the run claimed (those due, or every active node when forced).
        checked: Nodes re-appraised and recorded.
        changes: Nodes whose appraisal changed (flagged or not).
        failures: Nodes that could not be judged, grouped by cause.
        lost: Nodes another run took over, or that changed meanwhile (a re-join): not written.
        revoked: Certificates of failed or deactivated nodes the run found still active and
            revoked (:func:`revoke_withdrawn_node_certificates`).
    """

    run_id: str
    started_at: dt.datetime
    claimed: int
    checked: int
    changes: tuple[NodeChange, ...]
    failures: tuple[RecheckFailure, ...]
    lost: int
    revoked: int = 0

    @property
    def flagged(self) -> tuple[NodeChange, ...]:
        """The changes that flagged a node."""
        return tuple(change for change in self.changes if change.flagged)

    @property
    def outcome(self) -> str:
        """``idle`` (nothing due), ``ok``, ``partial`` (some failures) or ``failed`` (all)."""
        if self.claimed == 0:
            return "idle"
        if not self.failures:
            return "ok"
        return "partial" if self.checked else "failed"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "outcome": self.outcome,
            "claimed": self.claimed,
            "checked": self.checked,
            "lost": self.lost,
            "revoked": self.revoked,
            "changes": [change.to_dict() for change in self.changes],
            "failures": [failure.to_dict() for failure in self.failures],
        }


class NodeRecheckMetrics:
    """Prometheus metrics of node re-checks, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the metrics in ``registry``."""
        self.runs = Counter(
            "sanctum_node_rechecks",
            "Node re-check runs by trigger and outcome (idle, ok, partial, failed, error).",
            ["trigger", "outcome"],
            registry=registry,
        )
        self.changes = Counter(
            "sanctum_node_recheck_changes",
            "Nodes whose TCB appraisal changed in a re-check, by kind and code.",
            ["kind", "code"],
            registry=registry,
        )
        self.failures = Counter(
            "sanctum_node_recheck_failures",
            "Nodes a re-check could not judge, by error code.",
            ["code"],
            registry=registry,
        )
        self.checked = Gauge(
            "sanctum_node_recheck_last_checked_nodes",
            "Nodes re-appraised by the last re-check run of this process.",
            registry=registry,
        )
        self.last_success = Gauge(
            "sanctum_node_recheck_last_success_timestamp_seconds",
            "When a re-check run of this process last completed without failures.",
            registry=registry,
        )

    def observe(self, report: RecheckReport, trigger: str) -> None:
        """Record one run."""
        self.runs.labels(trigger, report.outcome).inc()
        for change in report.changes:
            kind = "flagged" if change.flagged else "changed"
            self.changes.labels(kind, change.code or "none").inc()
        for failure in report.failures:
            self.failures.labels(failure.code).inc(len(failure.node_ids))
        if report.claimed:
            self.checked.set(report.checked)
        if not report.failures:
            self.last_success.set(report.started_at.timestamp())


@dataclass(slots=True)
class _Claimed:
    """A claimed node as read in the claim transaction."""

    id: str
    account_id: str
    account_name: str
    name: str
    tcb_status: str | None
    advisory_ids: tuple[str, ...]
    attested_at: dt.datetime | None
    last_quote: bytes
    platform_tcb: dict[str, Any] | None
    simulated: bool
    tcb_evaluation_data_number: int | None
    qe_tcb_evaluation_data_number: int | None


@dataclass(slots=True)
class _Outcome:
    """A node's re-appraisal, to be written."""

    node: _Claimed
    reappraisal: NodeReappraisal
    backfill: dict[str, Any] | None


@dataclass(slots=True)
class _Group:
    """The claimed nodes of one platform family (one collateral request) under one anchor."""

    tee: str
    fmspc: str
    simulated: bool
    nodes: list[tuple[_Claimed, NodePlatformTcb | None]] = field(default_factory=list)


def _claim(
    sessions: SessionFactory,
    run_id: str,
    now: dt.datetime,
    *,
    interval: dt.timedelta,
    account_id: str | None,
    force: bool,
) -> list[_Claimed]:
    """Stamp the due active nodes with ``run_id`` and return them."""
    conditions: list[Any] = [Node.status == NodeStatus.active, Node.last_quote.is_not(None)]
    if account_id is not None:
        conditions.append(Node.account_id == account_id)
    if not force:
        conditions.append(
            or_(Node.recheck_claimed_at.is_(None), Node.recheck_claimed_at <= now - interval)
        )
    with sessions() as session:
        session.execute(
            update(Node)
            .where(*conditions)
            .values(recheck_claim=run_id, recheck_claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        rows = session.execute(
            select(
                Node.id,
                Node.account_id,
                Account.name,
                Node.name,
                Node.tcb_status,
                Node.advisory_ids,
                Node.attested_at,
                Node.last_quote,
                Node.platform_tcb,
                Node.simulated,
                Node.tcb_evaluation_data_number,
                Node.qe_tcb_evaluation_data_number,
            )
            .join(Account, Account.id == Node.account_id)
            .where(Node.recheck_claim == run_id, Node.status == NodeStatus.active)
            .order_by(Node.account_id, Node.name)
        ).all()
    return [
        _Claimed(
            id=row[0],
            account_id=row[1],
            account_name=row[2],
            name=row[3],
            tcb_status=row[4],
            advisory_ids=tuple(row[5] or ()),
            attested_at=row[6],
            last_quote=row[7] or b"",
            platform_tcb=row[8],
            simulated=bool(row[9]),
            tcb_evaluation_data_number=row[10],
            qe_tcb_evaluation_data_number=row[11],
        )
        for row in rows
    ]


def _failure(
    error: SanctumError, nodes: Iterable[_Claimed], *, tee: str | None, fmspc: str | None
) -> RecheckFailure:
    return RecheckFailure(
        tee=tee,
        fmspc=fmspc,
        node_ids=tuple(node.id for node in nodes),
        code=error.code,
        message=error.message[:_MESSAGE_LIMIT],
        retry=isinstance(error, UnavailableError),
    )


def _group(
    nodes: Sequence[_Claimed],
) -> tuple[dict[tuple[str, str, str, bool], _Group], list[RecheckFailure]]:
    """Group claimed nodes by the collateral they need (TEE, FMSPC, PCK CA, trust anchor).

    The anchor (simulated or Intel, as verified at join) is part of the key: a simulated node
    may claim a real platform's FMSPC, and must not decide which collateral a real node of
    that FMSPC is judged with (or make it unjudgeable).
    """
    groups: dict[tuple[str, str, str, bool], _Group] = {}
    failures: list[RecheckFailure] = []
    for node in nodes:
        platform: NodePlatformTcb | None = None
        try:
            if node.platform_tcb is not None:
                platform = NodePlatformTcb.from_json(node.platform_tcb)
                key = (platform.tee, platform.fmspc.hex(), platform.ca_type, node.simulated)
            else:
                request = pcs_request_for_quote(parse_quote(node.last_quote))
                key = (request.tee, request.fmspc, request.ca, node.simulated)
        except SanctumError as error:
            failures.append(_failure(error, [node], tee=None, fmspc=None))
            continue
        group = groups.setdefault(key, _Group(tee=key[0], fmspc=key[1], simulated=key[3]))
        group.nodes.append((node, platform))
    return groups, failures


def _appraise_group(
    group: _Group, source: CollateralSource, trust: RecheckTrust, now: dt.datetime
) -> tuple[list[_Outcome], list[RecheckFailure]]:
    """Fetch and verify the group's collateral, then re-appraise each of its nodes."""
    outcomes: list[_Outcome] = []
    failures: list[RecheckFailure] = []
    members = [node for node, _ in group.nodes]
    try:
        collateral = _fetch(source, parse_quote(members[0].last_quote), now)
        anchor = trust.anchor_for(collateral)
        if anchor.simulated != group.simulated:
            raise EvidenceError(
                "the collateral chains to "
                + ("the simulation root" if anchor.simulated else "Intel's root")
                + " but the nodes were verified under "
                + ("the simulation root" if group.simulated else "Intel's root"),
                code="collateral.anchor_mismatch",
            )
        fresh = verify_node_collateral(collateral, anchor, now=now)
    except SanctumError as error:
        _log.warning(
            "node re-check: no usable collateral for %s FMSPC %s (%s): %s nodes left as they are",
            group.tee,
            group.fmspc,
            error.code,
            len(members),
        )
        failures.append(_failure(error, members, tee=group.tee, fmspc=group.fmspc))
        return outcomes, failures
    for node, recorded in group.nodes:
        backfill: dict[str, Any] | None = None
        platform = recorded
        try:
            if platform is None:
                # Joined before the platform TCB was recorded: read it from the stored quote.
                platform = platform_tcb_from_quote(
                    node.last_quote, anchor, pck_chain_pem=collateral.pck_certificate_chain
                )
                backfill = platform.to_json()
            policy = NodePolicy(allow_simulated=trust.allows_simulated(node.account_name))
            reappraisal = reappraise_node(
                platform,
                fresh,
                policy,
                now=now,
                highest_tcb_evaluation_data_number=node.tcb_evaluation_data_number,
                highest_qe_tcb_evaluation_data_number=node.qe_tcb_evaluation_data_number,
            )
        except (EvidenceError, UnavailableError) as error:
            failures.append(_failure(error, [node], tee=group.tee, fmspc=group.fmspc))
            continue
        outcomes.append(_Outcome(node, reappraisal, backfill))
    return outcomes, failures


def _apply(
    sessions: SessionFactory,
    run_id: str,
    now: dt.datetime,
    outcomes: Sequence[_Outcome],
    *,
    runtime: Runtime,
    actor: Actor,
    request_id: str | None,
    source_address: str | None,
) -> tuple[int, list[NodeChange], int]:
    """Write every outcome still held by the run; audit each change once.

    A flagged node's active certificates are revoked in the same transaction
    (``privilegeWithdrawn``, audited as ``certificate.revoked``).

    Returns:
        How many nodes were written, the changes, and how many were lost to another run.
    """
    checked, lost = 0, 0
    changes: list[NodeChange] = []
    with sessions() as session:
        ctx = ServiceContext(
            session=session,
            now=now,
            actor=actor,
            runtime=runtime,
            request_id=request_id,
            source_address=source_address,
        )
        for outcome in outcomes:
            node, result = outcome.node, outcome.reappraisal
            new_status = None if result.status is None else str(result.status)
            advisories = tuple(result.advisory_ids)
            changed = new_status != node.tcb_status or advisories != node.advisory_ids
            number = result.tcb_evaluation_data_number
            qe_number = result.qe_tcb_evaluation_data_number
            values: dict[str, Any] = {
                "rechecked_at": now,
                "recheck_claim": None,
                "tcb_evaluation_data_number": number,
                "qe_tcb_evaluation_data_number": qe_number,
            }
            if outcome.backfill is not None:
                values["platform_tcb"] = outcome.backfill
            if changed:
                values["tcb_status"] = new_status
                values["advisory_ids"] = list(advisories)
            if not result.acceptable:
                values["status"] = NodeStatus.failed
                values["flag"] = f"{result.code}: {result.reason}"[:_FLAG_LIMIT]
            written = session.execute(
                update(Node)
                .where(
                    Node.id == node.id,
                    Node.recheck_claim == run_id,
                    Node.status == NodeStatus.active,
                    Node.tcb_status == node.tcb_status
                    if node.tcb_status is not None
                    else Node.tcb_status.is_(None),
                    Node.attested_at == node.attested_at
                    if node.attested_at is not None
                    else Node.attested_at.is_(None),
                    # The high-water mark never goes down (a join may have raised it meanwhile).
                    or_(
                        Node.tcb_evaluation_data_number.is_(None),
                        Node.tcb_evaluation_data_number <= number,
                    ),
                    or_(
                        Node.qe_tcb_evaluation_data_number.is_(None),
                        Node.qe_tcb_evaluation_data_number <= qe_number,
                    ),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if getattr(written, "rowcount", 0) != 1:
                lost += 1
                continue
            checked += 1
            if not changed and result.acceptable:
                continue
            change = NodeChange(
                node_id=node.id,
                account_id=node.account_id,
                name=node.name,
                old_tcb_status=node.tcb_status,
                new_tcb_status=new_status,
                old_advisory_ids=node.advisory_ids,
                new_advisory_ids=advisories,
                flagged=not result.acceptable,
                code=result.code,
                reason=result.reason,
            )
            changes.append(change)
            details = {
                **change.to_dict(),
                "run_id": run_id,
                "tcb_evaluation_data_number": number,
                "qe_tcb_evaluation_data_number": qe_number,
            }
            audit(
                ctx,
                "node.flagged" if change.flagged else "node.tcb_changed",
                account_id=node.account_id,
                target_type="node",
                target_id=node.id,
                outcome=Outcome.failure if change.flagged else Outcome.success,
                severity=Severity.warning if change.flagged else Severity.info,
                details=details,
            )
            if change.flagged:
                # The node certificate says "an attested, acceptable node"; it no longer is.
                revoke_where(
                    ctx,
                    node.account_id,
                    reason=FLAGGED_NODE_REVOCATION_REASON,
                    node_id=node.id,
                )
    return checked, changes, lost


def revoke_withdrawn_node_certificates(
    sessions: SessionFactory,
    now: dt.datetime,
    *,
    runtime: Runtime,
    actor: Actor,
    account_id: str | None = None,
    request_id: str | None = None,
    source_address: str | None = None,
) -> int:
    """Revoke the still-active certificates of failed and deactivated nodes; return how many.

    A failed or deactivated node holds no valid certificate (ADR 0130), but nodes that failed
    before that rule (or any certificate a path missed) may still hold one. Each run sweeps
    them up: ``privilegeWithdrawn`` for a failed node, ``cessationOfOperation`` for a
    deactivated one, audited ``certificate.revoked`` (target the node) by
    :func:`~sanctum.manager.services.certificates.revoke_where`. Idempotent: only active
    certificates are revoked, so a second run (or a concurrent one) finds nothing.

    Each node row is locked and its status read again before its certificates are revoked,
    so a node that re-joined meanwhile (active, with a new certificate) is left alone: a join
    locks the same row.

    Raises:
        UnavailableError: The database could not be reached.
    """
    found = (
        select(Node.id)
        .join(CertificateRecord, CertificateRecord.node_id == Node.id)
        .where(
            Node.status.in_(tuple(_WITHDRAWN)),
            CertificateRecord.status == CertificateStatus.active,
            CertificateRecord.account_id == Node.account_id,
        )
        .distinct()
    )
    if account_id is not None:
        found = found.where(Node.account_id == account_id)
    revoked = 0
    with sessions() as session:
        ctx = ServiceContext(
            session=session,
            now=now,
            actor=actor,
            runtime=runtime,
            request_id=request_id,
            source_address=source_address,
        )
        for node_id in session.scalars(found).all():
            node = session.execute(
                select(Node.account_id, Node.status)
                .where(Node.id == node_id, Node.status.in_(tuple(_WITHDRAWN)))
                .with_for_update()
            ).first()
            if node is None:
                continue
            revoked += revoke_where(
                ctx, node.account_id, reason=_WITHDRAWN[NodeStatus(node.status)], node_id=node_id
            )
    if revoked:
        _log.warning(
            "node re-check: revoked %d certificate(s) of failed or deactivated nodes", revoked
        )
    return revoked


def run_node_recheck(
    sessions: SessionFactory,
    source: CollateralSource,
    now: dt.datetime,
    *,
    trust: RecheckTrust,
    interval: dt.timedelta,
    runtime: Runtime,
    account_id: str | None = None,
    force: bool = False,
    actor: Actor | None = None,
    request_id: str | None = None,
    source_address: str | None = None,
) -> RecheckReport:
    """Re-check the active nodes that are due (every active node when ``force``).

    Three short transactions: claim the nodes, then (with no transaction open) fetch and verify
    collateral per platform family and re-appraise each node, then write the outcomes. A fourth
    revokes certificates failed or deactivated nodes still hold
    (:func:`revoke_withdrawn_node_certificates`).

    Args:
        sessions: Opens a transaction (``Database.transaction``).
        source: Where current collateral comes from.
        now: The run's time (timezone-aware).
        trust: The anchors collateral may chain to, and the simulation settings.
        interval: A node is due when it was last claimed this long ago (or never).
        runtime: The manager's runtime (the context of the certificate revocation of a
            flagged node).
        account_id: Only this account's nodes (the on-demand route), else every account.
        force: Claim every active node, due or not (an administrator asked).
        actor: Who runs it (the manager itself by default), for the audit entries.
        request_id: The request that asked for it, for the audit entries.
        source_address: Where that request came from, for the audit entries.

    Returns:
        The report: nodes claimed, checked and changed, and what could not be judged.

    Raises:
        UnavailableError: The database could not be reached.
        UsageError: ``now`` is naive.
    """
    if now.tzinfo is None:
        raise UsageError("the re-check time must be timezone-aware", code="usage.invalid_time")
    run_id = str(uuid.uuid4())
    claimed = _claim(sessions, run_id, now, interval=interval, account_id=account_id, force=force)
    groups, failures = _group(claimed)
    outcomes: list[_Outcome] = []
    for group in groups.values():
        appraised, unjudged = _appraise_group(group, source, trust, now)
        outcomes.extend(appraised)
        failures.extend(unjudged)
    checked, lost = 0, 0
    changes: list[NodeChange] = []
    if outcomes:
        checked, changes, lost = _apply(
            sessions,
            run_id,
            now,
            outcomes,
            runtime=runtime,
            actor=actor or Actor.system(),
            request_id=request_id,
            source_address=source_address,
        )
    for change in changes:
        _log.log(
            logging.WARNING if change.flagged else logging.INFO,
            "node re-check: node %s (%s) %s: TCB %s -> %s",
            change.name,
            change.node_id,
            "flagged" if change.flagged else "changed",
            change.old_tcb_status,
            change.new_tcb_status,
        )
    revoked = revoke_withdrawn_node_certificates(
        sessions,
        now,
        runtime=runtime,
        actor=actor or Actor.system(),
        account_id=account_id,
        request_id=request_id,
        source_address=source_address,
    )
    return RecheckReport(
        run_id=run_id,
        started_at=now,
        claimed=len(claimed),
        checked=checked,
        changes=tuple(changes),
        failures=tuple(failures),
        lost=lost,
        revoked=revoked,
    )


class NodeRecheckWorker:
    """Runs :func:`run_node_recheck` periodically in a background thread (one per process).

    Every replica runs one; the per-node claims make the work of a period happen once. The
    thread looks for due nodes every ``min(interval, 60 s)``.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        source: CollateralSource,
        *,
        trust: RecheckTrust,
        interval: dt.timedelta,
        clock: Callable[[], dt.datetime],
        runtime: Runtime,
        metrics: NodeRecheckMetrics | None = None,
    ) -> None:
        """Prepare the worker (nothing runs until :meth:`start`).

        Raises:
            UsageError: ``interval`` is not positive (``settings.invalid``).
        """
        if interval <= dt.timedelta(0):
            raise UsageError("the node re-check interval must be positive", code="settings.invalid")
        self.sessions = sessions
        self.source = source
        self.trust = trust
        self.interval = interval
        self.clock = clock
        self.runtime = runtime
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> RecheckReport:
        """Run one re-check of the due nodes now, and record it in the metrics.

        Raises:
            UnavailableError: The database could not be reached.
        """
        report = run_node_recheck(
            self.sessions,
            self.source,
            self.clock(),
            trust=self.trust,
            interval=self.interval,
            runtime=self.runtime,
        )
        if self.metrics is not None:
            self.metrics.observe(report, "scheduled")
        return report

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="node-recheck", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait at most ``timeout`` seconds (claims expire anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        poll = min(self.interval.total_seconds(), _MAX_POLL_SECONDS)
        while not self._stop.wait(poll):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 (a background loop must survive; it is logged)
                _log.warning("the node re-check could not run this round", exc_info=True)
                if self.metrics is not None:
                    self.metrics.runs.labels("scheduled", "error").inc()


@dataclass(slots=True)
class NodeRechecker:
    """What the manager needs to re-check nodes, on demand and on schedule (one per app).

    Attributes:
        sessions: Opens a transaction (``Database.transaction``).
        source: The configured collateral source, or ``None`` (re-checks are then refused).
        trust: The anchors and the simulation settings.
        interval: The schedule's period; zero disables the schedule (not on-demand runs).
        clock: Returns the current time (the app's clock).
        runtime: The manager's runtime (revoking a flagged node's certificate).
        metrics: Where runs are counted, if anywhere.
    """

    sessions: SessionFactory
    source: CollateralSource | None
    trust: RecheckTrust
    interval: dt.timedelta
    clock: Callable[[], dt.datetime]
    runtime: Runtime
    metrics: NodeRecheckMetrics | None = None

    def run_now(
        self,
        *,
        account_id: str,
        actor: Actor,
        now: dt.datetime | None = None,
        request_id: str | None = None,
        source_address: str | None = None,
    ) -> RecheckReport:
        """Re-check every active node of ``account_id`` now (due or not).

        Raises:
            UsageError: No collateral source is configured (``node.collateral_source_missing``).
            UnavailableError: The database could not be reached.
        """
        if self.source is None:
            raise UsageError(
                "the manager has no collateral source to re-check nodes with",
                code="node.collateral_source_missing",
                hint="configure pcs_url or collateral_dir",
            )
        report = run_node_recheck(
            self.sessions,
            self.source,
            now or self.clock(),
            trust=self.trust,
            interval=self.interval,
            runtime=self.runtime,
            account_id=account_id,
            force=True,
            actor=actor,
            request_id=request_id,
            source_address=source_address,
        )
        if self.metrics is not None:
            self.metrics.observe(report, "manual")
        return report

    def worker(self) -> NodeRecheckWorker | None:
        """Return the scheduled worker, or ``None`` when disabled or without a source."""
        if self.source is None or self.interval <= dt.timedelta(0):
            return None
        return NodeRecheckWorker(
            self.sessions,
            self.source,
            trust=self.trust,
            interval=self.interval,
            clock=self.clock,
            runtime=self.runtime,
            metrics=self.metrics,
        )
