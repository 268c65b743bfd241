"""Nodes: machines that join with a single-use token and a verified quote of their platform.

An editor registers a node and receives a join token (shown once, stored as a hash, expiring).
The node answers a challenge like a workload (its quote binds the nonce and its CSR key) and
presents the token; the manager verifies the quote, records the platform (FMSPC, PCK identity,
TCB status and advisories, simulated or not) and issues the node a certificate. A node can be
deactivated (its certificate is revoked), re-attest with a new token, and is flagged when its
platform no longer meets the node policy after a collateral refresh (a failed or flagged node's
certificate is revoked too). The collateral of a join is checked before the node is judged: a
re-join whose TCB info or QE identity is older than the node was already judged with is refused
(``collateral.rollback``), like collateral outside its validity or manager-source collateral
that does not verify (``node.collateral_unusable``), and the node is left as it was (ADR 0131).
At join the platform's TCB (:class:`~sanctum.manager.node_tcb.NodePlatformTcb`) is recorded so
that the re-check (:mod:`sanctum.manager.services.node_recheck`) can evaluate it against new
TCB info.

The node policy is the default attestation policy's TCB part (``UpToDate`` and
``SWHardeningNeeded``); simulated evidence follows the account's simulation setting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Sequence
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sanctum.attestation.collateral import Collateral as VerifierCollateral
from sanctum.attestation.collateral_verify import judge_validity, verify_collateral_signatures
from sanctum.attestation.quote import Quote
from sanctum.attestation.result import VerifiedQuote
from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import (
    ConflictError,
    EvidenceError,
    NotFoundError,
    PermissionDeniedError,
    SanctumError,
    UnavailableError,
)
from sanctum.manager.ca import issue_workload_certificate, load_csr
from sanctum.manager.errors import RateLimitedError
from sanctum.manager.models import Account
from sanctum.manager.models_attestation import Node, NodeStatus
from sanctum.manager.node_tcb import platform_tcb_from_quote, refuse_collateral_rollback
from sanctum.manager.policy import DEFAULT_ACCEPTED_TCB_STATUSES, attestation_claims
from sanctum.manager.schemas_attestation import NodeJoin
from sanctum.manager.services.attestation import (
    AttestationRefusedError,
    AttestationRuntime,
    fetch_collateral,
    fetch_needed,
    verify_for_account,
)
from sanctum.manager.services.audit import Outcome, Severity, audit
from sanctum.manager.services.certificates import (
    ensure_account_ca,
    record_certificate,
    revoke_where,
    serial_hex,
)
from sanctum.manager.services.context import ServiceContext
from sanctum.manager.services.node_recheck import (
    DEACTIVATED_NODE_REVOCATION_REASON,
    FLAGGED_NODE_REVOCATION_REASON,
)
from sanctum.protocol.binding import check_binding, spki_der

__all__ = [
    "FAILED_NODE_REVOCATION_REASON",
    "NODE_CERTIFICATE_VALIDITY",
    "create_node",
    "deactivate_node",
    "get_node",
    "join_node",
    "list_nodes",
    "new_join_token",
    "record_join_refusal",
]

_log = logging.getLogger(__name__)
#: The CRL reason of a node's certificate when the node fails a join (as when a re-check flags
#: it): the platform is no longer acceptable.
FAILED_NODE_REVOCATION_REASON = FLAGGED_NODE_REVOCATION_REASON
NODE_CERTIFICATE_VALIDITY = dt.timedelta(days=30)
_TOKEN_PREFIX = "snj_"  # noqa: S105 (a public prefix, not a secret)


def _token_hash(token: str) -> str:
    return hashlib.sha256(b"sanctum-node-join\x00" + token.encode()).hexdigest()


def _new_token(ctx: ServiceContext, node: Node) -> str:
    token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
    node.join_token_hash = _token_hash(token)
    node.join_token_expires_at = ctx.now + dt.timedelta(
        seconds=ctx.runtime.settings.node_join_token_ttl_seconds
    )
    return token


def create_node(ctx: ServiceContext, account_id: str, name: str) -> tuple[Node, str]:
    """Register a node; return it with its join token (shown once).

    Raises:
        ConflictError: The name is taken in the account (``node.name_taken``).
    """
    node = Node(
        account_id=account_id,
        name=name,
        status=NodeStatus.pending,
        advisory_ids=[],
        simulated=False,
        created_by=ctx.actor.user_id or ctx.actor.id,
        created_at=ctx.now,
    )
    token = _new_token(ctx, node)
    try:
        with ctx.session.begin_nested():
            ctx.session.add(node)
            ctx.session.flush()
    except IntegrityError as error:
        raise ConflictError(f"a node named {name!r} exists", code="node.name_taken") from error
    audit(
        ctx,
        "node.created",
        account_id=account_id,
        target_type="node",
        target_id=node.id,
        details={"name": name},
    )
    return node, token


def new_join_token(ctx: ServiceContext, account_id: str, node_id: str) -> tuple[Node, str]:
    """Give a node a new join token (to re-attest, or after a failed join).

    Raises:
        NotFoundError: No such node.
    """
    node = get_node(ctx, account_id, node_id)
    token = _new_token(ctx, node)
    audit(ctx, "node.token_issued", account_id=account_id, target_type="node", target_id=node.id)
    return node, token


def list_nodes(ctx: ServiceContext, account_id: str) -> Sequence[Node]:
    """Return the account's nodes by name."""
    return ctx.session.scalars(
        select(Node).where(Node.account_id == account_id).order_by(Node.name)
    ).all()


