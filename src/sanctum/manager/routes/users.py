"""Members of an account: list, invite, show, update (role, status, name), remove."""

from __future__ import annotations

from fastapi import APIRouter, status

from sanctum.manager.deps import ContextDep
from sanctum.manager.models import Membership, User, UserStatus
from sanctum.manager.schemas import (
    MemberInvite,
    MemberInvited,
    MemberPublic,
    MemberUpdate,
    MemberUpdated,
    TaskPublic,
)
from sanctum.manager.services import users

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/users", tags=["users"])


def _member(user: User, membership: Membership) -> MemberPublic:
    return MemberPublic(
        id=user.id,
        email=user.email,
        name=user.name,
        status=user.status,
        role=membership.role,
        created_at=user.created_at,
    )


@router.get("", response_model=list[MemberPublic])
def list_members(account_id: str, ctx: ContextDep) -> list[MemberPublic]:
    """List the account's members."""
    return [_member(u, m) for u, m in users.list_members(ctx, account_id)]


@router.post("", response_model=MemberInvited, status_code=status.HTTP_201_CREATED)
def invite_member(account_id: str, body: MemberInvite, ctx: ContextDep) -> MemberInvited:
    """Invite a new user (the token is shown once) or add an existing user."""
    result = users.invite_user(ctx, account_id, email=body.email, name=body.name, role=body.role)
    return MemberInvited(
        member=_member(result.user, result.membership),
        invitation_token=result.token,
        invitation_expires_at=result.expires_at,
    )


@router.get("/{user_id}", response_model=MemberPublic)
def get_member(account_id: str, user_id: str, ctx: ContextDep) -> MemberPublic:
    """Show one member."""
    return _member(*users.get_member(ctx, account_id, user_id))


@router.patch("/{user_id}", response_model=MemberUpdated)
def update_member(
    account_id: str, user_id: str, body: MemberUpdate, ctx: ContextDep
) -> MemberUpdated:
    """Change a member's name, status or role (raising to administrator opens a task)."""
    user, membership, task = users.update_member(
        ctx,
        account_id,
        user_id,
        role=body.role,
        status=UserStatus(body.status) if body.status else None,
        name=body.name,
    )
    return MemberUpdated(
        member=_member(user, membership),
        task=TaskPublic.model_validate(task) if task else None,
    )


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(account_id: str, user_id: str, ctx: ContextDep) -> None:
    """Remove a member (never the last administrator)."""
    users.remove_member(ctx, account_id, user_id)
