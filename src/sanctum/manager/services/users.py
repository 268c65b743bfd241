"""Users and memberships: invitations, roles, status, passwords, removal.

Raising a member to administrator goes through a ``role_raise_to_admin`` approval task; lower
role changes take effect at once. The last active administrator of an account can be neither
demoted, disabled nor removed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import func, select

from sanctum.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)
from sanctum.manager.credentials import (
    check_password_strength,
    hash_password,
    hash_secret,
    new_secret_token,
    verify_password,
)
from sanctum.manager.models import Invitation, Membership, Role, Task, User, UserStatus
from sanctum.manager.runtime import Runtime
from sanctum.manager.services.audit import Severity, audit, audit_failure, record
from sanctum.manager.services.context import ServiceContext
from sanctum.manager.services.tasks import ROLE_RAISE_TO_ADMIN, TaskType, create_task

__all__ = [
    "ROLE_RAISE_TYPE",
    "InviteResult",
    "RoleRaise",
    "accept_invitation",
    "change_password",
    "get_member",
    "invite_user",
    "list_members",
    "normalise_email",
    "remove_member",
    "update_member",
]


def normalise_email(email: str) -> str:
    """Return the canonical form of an email address (trimmed, lower case).

    Raises:
        UsageError: It does not look like an email address (``user.email_invalid``).
    """
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or not domain or " " in value or len(value) > 320:
        raise UsageError("that is not an email address", code="user.email_invalid")
    return value


class RoleRaise(BaseModel):
    """Payload of a ``role_raise_to_admin`` task."""

    user_id: str


def _apply_role_raise(ctx: ServiceContext, task: Task, payload: BaseModel) -> None:
    if not isinstance(payload, RoleRaise):  # pragma: no cover (the registry validates)
        raise UsageError("wrong payload", code="task.payload_invalid")
    membership = ctx.session.get(Membership, (payload.user_id, task.account_id))
    if membership is None:
        raise NotFoundError("the user left the account", code="user.not_member")
    membership.role = Role.administrator
    audit(
        ctx,
        "user.role_changed",
        account_id=task.account_id,
        target_type="user",
        target_id=payload.user_id,
        details={"role": "administrator", "task_id": task.id},
    )


ROLE_RAISE_TYPE = TaskType(
    name=ROLE_RAISE_TO_ADMIN,
    payload_model=RoleRaise,
    on_approved=_apply_role_raise,
    description="Make a member an administrator of the account.",
)


def list_members(ctx: ServiceContext, account_id: str) -> Sequence[tuple[User, Membership]]:
    """Return the account's members with their memberships, by email."""
    rows = ctx.session.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.account_id == account_id)
        .order_by(User.email)
    ).all()
    return [(user, membership) for user, membership in rows]


def get_member(ctx: ServiceContext, account_id: str, user_id: str) -> tuple[User, Membership]:
    """Return one member of the account.

    Raises:
        NotFoundError: Not a member (``user.not_found``).
    """
    membership = ctx.session.get(Membership, (user_id, account_id))
    user = ctx.session.get(User, user_id)
    if membership is None or user is None:
        raise NotFoundError("no such user in this account", code="user.not_found")
    return user, membership


@dataclass(frozen=True, slots=True)
class InviteResult:
    """The member added, and the invitation token when the user is new (shown once)."""

    user: User
    membership: Membership
    token: str | None
    expires_at: dt.datetime | None