def get_node(ctx: ServiceContext, account_id: str, node_id: str) -> Node:
    """Return one node by id or name.

    Raises:
        NotFoundError: No such node (``node.not_found``).
    """
    node = ctx.session.scalars(
        select(Node).where(
            Node.account_id == account_id, (Node.id == node_id) | (Node.name == node_id)
        )
    ).first()
    if node is None:
        raise NotFoundError("no such node", code="node.not_found")
    return node


def _tcb_problem(verified: VerifiedQuote) -> str | None:
    if verified.status not in DEFAULT_ACCEPTED_TCB_STATUSES:
        return f"TCB status {verified.status} is not accepted for nodes"
    return None


def _platform_tcb(
    att: AttestationRuntime, verified: VerifiedQuote, body: NodeJoin
) -> dict[str, Any] | None:
    """Return the verified platform TCB of a joining node (JSON), or ``None`` if unreadable.

    The PCK chain is checked again under the anchor that verified the quote, and the result
    must describe the verified platform, so a chain sent alongside (certification data types
    1 to 3) cannot substitute another platform's TCB.
    """
    verifier = att.simulated if verified.simulated else att.intel
    if verifier is None:  # pragma: no cover (a simulated quote verified with its anchor)
        return None
    chain = None if body.collateral is None else body.collateral.pck_certificate_chain
    try:
        platform = platform_tcb_from_quote(body.quote, verifier.trust_anchor, pck_chain_pem=chain)
    except EvidenceError as error:
        _log.warning("node platform TCB not recorded (%s): %s", error.code, error.message)
        return None
    facts = verified.platform
    if (platform.fmspc, platform.pce_id, platform.ppid, platform.pce_svn) != (
        facts.fmspc,
        facts.pce_id,
        facts.ppid,
        facts.pce_svn,
    ):
        _log.warning("node platform TCB not recorded: the PCK chain is not the verified one")
        return None
    return platform.to_json()


def _record_platform(
    ctx: ServiceContext,
    att: AttestationRuntime,
    node: Node,
    verified: VerifiedQuote,
    body: NodeJoin,
) -> None:
    node.tee = verified.tee
    node.fmspc = verified.platform.fmspc.hex()
    node.pck_identity = f"{verified.platform.pce_id.hex()}:{verified.platform.ppid.hex()}"
    node.tcb_status = str(verified.status)
    node.advisory_ids = list(verified.advisory_ids)
    node.simulated = verified.simulated
    node.last_quote = body.quote
    node.platform_tcb = _platform_tcb(att, verified, body)
    # The join judged the platform with this TCB info and QE identity: neither a re-check nor a
    # later join accepts an older one (join_node refused older ones before this point).
    node.tcb_evaluation_data_number = max(
        node.tcb_evaluation_data_number or 0, verified.tcb_evaluation_data_number
    )
    node.qe_tcb_evaluation_data_number = max(
        node.qe_tcb_evaluation_data_number or 0, verified.qe.tcb_evaluation_data_number
    )
    # The join appraised the platform with current collateral: the next re-check is due one
    # period from now, and a run that claimed the node before must not overwrite this.
    node.recheck_claim = None
    node.recheck_claimed_at = ctx.now
    node.rechecked_at = ctx.now


