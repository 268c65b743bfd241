"""Accounts (tenants): creation, settings, and the ``quorum_change`` task type."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sanctum.errors import ConflictError, NotFoundError, PermissionDeniedError, UsageError
from sanctum.manager.models import Account, ApiKey, Membership, Role, Task
from sanctum.manager.services.audit import audit
from sanctum.manager.services.context import ServiceContext
from sanctum.manager.services.tasks import (
    QUORUM_CHANGE,
    TaskType,
    create_task,
    eligible_voter_count,
)

__all__ = [
    "QUORUM_CHANGE_TYPE",
    "QuorumChange",
    "create_account",
    "get_account",
    "list_accounts",
    "update_account",
]


class QuorumChange(BaseModel):
    """Payload of a ``quorum_change`` task."""

    quorum: int | None = Field(None, ge=1, le=100)
    allow_self_approval: bool | None = None


def _apply_quorum_change(ctx: ServiceContext, task: Task, payload: BaseModel) -> None:
    if not isinstance(payload, QuorumChange):  # pragma: no cover (the registry validates)
        raise UsageError("wrong payload", code="task.payload_invalid")
    account = get_account(ctx, task.account_id)
    if payload.quorum is not None:
        voters = eligible_voter_count(ctx.session, account.id)
        if payload.quorum > voters:
            raise ConflictError(
                f"a quorum of {payload.quorum} needs at least that many editors or "
                f"administrators; the account has {voters}",
                code="account.quorum_unreachable",
            )
        account.quorum = payload.quorum
    if payload.allow_self_approval is not None:
        account.allow_self_approval = payload.allow_self_approval
    audit(
        ctx,
        "settings.quorum_changed",
        account_id=account.id,
        target_type="account",
        target_id=account.id,
        details={"quorum": account.quorum, "allow_self_approval": account.allow_self_approval},
    )


QUORUM_CHANGE_TYPE = TaskType(
    name=QUORUM_CHANGE,
    payload_model=QuorumChange,
    on_approved=_apply_quorum_change,
    description="Change an account's approval quorum or self-approval rule.",
)


def create_account(ctx: ServiceContext, name: str, *, allow_self_approval: bool) -> Account:
    """Create an account with the acting user as its first administrator.

    Raises:
        PermissionDeniedError: The actor is not a user (``account.creator_not_user``).
        ConflictError: The name is taken (``account.name_taken``).
    """
    if ctx.actor.type != "user" or ctx.actor.user_id is None:
        raise PermissionDeniedError("only users create accounts", code="account.creator_not_user")
    account = Account(
        name=name, quorum=1, allow_self_approval=allow_self_approval, created_at=ctx.now
    )
    try:
        with ctx.session.begin_nested():
            ctx.session.add(account)
            ctx.session.flush()
    except IntegrityError as error:
        raise ConflictError(
            f"an account named {name!r} exists", code="account.name_taken"
        ) from error
    ctx.session.add(
        Membership(
            user_id=ctx.actor.user_id,
            account_id=account.id,
            role=Role.administrator,
            created_at=ctx.now,
        )
    )
    audit(
        ctx,
        "account.created",
        account_id=account.id,
        target_type="account",
        target_id=account.id,
        details={"name": name, "allow_self_approval": allow_self_approval},
    )
    return account


def get_account(ctx: ServiceContext, account_id: str) -> Account:
    """Return one account.

    Raises:
        NotFoundError: No such account (``account.not_found``).
    """
    account = ctx.session.get(Account, account_id)
    if account is None:
        raise NotFoundError("no such account", code="account.not_found")
    return account


def list_accounts(ctx: ServiceContext) -> Sequence[tuple[Account, Role]]:
    """Return the accounts the actor belongs to, with its role in each."""
    if ctx.actor.type == "apikey" and ctx.actor.account_id is not None:
        key = ctx.session.get(ApiKey, ctx.actor.id)
        account = ctx.session.get(Account, ctx.actor.account_id)
        if key is None or account is None:
            return []
        return [(account, key.role)]
    rows = ctx.session.execute(
        select(Account, Membership.role)
        .join(Membership, Membership.account_id == Account.id)
        .where(Membership.user_id == ctx.actor.user_id)
        .order_by(Account.name)
    ).all()
    return [(account, role) for account, role in rows]


def update_account(
    ctx: ServiceContext,
    account_id: str,
    *,
    name: str | None,
    quorum: int | None,
    allow_self_approval: bool | None,
) -> tuple[Account, Task | None]:
    """Rename at once; open a ``quorum_change`` task for governance settings.

    Raises:
        NotFoundError: No such account.
        ConflictError: The new name is taken (``account.name_taken``).
    """
    account = get_account(ctx, account_id)
    if name is not None and name != account.name:
        old = account.name
        account.name = name
        try:
            with ctx.session.begin_nested():
                ctx.session.flush()
        except IntegrityError as error:
            raise ConflictError(
                f"an account named {name!r} exists", code="account.name_taken"
            ) from error
        audit(
            ctx,
            "settings.account_renamed",
            account_id=account.id,
            target_type="account",
            target_id=account.id,
            details={"from": old, "to": name},
        )
    task = None
    changes = QuorumChange(
        quorum=quorum if quorum is not None and quorum != account.quorum else None,
        allow_self_approval=allow_self_approval
        if allow_self_approval is not None and allow_self_approval != account.allow_self_approval
        else None,
    )
    if changes.quorum is not None or changes.allow_self_approval is not None:
        summary = ", ".join(
            f"{field} → {value}" for field, value in changes.model_dump(exclude_none=True).items()
        )
        task = create_task(ctx, account.id, QUORUM_CHANGE, changes, f"Change {summary}")
    return account, task
