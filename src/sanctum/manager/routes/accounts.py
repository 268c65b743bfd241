"""Accounts: list, create, show, update (governance changes become approval tasks)."""

from __future__ import annotations

from fastapi import APIRouter, status

from sanctum.manager.deps import ContextDep, PrincipalDep
from sanctum.manager.models import Role
from sanctum.manager.schemas import (
    AccountCreate,
    AccountPublic,
    AccountUpdate,
    AccountUpdated,
    TaskPublic,
)
from sanctum.manager.services import accounts

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


def _public(account: object, role: Role | None) -> AccountPublic:
    return AccountPublic.model_validate(account).model_copy(update={"role": role})


@router.get("", response_model=list[AccountPublic])
def list_accounts(ctx: ContextDep) -> list[AccountPublic]:
    """List the accounts the caller belongs to, with its role in each."""
    return [_public(account, role) for account, role in accounts.list_accounts(ctx)]


@router.post("", response_model=AccountPublic, status_code=status.HTTP_201_CREATED)
def create_account(body: AccountCreate, ctx: ContextDep) -> AccountPublic:
    """Create an account; the caller becomes its administrator."""
    account = accounts.create_account(ctx, body.name, allow_self_approval=body.allow_self_approval)
    return _public(account, Role.administrator)


@router.get("/{account_id}", response_model=AccountPublic)
def get_account(account_id: str, ctx: ContextDep, principal: PrincipalDep) -> AccountPublic:
    """Show one account."""
    return _public(accounts.get_account(ctx, account_id), principal.role)


@router.patch("/{account_id}", response_model=AccountUpdated)
def update_account(
    account_id: str, body: AccountUpdate, ctx: ContextDep, principal: PrincipalDep
) -> AccountUpdated:
    """Rename the account at once; open a task to change its quorum or self-approval rule."""
    account, task = accounts.update_account(
        ctx,
        account_id,
        name=body.name,
        quorum=body.quorum,
        allow_self_approval=body.allow_self_approval,
    )
    return AccountUpdated(
        account=_public(account, principal.role),
        task=TaskPublic.model_validate(task) if task else None,
    )