def invite_user(
    ctx: ServiceContext, account_id: str, *, email: str, name: str, role: Role
) -> InviteResult:
    """Add a member: an existing user joins at once; a new user gets an invitation token.

    Raises:
        UsageError: Bad email, or an administrator invitation (``user.invite_admin``: raise the
            role through an approval task instead).
        ConflictError: Already a member (``user.already_member``).
    """
    if role == Role.administrator:
        raise UsageError(
            "invite as viewer or editor, then raise the role (an approval task)",
            code="user.invite_admin",
        )
    email = normalise_email(email)
    user = ctx.session.scalars(select(User).where(User.email == email)).first()
    token: str | None = None
    expires_at: dt.datetime | None = None
    if user is None:
        user = User(
            email=email,
            name=name,
            status=UserStatus.pending_invite,
            password_hash=None,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        ctx.session.add(user)
        ctx.session.flush()
    elif ctx.session.get(Membership, (user.id, account_id)) is not None:
        raise ConflictError("that user is already a member", code="user.already_member")
    if user.status == UserStatus.pending_invite:
        token = new_secret_token()
        expires_at = ctx.now + dt.timedelta(seconds=ctx.runtime.settings.invitation_ttl_seconds)
        ctx.session.add(
            Invitation(
                account_id=account_id,
                user_id=user.id,
                token_hash=hash_secret(token),
                created_by=ctx.actor.user_id or ctx.actor.id,
                created_at=ctx.now,
                expires_at=expires_at,
            )
        )
    membership = Membership(user_id=user.id, account_id=account_id, role=role, created_at=ctx.now)
    ctx.session.add(membership)
    ctx.session.flush()
    audit(
        ctx,
        "user.invited",
        account_id=account_id,
        target_type="user",
        target_id=user.id,
        details={"email": email, "role": str(role), "new_user": token is not None},
    )
    return InviteResult(user=user, membership=membership, token=token, expires_at=expires_at)


def accept_invitation(
    runtime: Runtime,
    *,
    token: str,
    password: str,
    name: str | None,
    address: str | None,
    request_id: str | None,
) -> User:
    """Set the invited user's password and activate them; the token works once.

    Raises:
        UsageError: Weak password (``user.password_weak``).
        AuthenticationError: Unknown, used or expired token (``invitation.invalid``).
    """
    check_password_strength(password)
    now = runtime.clock.now()
    with runtime.db.transaction() as session:
        invitation = session.scalars(
            select(Invitation).where(Invitation.token_hash == hash_secret(token)).with_for_update()
        ).first()
        if invitation is None or invitation.used_at is not None or invitation.expires_at <= now:
            raise AuthenticationError(
                "the invitation is unknown, used or expired", code="invitation.invalid"
            )
        invitation.used_at = now
        user = session.get(User, invitation.user_id)
        if user is None or user.status != UserStatus.pending_invite:
            raise AuthenticationError(
                "the invitation is unknown, used or expired", code="invitation.invalid"
            )
        user.password_hash = hash_password(password, runtime.hasher)
        user.status = UserStatus.active
        user.updated_at = now
        if name:
            user.name = name
        record(
            session,
            now=now,
            action="user.invitation_accepted",
            account_id=invitation.account_id,
            actor_type="user",
            actor_id=user.id,
            actor_name=user.email,
            target_type="user",
            target_id=user.id,
            request_id=request_id,
            source_address=address,
        )
        return user


def _active_admins(ctx: ServiceContext, account_id: str) -> set[str]:
    rows = ctx.session.scalars(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.account_id == account_id,
            Membership.role == Role.administrator,
            User.status == UserStatus.active,
        )
        .with_for_update()
    ).all()
    return set(rows)


def _is_admin(ctx: ServiceContext, account_id: str) -> bool:
    if ctx.actor.type != "user" or ctx.actor.user_id is None:
        return False
    membership = ctx.session.get(Membership, (ctx.actor.user_id, account_id))
    return membership is not None and membership.role == Role.administrator


def _guard_last_admin(ctx: ServiceContext, account_id: str, user_id: str, action: str) -> None:
    admins = _active_admins(ctx, account_id)
    if admins == {user_id}:
        raise ConflictError(
            f"cannot {action} the last active administrator of the account",
            code="user.last_admin",
        )