def _fail_node(ctx: ServiceContext, node: Node) -> None:
    """Mark a node ``failed`` and revoke its certificates (a failed node holds no valid one)."""
    node.status = NodeStatus.failed
    revoke_where(ctx, node.account_id, reason=FAILED_NODE_REVOCATION_REASON, node_id=node.id)


#: Error code families that describe the collateral rather than the node's platform.
_COLLATERAL_CODES: Final = ("collateral.", "crl.", "tcb_info.", "qe_identity.")
_Supplier = Literal["source", "node"]


@dataclasses.dataclass(frozen=True, slots=True)
class _PinnedSource:
    """A collateral source that answers with the collateral a join already checked.

    The quote is verified with exactly the collateral whose signatures, numbers and validity
    :func:`_check_join_collateral` checked: a second fetch could answer another issue.
    """

    collateral: VerifierCollateral

    def for_quote(self, quote: Quote, *, now: dt.datetime) -> VerifierCollateral:  # noqa: ARG002
        """Return the pinned collateral (whatever the quote and the time)."""
        return self.collateral


def _not_judged(error: EvidenceError, supplier: _Supplier) -> UnavailableError:
    """Return the refusal of a join whose collateral cannot judge the node (node unchanged)."""
    whose = "the manager's collateral source" if supplier == "source" else "the node"
    return UnavailableError(
        f"the node was not judged: the collateral from {whose} cannot be used "
        f"({error.code}: {error.message})",
        code="node.collateral_unusable",
        hint="check the PCCS or PCS the manager uses, then join again with a new token"
        if supplier == "source"
        else "send current collateral (refresh it from the PCS or PCCS) with a new token",
        details={"cause": error.code, "supplier": supplier},
    )


def _anchor_for(
    att: AttestationRuntime, account: Account, collateral: VerifierCollateral
) -> TrustAnchor | None:
    """Return the anchor the quote will be verified under, or ``None`` if it will be refused.

    ``None`` (simulated evidence this manager or account does not trust) leaves the refusal,
    and its code, to :func:`verify_for_account`.
    """
    kind = att.anchor_kind(collateral.tcb_info_issuer_chain)
    if kind in {"simulated", "simulated_untrusted"}:
        if kind == "simulated_untrusted" or att.simulated is None:
            return None
        if not att.simulation_allowed_for(account.name):
            return None
        return att.simulated.trust_anchor
    return att.intel.trust_anchor


