"""Nodes: register (join token), list, show, deactivate, new token, refresh; and the join call.

``POST /v1/nodes/join`` carries no user credentials: the single-use join token plus a quote
that binds the challenge nonce and the node's CSR key are the credentials (``workload`` access
in the permission matrix, rate limited like attestation).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from sanctum.errors import SanctumError
from sanctum.manager.deps import ContextDep, PrincipalDep, RuntimeDep, SessionDep
from sanctum.manager.routes.attest import AttestationDep, refusal_response, workload_context
from sanctum.manager.schemas_attestation import (
    NodeCreate,
    NodeCreated,
    NodeJoin,
    NodeJoined,
    NodePublic,
    NodeRefreshed,
)
from sanctum.manager.services import attestation, nodes

__all__ = ["router"]

router = APIRouter(tags=["nodes"])
_A = "/v1/accounts/{account_id}/nodes"


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


@router.post(f"{_A}/refresh", response_model=NodeRefreshed)
def refresh_nodes(account_id: str, ctx: ContextDep, att: AttestationDep) -> NodeRefreshed:
    """Re-appraise every active node's last quote with current collateral; flag failures."""
    checked, flagged = nodes.refresh_nodes(ctx, att, account_id)
    return NodeRefreshed(checked=checked, flagged=[NodePublic.model_validate(n) for n in flagged])


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
