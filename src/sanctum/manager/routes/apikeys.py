"""API keys of an account: list, create (secret shown once), revoke."""

from __future__ import annotations

from fastapi import APIRouter, status

from sanctum.manager.deps import ContextDep, PrincipalDep
from sanctum.manager.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from sanctum.manager.services import apikeys

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/apikeys", tags=["apikeys"])


@router.get("", response_model=list[ApiKeyPublic])
def list_keys(account_id: str, ctx: ContextDep, principal: PrincipalDep) -> list[ApiKeyPublic]:
    """List keys: all of them for administrators, one's own otherwise."""
    keys = apikeys.list_api_keys(ctx, account_id, actor_role=principal.require_role())
    return [ApiKeyPublic.model_validate(key) for key in keys]


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(
    account_id: str, body: ApiKeyCreate, ctx: ContextDep, principal: PrincipalDep
) -> ApiKeyCreated:
    """Create a key with a role no higher than one's own; the secret is shown only here."""
    key, secret = apikeys.create_api_key(
        ctx,
        account_id,
        name=body.name,
        role=body.role,
        expires_at=body.expires_at,
        service_account=body.service_account,
        actor_role=principal.require_role(),
    )
    return ApiKeyCreated(key=ApiKeyPublic.model_validate(key), secret=secret)


@router.delete("/{key_id}", response_model=ApiKeyPublic)
def revoke_key(
    account_id: str, key_id: str, ctx: ContextDep, principal: PrincipalDep
) -> ApiKeyPublic:
    """Revoke a key (its owner or an administrator); it stops working at once."""
    key = apikeys.revoke_api_key(ctx, account_id, key_id, actor_role=principal.require_role())
    return ApiKeyPublic.model_validate(key)