def _check_join_collateral(
    att: AttestationRuntime, account: Account, node: Node, body: NodeJoin, now: dt.datetime
) -> tuple[AttestationRuntime, _Supplier | None]:
    """Check the collateral a join will be judged with, before anything judges the node.

    The collateral is the manager source's (fetched once, then pinned) or, without a source
    or for simulated evidence, the one the node supplied. Its signatures are verified under
    the anchor the quote will be verified under, then its TCB info and QE identity numbers
    must not be below the node's (:func:`refuse_collateral_rollback`), then it must be valid
    at ``now``. Which faults are the node's (ADR 0131):

    - collateral *older* than the node was judged with, or *outside its validity* at ``now``,
      whoever supplied it, says nothing about the platform: the node is not judged
      (:class:`~sanctum.errors.UnavailableError`, node unchanged);
    - collateral of the manager's source that does not verify is the manager's problem: not
      judged either (``node.collateral_unusable``);
    - collateral the node supplied that does not verify is the node's evidence, forged or
      corrupt: the :class:`~sanctum.errors.EvidenceError` propagates and the join fails the
      node, as it always did.

    Returns:
        The runtime to verify the quote with (its source pinned to the checked collateral),
        and who supplied the collateral (``None``: none, verification refuses the join).

    Raises:
        UnavailableError: ``collateral.rollback``, ``node.collateral_unusable``, or the
            source could not answer.
        EvidenceError: The node's quote or its supplied collateral is refused.
    """
    if fetch_needed(att, body.collateral):
        fetched = fetch_collateral(att, body.quote, body.collateral, now=now)
        if fetched is None:  # pragma: no cover (fetch_needed said a fetch is needed)
            return att, None
        try:
            collateral = fetched.get()
        except EvidenceError as error:
            # A quote that cannot pick collateral (quote.*, pck.*) is the node's fault; a
            # malformed answer of the source is not.
            if error.code.startswith(_COLLATERAL_CODES):
                raise _not_judged(error, "source") from error
            raise
        supplier: _Supplier = "source"
        verify_with = dataclasses.replace(att, collateral_source=_PinnedSource(collateral))
    elif body.collateral is not None:
        collateral = att.verifier_collateral(body.collateral)
        supplier, verify_with = "node", att
    else:
        return att, None
    anchor = _anchor_for(att, account, collateral)
    if anchor is None:
        return verify_with, supplier
    try:
        # A revoked PCK CA is reported here and refused by the quote verification, which
        # judges the node's own PCK CA (pck.ca_revoked fails the node).
        checked = verify_collateral_signatures(
            collateral, anchor, unsafe_report_revoked_pck_ca=True
        )
    except EvidenceError as error:
        if supplier == "node":
            raise
        raise _not_judged(error, supplier) from error
    refuse_collateral_rollback(
        checked.tcb_info.tcb_evaluation_data_number,
        checked.qe_identity.tcb_evaluation_data_number,
        highest_tcb=node.tcb_evaluation_data_number,
        highest_qe=node.qe_tcb_evaluation_data_number,
    )
    try:
        judge_validity((checked.validity,), now)
    except EvidenceError as error:
        raise _not_judged(error, supplier) from error
    return verify_with, supplier


