"""Nodes: register (join token), list, show, deactivate, new token, re-check; and the join call.

``POST /v1/nodes/join`` carries no user credentials: the single-use join token plus a quote
that binds the challenge nonce and the node's CSR key are the credentials (``workload`` access
in the permission matrix, rate limited like attestation).

``POST /v1/accounts/{id}/nodes/recheck`` (administrators) re-appraises every active node of the
account with fresh collateral now; the manager also does it on a schedule
(:func:`install_node_recheck`, :mod:`sanctum.manager.services.node_recheck`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sanctum.errors import SanctumError
from sanctum.manager.deps import ContextDep, PrincipalDep, RuntimeDep, SessionDep
from sanctum.manager.routes.attest import AttestationDep, refusal_response, workload_context
from sanctum.manager.runtime import Runtime
from sanctum.manager.schemas_attestation import (
    NodeCreate,
    NodeCreated,
    NodeJoin,
    NodeJoined,
    NodePublic,
)
from sanctum.manager.services import attestation, nodes
from sanctum.manager.services.node_recheck import (
    NodeRechecker,
    NodeRecheckMetrics,
    RecheckTrust,
)

__all__ = [
    "NodeRecheckChange",
    "NodeRecheckFailure",
    "NodeRecheckResult",
    "install_node_recheck",
    "router",
]

router = APIRouter(tags=["nodes"])
_A = "/v1/accounts/{account_id}/nodes"


class NodeRecheckChange(BaseModel):
    """A node whose TCB appraisal changed in a re-check (flagged, or still acceptable)."""

    node_id: str
    account_id: str
    name: str
    old_tcb_status: str | None
    new_tcb_status: str | None
    old_advisory_ids: list[str]
    new_advisory_ids: list[str]
    flagged: bool
    code: str | None
    reason: str | None


class NodeRecheckFailure(BaseModel):
    """Nodes a re-check could not judge (left untouched) and why; ``retry``: transient."""

    tee: str | None
    fmspc: str | None
    node_ids: list[str]
    code: str
    message: str
    retry: bool


class NodeRecheckResult(BaseModel):
    """What a re-check run did."""

    run_id: str
    started_at: dt.datetime
    outcome: str
    claimed: int
    checked: int
    lost: int
    revoked: int = 0
    changes: list[NodeRecheckChange]
    failures: list[NodeRecheckFailure]


def install_node_recheck(app: FastAPI) -> NodeRechecker:
    """Build the app's node re-checker on ``app.state.node_recheck``.

    Call it after the attestation runtime exists: the re-checker shares its collateral source
    and trust anchors. The app's lifespan starts the scheduled worker
    (:meth:`NodeRechecker.worker`).
    """
    runtime: Runtime = app.state.runtime
    att: attestation.AttestationRuntime = app.state.attestation
    settings = runtime.settings
    rechecker = NodeRechecker(
        sessions=runtime.db.transaction,
        source=att.collateral_source,
        trust=RecheckTrust(
            intel=att.intel.trust_anchor,
            simulated=None if att.simulated is None else att.simulated.trust_anchor,
            simulation_accounts=frozenset(settings.simulation_accounts),
        ),
        interval=dt.timedelta(seconds=settings.node_recheck_interval_seconds),
        clock=runtime.clock.now,
        runtime=runtime,
        metrics=NodeRecheckMetrics(app.state.metrics.registry),
    )
    app.state.node_recheck = rechecker
    return rechecker


async def get_rechecker(request: Request) -> NodeRechecker:
    """Return the app's node re-checker."""
    rechecker: NodeRechecker = request.app.state.node_recheck
    return rechecker


RecheckerDep = Annotated[NodeRechecker, Depends(get_rechecker)]


@router.get(_A, response_model=list[NodePublic])
def list_nodes(account_id: str, ctx: ContextDep) -> list[NodePublic]:
    """List the account's nodes."""
    return [NodePublic.model_validate(node) for node in nodes.list_nodes(ctx, account_id)]


@router.post(_A, response_model=NodeCreated, status_code=status.HTTP_201_CREATED)
def create_node(account_id: str, body: NodeCreate, ctx: ContextDep) -> NodeCreated:
    """Register a node; the join token is shown once."""
    node, token = nodes.create_node(ctx, account_id, body.name)
    expires = node.join_token_expires_at
    assert expires is not None
    return NodeCreated(
        node=NodePublic.model_validate(node), join_token=token, join_token_expires_at=expires
    )


@router.post(f"{_A}/recheck", response_model=NodeRecheckResult)
def recheck_nodes(account_id: str, ctx: ContextDep, rechecker: RecheckerDep) -> NodeRecheckResult:
    """Re-appraise every active node with fresh collateral now; flag the unacceptable ones."""
    # The run writes in transactions of its own: end the request's first (on SQLite it holds
    # the writer lock).
    ctx.runtime.db.commit(ctx.session)
    report = rechecker.run_now(
        account_id=account_id,
        actor=ctx.actor,
        now=ctx.now,
        request_id=ctx.request_id,
        source_address=ctx.source_address,
    )
    return NodeRecheckResult.model_validate(report.to_dict())


@router.get(f"{_A}/{{node_id}}", response_model=NodePublic)
def get_node(account_id: str, node_id: str, ctx: ContextDep) -> NodePublic:
    """Show a node (by id or name)."""
    return NodePublic.model_validate(nodes.get_node(ctx, account_id, node_id))


@router.post(f"{_A}/{{node_id}}/deactivate", response_model=NodePublic)
def deactivate_node(account_id: str, node_id: str, ctx: ContextDep) -> NodePublic:
    """Deactivate a node and revoke its certificate."""
    return NodePublic.model_validate(nodes.deactivate_node(ctx, account_id, node_id))


@router.post(f"{_A}/{{node_id}}/join-token", response_model=NodeCreated)
def new_join_token(account_id: str, node_id: str, ctx: ContextDep) -> NodeCreated:
    """Give a node a new single-use join token (to re-attest)."""
    node, token = nodes.new_join_token(ctx, account_id, node_id)
    expires = node.join_token_expires_at
    assert expires is not None
    return NodeCreated(
        node=NodePublic.model_validate(node), join_token=token, join_token_expires_at=expires
    )


@router.post("/v1/nodes/join", response_model=NodeJoined)
def join_node(
    *,
    body: NodeJoin,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    att: AttestationDep,
    _principal: PrincipalDep,
) -> NodeJoined | JSONResponse:
    """Join a node: join token plus a quote binding the challenge nonce and the node's CSR."""
    ctx = workload_context(request, runtime, session, instance=None, app="node")
    try:
        att.limiter.take(ctx.source_address or "unknown", ctx.now)
        attestation.consume_nonce(session, body.nonce, ctx.now)
        node, certificate, chain, root = nodes.join_node(ctx, att, body)
    except SanctumError as error:
        nodes.record_join_refusal(ctx, att, error)
        return refusal_response(request, error)
    return NodeJoined(
        node=NodePublic.model_validate(node), certificate=certificate, chain=chain, ca=root
    )