def update_member(
    ctx: ServiceContext,
    account_id: str,
    user_id: str,
    *,
    role: Role | None,
    status: UserStatus | None,
    name: str | None,
) -> tuple[User, Membership, Task | None]:
    """Change a member's role, status or name; raising to administrator opens a task.

    Raises:
        NotFoundError: Not a member.
        UsageError: ``pending_invite`` is not a status one can set (``user.status_invalid``).
        ConflictError: It would leave no active administrator (``user.last_admin``), or an
            identical raise is already pending (``task.duplicate``).
        PermissionDeniedError: Disabling yourself (``user.self_disable``).
    """
    user, membership = get_member(ctx, account_id, user_id)
    task: Task | None = None
    if name is not None and name != user.name:
        user.name = name
        user.updated_at = ctx.now
        audit(ctx, "user.renamed", account_id=account_id, target_type="user", target_id=user.id)
    if status is not None and status != user.status:
        if status == UserStatus.pending_invite:
            raise UsageError("a user cannot be put back to pending", code="user.status_invalid")
        if user.status == UserStatus.pending_invite:
            raise UsageError(
                "the user has not accepted the invitation yet", code="user.status_invalid"
            )
        if status == UserStatus.disabled and user_id == ctx.actor.user_id:
            raise PermissionDeniedError("you cannot disable yourself", code="user.self_disable")
        # A user's status is global: only an administrator of every account the user belongs
        # to may change it, so one tenant cannot lock a user out of another.
        memberships = ctx.session.scalars(
            select(Membership).where(Membership.user_id == user_id)
        ).all()
        for other in memberships:
            if other.account_id != account_id and not _is_admin(ctx, other.account_id):
                raise PermissionDeniedError(
                    "the user also belongs to accounts you do not administer",
                    code="user.status_cross_account",
                )
            if status == UserStatus.disabled and other.role == Role.administrator:
                _guard_last_admin(ctx, other.account_id, user_id, "disable")
        user.status = status
        user.updated_at = ctx.now
        audit(
            ctx,
            "user.disabled" if status == UserStatus.disabled else "user.enabled",
            account_id=account_id,
            target_type="user",
            target_id=user.id,
            severity=Severity.warning if status == UserStatus.disabled else Severity.info,
        )
    if role is not None and role != membership.role:
        if role == Role.administrator:
            pending = ctx.session.scalars(
                select(Task).where(
                    Task.account_id == account_id,
                    Task.type == ROLE_RAISE_TO_ADMIN,
                    Task.status == "pending",
                )
            ).all()
            if any(t.payload.get("user_id") == user_id for t in pending):
                raise ConflictError(
                    "a request to make this user an administrator is already pending",
                    code="task.duplicate",
                )
            task = create_task(
                ctx,
                account_id,
                ROLE_RAISE_TO_ADMIN,
                RoleRaise(user_id=user_id),
                f"Make {user.email} an administrator",
            )
        else:
            if membership.role == Role.administrator:
                _guard_last_admin(ctx, account_id, user_id, "demote")
            old = membership.role
            membership.role = role
            audit(
                ctx,
                "user.role_changed",
                account_id=account_id,
                target_type="user",
                target_id=user.id,
                details={"from": str(old), "to": str(role)},
            )
    ctx.session.flush()
    return user, membership, task


def remove_member(ctx: ServiceContext, account_id: str, user_id: str) -> None:
    """Remove a member; a user left in no account is deleted.

    Raises:
        NotFoundError: Not a member.
        ConflictError: The last active administrator (``user.last_admin``).
    """
    user, membership = get_member(ctx, account_id, user_id)
    if membership.role == Role.administrator:
        _guard_last_admin(ctx, account_id, user_id, "remove")
    ctx.session.delete(membership)
    ctx.session.flush()
    remaining = ctx.session.scalar(
        select(func.count()).select_from(Membership).where(Membership.user_id == user_id)
    )
    deleted = not remaining
    if deleted:
        ctx.session.delete(user)
    audit(
        ctx,
        "user.removed",
        account_id=account_id,
        target_type="user",
        target_id=user_id,
        severity=Severity.warning,
        details={"email": user.email, "user_deleted": deleted},
    )


def change_password(ctx: ServiceContext, *, current: str, new: str) -> None:
    """Change the acting user's password.

    Raises:
        PermissionDeniedError: The actor is not a user (``user.not_a_user``).
        AuthenticationError: The current password is wrong (``auth.invalid_credentials``).
        UsageError: The new password is weak (``user.password_weak``).
    """
    if ctx.actor.type != "user" or ctx.actor.user_id is None:
        raise PermissionDeniedError("only users have passwords", code="user.not_a_user")
    user = ctx.session.get(User, ctx.actor.user_id)
    if user is None or not verify_password(user.password_hash, current, ctx.runtime.hasher):
        audit_failure(
            ctx,
            "user.password_change_failed",
            account_id=None,
            target_type="user",
            target_id=ctx.actor.user_id,
        )
        raise AuthenticationError("invalid credentials", code="auth.invalid_credentials")
    check_password_strength(new)
    user.password_hash = hash_password(new, ctx.runtime.hasher)
    user.updated_at = ctx.now
    # Tokens carry whole-second issue times: those issued before this second stop working.
    user.tokens_valid_after = ctx.now.replace(microsecond=0)
    audit(ctx, "user.password_changed", account_id=None, target_type="user", target_id=user.id)