def join_node(
    ctx: ServiceContext, att: AttestationRuntime, body: NodeJoin
) -> tuple[Node, str, list[str], str]:
    """Verify a joining node and issue its certificate.

    The nonce is consumed by the caller first (like an attestation).

    Returns:
        The node, its certificate (PEM), the chain and the account's root.

    Raises:
        PermissionDeniedError: Unknown, used or expired token (``node.token_invalid``).
        AttestationRefusedError: The platform is refused (``node.tcb_status_rejected``,
            ``attest.simulated_not_allowed``...).
        EvidenceError: The quote, the CSR, the binding or collateral the node supplied is
            refused.
        UnavailableError: The node was not judged and is left as it was (status, record,
            numbers, certificate; only the token is used): the collateral's TCB info or QE
            identity is older than the node was already judged with (``collateral.rollback``),
            the collateral is outside its validity, the manager source's collateral does not
            verify or apply (``node.collateral_unusable``, ``details.cause``), or the
            collateral source could not answer.

    A refused platform, quote or supplied collateral makes the node ``failed`` and revokes its
    certificate; which faults do is decided in ADR 0131 (:func:`_check_join_collateral`).
    """
    node = ctx.session.scalars(
        select(Node).where(Node.join_token_hash == _token_hash(body.token)).with_for_update()
    ).first()
    if (
        node is None
        or node.join_token_expires_at is None
        or node.join_token_expires_at <= ctx.now
        or node.status == NodeStatus.deactivated
    ):
        raise PermissionDeniedError(
            "the join token is unknown, used, expired or for a deactivated node",
            code="node.token_invalid",
        )
    ctx.extras["node"] = node
    node.join_token_hash = None
    node.join_token_expires_at = None
    account = ctx.session.get(Account, node.account_id)
    if account is None:  # pragma: no cover (foreign key)
        raise NotFoundError("no such account", code="account.not_found")
    csr = load_csr(body.csr)
    supplier: _Supplier | None = None
    try:
        # The collateral is checked (signatures, rollback, validity) before the node is
        # judged: a refusal there leaves the node exactly as it was.
        verify_with, supplier = _check_join_collateral(
            att, account, node, body, ctx.now.astimezone(dt.UTC)
        )
        verified = verify_for_account(
            verify_with,
            account,
            body.quote,
            body.collateral,
            now=ctx.now,
            allow_expired_collateral=False,
        )
        check_binding(verified.report_data, body.nonce, spki_der(csr.public_key()))
    except EvidenceError as error:
        if supplier is not None and (
            error.code == "collateral.expired"
            or (supplier == "source" and error.code.startswith(_COLLATERAL_CODES))
        ):
            # Past the collateral check, an expiry is the quote's PCK chain's (age, not a
            # judgement), and a source's collateral that does not apply to the platform (its
            # TEE, FMSPC, PCE ID or PCK CA) cannot judge it: the node is left as it was.
            raise _not_judged(error, supplier) from error
        _fail_node(ctx, node)
        raise
    # The quote was verified with the collateral checked above; the numbers it reports are
    # checked again so that no path can record a node with older collateral.
    refuse_collateral_rollback(
        verified.tcb_evaluation_data_number,
        verified.qe.tcb_evaluation_data_number,
        highest_tcb=node.tcb_evaluation_data_number,
        highest_qe=node.qe_tcb_evaluation_data_number,
    )
    _record_platform(ctx, att, node, verified, body)
    problem = _tcb_problem(verified)
    if problem is not None:
        _fail_node(ctx, node)
        node.flag = problem
        raise AttestationRefusedError(problem, code="node.tcb_status_rejected")
    with ctx.session.begin_nested():
        ca = ensure_account_ca(ctx, node.account_id, att.ca_cache)
        certificate = issue_workload_certificate(
            ca,
            csr,
            subject=node.name[:64],
            sans=[],
            validity=NODE_CERTIFICATE_VALIDITY,
            serial=x509.random_serial_number(),
            attestation=attestation_claims(verified),
            now=ctx.now,
        )
        revoke_where(ctx, node.account_id, reason="superseded", node_id=node.id)
        record_certificate(ctx, node.account_id, certificate, sans=[], node_id=node.id)
    node.status = NodeStatus.active
    node.flag = None
    node.attested_at = ctx.now
    node.certificate_serial = serial_hex(certificate.serial_number)
    audit(
        ctx,
        "node.joined",
        account_id=node.account_id,
        target_type="node",
        target_id=node.id,
        details={
            "fmspc": node.fmspc,
            "tcb_status": node.tcb_status,
            "advisory_ids": node.advisory_ids,
            "simulated": node.simulated,
            "certificate_serial": node.certificate_serial,
        },
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return node, pem, ca.chain_pem(), ca.root_pem()


def deactivate_node(ctx: ServiceContext, account_id: str, node_id: str) -> Node:
    """Deactivate a node: it can no longer join, and its certificate is revoked.

    Raises:
        NotFoundError: No such node.
        ConflictError: Already deactivated (``node.deactivated``).
    """
    node = get_node(ctx, account_id, node_id)
    if node.status == NodeStatus.deactivated:
        raise ConflictError("the node is already deactivated", code="node.deactivated")
    node.status = NodeStatus.deactivated
    node.join_token_hash = None
    node.join_token_expires_at = None
    audit(
        ctx,
        "node.deactivated",
        account_id=account_id,
        target_type="node",
        target_id=node.id,
        severity=Severity.warning,
    )
    revoke_where(ctx, account_id, reason=DEACTIVATED_NODE_REVOCATION_REASON, node_id=node.id)
    return node


def record_join_refusal(ctx: ServiceContext, att: AttestationRuntime, error: SanctumError) -> None:
    """Audit and count a refused node join (in the caller's transaction, which commits)."""
    att.metrics.count("node-join", "refused", error.code)
    if isinstance(error, RateLimitedError):
        return
    node = ctx.extras.get("node")
    audit(
        ctx,
        "node.join_refused",
        account_id=node.account_id if isinstance(node, Node) else None,
        target_type="node",
        target_id=node.id if isinstance(node, Node) else None,
        outcome=Outcome.denied,
        severity=Severity.warning,
        details={"code": error.code, "reason": error.message[:500]},
    )
