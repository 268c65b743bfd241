"""Approval tasks (M-of-N governance) and the registry of task types.

A sensitive action creates a :class:`~sanctum.manager.models.Task` instead of taking effect. It
takes effect when ``quorum`` distinct eligible users (editors and administrators of the account)
approve; one denial closes it; it expires after the configured time. The quorum and the
self-approval rule are copied onto the task when it is created, so changing them later does not
change open tasks.

Task types are data in a :class:`TaskRegistry`: each names a payload model and handlers run in
the voting transaction when the task is approved (or closed otherwise). The manager core
registers ``role_raise_to_admin`` and ``quorum_change``; the attestation layer registers
``build_allowlist``, ``domain_allowlist`` and ``app_policy_change`` the same way.

Concurrency: a vote locks the task row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serialises writers) and a unique ``(task, voter)`` constraint backs the "one vote each" rule,
so double votes, votes on closed tasks and simultaneous final votes resolve to one outcome.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from sanctum.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SanctumError,
    UsageError,
)
from sanctum.manager.models import (
    Account,
    ApiKey,
    Membership,
    Role,
    Task,
    TaskStatus,
    TaskVote,
    User,
    UserStatus,
)
from sanctum.manager.services.audit import Outcome, Severity, audit
from sanctum.manager.services.context import ServiceContext

__all__ = [
    "APP_POLICY_CHANGE",
    "BUILD_ALLOWLIST",
    "DOMAIN_ALLOWLIST",
    "QUORUM_CHANGE",
    "ROLE_RAISE_TO_ADMIN",
    "TaskRegistry",
    "TaskType",
    "Vote",
    "cancel_task",
    "create_task",
    "eligible_voter_count",
    "eligible_voters",
    "expire_due_tasks",
    "get_task",
    "list_tasks",
    "vote",
]

APP_POLICY_CHANGE: Final = "app_policy_change"
BUILD_ALLOWLIST: Final = "build_allowlist"
DOMAIN_ALLOWLIST: Final = "domain_allowlist"
ROLE_RAISE_TO_ADMIN: Final = "role_raise_to_admin"
QUORUM_CHANGE: Final = "quorum_change"


class Vote(enum.StrEnum):
    """A voter's decision."""

    approve = "approve"
    deny = "deny"


ApprovedHandler = Callable[[ServiceContext, Task, BaseModel], None]
ClosedHandler = Callable[[ServiceContext, Task, BaseModel, TaskStatus], None]


@dataclass(frozen=True, slots=True)
class TaskType:
    """One kind of task: its payload shape and what happens when it closes.

    Attributes:
        name: The type name stored on tasks (``build_allowlist``...).
        payload_model: The pydantic model of the payload (validated at creation and on use).
        on_approved: Runs in the voting transaction when the quorum is reached; raising a
            :class:`~sanctum.errors.SanctumError` marks the task ``failed`` and undoes its effects.
        on_closed: Optional; runs when the task is denied, cancelled or expires.
        description: One line for humans.
    """

    name: str
    payload_model: type[BaseModel]
    on_approved: ApprovedHandler
    on_closed: ClosedHandler | None = None
    description: str = ""


class TaskRegistry:
    """The task types the manager knows; extended by other parts at app creation."""

    def __init__(self) -> None:
        """Start empty."""
        self._types: dict[str, TaskType] = {}

    def register(self, task_type: TaskType) -> None:
        """Add ``task_type``.

        Raises:
            ValueError: A type of that name is already registered (a programming error).
        """
        if task_type.name in self._types:
            msg = f"task type {task_type.name!r} is already registered"
            raise ValueError(msg)
        self._types[task_type.name] = task_type

    def get(self, name: str) -> TaskType:
        """Return the type called ``name``.

        Raises:
            UsageError: Unknown type (``task.type_unknown``).
        """
        found = self._types.get(name)
        if found is None:
            raise UsageError(f"unknown task type {name!r}", code="task.type_unknown")
        return found

    def names(self) -> list[str]:
        """Return the registered type names, sorted."""
        return sorted(self._types)


def eligible_voter_count(session: Session, account_id: str) -> int:
    """Return how many active users may vote in the account (editors and administrators)."""
    count = session.scalar(
        select(func.count())
        .select_from(Membership)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.account_id == account_id,
            Membership.role.in_([Role.editor, Role.administrator]),
            User.status == UserStatus.active,
        )
    )
    return int(count or 0)


def eligible_voters(session: Session, account_id: str) -> Sequence[tuple[User, Role]]:
    """Return the users who may vote in the account (active editors and administrators)."""
    rows = session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.account_id == account_id,
            Membership.role.in_([Role.editor, Role.administrator]),
            User.status == UserStatus.active,
        )
        .order_by(User.email)
    ).all()
    return [(user, role) for user, role in rows]


def _responsible_user(ctx: ServiceContext) -> str | None:
    """Return the user answerable for the actor's requests.

    That is the user itself, the owner of a user's API key, or, for a service-account key
    (which has no owner), the user who created the key: a key must not let its creator approve
    a task the key requested (``task.self_approval``).
    """
    if ctx.actor.user_id is not None:
        return ctx.actor.user_id
    if ctx.actor.type == "apikey" and ctx.actor.id is not None:
        key = ctx.session.get(ApiKey, ctx.actor.id)
        if key is not None:
            return key.created_by
    return None


def create_task(
    ctx: ServiceContext, account_id: str, type_name: str, payload: BaseModel, summary: str
) -> Task:
    """Open a task of ``type_name`` for ``payload`` in the account.

    Raises:
        UsageError: Unknown type or a payload of the wrong shape.
        NotFoundError: No such account.
    """
    task_type = ctx.runtime.tasks.get(type_name)
    if not isinstance(payload, task_type.payload_model):
        raise UsageError(f"wrong payload for a {type_name} task", code="task.payload_invalid")
    account = ctx.session.get(Account, account_id)
    if account is None:
        raise NotFoundError("no such account", code="account.not_found")
    requester = _responsible_user(ctx) or ctx.actor.id or "system"
    task = Task(
        account_id=account_id,
        type=type_name,
        status=TaskStatus.pending,
        payload=payload.model_dump(mode="json"),
        summary=summary[:500],
        requested_by=requester,
        requested_by_type=ctx.actor.type,
        quorum=account.quorum,
        allow_self_approval=account.allow_self_approval,
        created_at=ctx.now,
        expires_at=ctx.now + dt.timedelta(seconds=ctx.runtime.settings.task_expiry_seconds),
    )
    ctx.session.add(task)
    ctx.session.flush()
    audit(
        ctx,
        "task.created",
        account_id=account_id,
        target_type="task",
        target_id=task.id,
        details={
            "type": type_name,
            "summary": task.summary,
            "quorum": task.quorum,
            "requested_by": requester,
            **({"via_apikey": ctx.actor.id} if ctx.actor.type == "apikey" else {}),
        },
    )
    return task


def _payload(ctx: ServiceContext, task: Task) -> tuple[TaskType, BaseModel]:
    task_type = ctx.runtime.tasks.get(task.type)
    try:
        return task_type, task_type.payload_model.model_validate(task.payload)
    except ValidationError as error:
        raise UsageError(
            "the task's payload no longer validates", code="task.payload_invalid"
        ) from error


def _close(ctx: ServiceContext, task: Task, status: TaskStatus, code: str | None = None) -> None:
    task.status = status
    task.closed_at = ctx.now
    task.result_code = code
    task_type, payload = _payload(ctx, task)
    if status != TaskStatus.approved and task_type.on_closed is not None:
        task_type.on_closed(ctx, task, payload, status)


def expire_due_tasks(ctx: ServiceContext, account_id: str) -> int:
    """Mark pending tasks past their expiry as ``expired``; return how many."""
    due = ctx.session.scalars(
        select(Task)
        .where(
            Task.account_id == account_id,
            Task.status == TaskStatus.pending,
            Task.expires_at <= ctx.now,
        )
        .with_for_update()
    ).all()
    for task in due:
        _close(ctx, task, TaskStatus.expired, "task.expired")
        audit(
            ctx,
            "task.expired",
            account_id=account_id,
            target_type="task",
            target_id=task.id,
            details={"type": task.type},
        )
    return len(due)


def list_tasks(
    ctx: ServiceContext,
    account_id: str,
    *,
    status: TaskStatus | None = None,
    type_name: str | None = None,
    limit: int = 100,
) -> Sequence[Task]:
    """Return the account's tasks, newest first, optionally filtered."""
    expire_due_tasks(ctx, account_id)
    statement = select(Task).where(Task.account_id == account_id).options(selectinload(Task.votes))
    if status is not None:
        statement = statement.where(Task.status == status)
    if type_name is not None:
        statement = statement.where(Task.type == type_name)
    return ctx.session.scalars(
        statement.order_by(Task.created_at.desc(), Task.id).limit(limit)
    ).all()


def get_task(ctx: ServiceContext, account_id: str, task_id: str, *, lock: bool = False) -> Task:
    """Return one task of the account (expiring it first if it is due).

    Raises:
        NotFoundError: No such task in this account (``task.not_found``).
    """
    statement = select(Task).where(Task.id == task_id, Task.account_id == account_id)
    if lock:
        statement = statement.with_for_update()
    task = ctx.session.scalars(statement).first()
    if task is None:
        raise NotFoundError("no such task", code="task.not_found")
    if task.status == TaskStatus.pending and task.expires_at <= ctx.now:
        _close(ctx, task, TaskStatus.expired, "task.expired")
        audit(ctx, "task.expired", account_id=account_id, target_type="task", target_id=task.id)
    return task


def _require_open(task: Task) -> None:
    if task.status != TaskStatus.pending:
        raise ConflictError(
            f"the task is {task.status}; it takes no more votes", code="task.closed"
        )


def vote(
    ctx: ServiceContext, account_id: str, task_id: str, decision: Vote, comment: str | None
) -> Task:
    """Record the actor's vote and close the task if it is decided.

    Raises:
        NotFoundError: No such task.
        ConflictError: The task is closed (``task.closed``) or the voter already voted
            (``task.already_voted``).
        PermissionDeniedError: The voter is not a user (``task.voter_not_user``), not eligible
            (``task.voter_not_eligible``), or the requester approving their own task
            (``task.self_approval``).
    """
    task = get_task(ctx, account_id, task_id, lock=True)
    _require_open(task)
    voter = ctx.actor.user_id
    if ctx.actor.type != "user" or voter is None:
        raise PermissionDeniedError(
            "only users vote on tasks (API keys cannot)", code="task.voter_not_user"
        )
    membership = ctx.session.get(Membership, (voter, account_id))
    if membership is None or membership.role.rank < Role.editor.rank:
        raise PermissionDeniedError(
            "only editors and administrators vote", code="task.voter_not_eligible"
        )
    if decision == Vote.approve and voter == task.requested_by and not task.allow_self_approval:
        raise PermissionDeniedError(
            "the requester cannot approve their own task in this account",
            code="task.self_approval",
        )
    if any(v.voter_id == voter for v in task.votes):
        raise ConflictError("you already voted on this task", code="task.already_voted")
    task.votes.append(
        TaskVote(voter_id=voter, decision=str(decision), comment=comment, created_at=ctx.now)
    )
    try:
        ctx.session.flush()
    except IntegrityError as error:
        raise ConflictError("you already voted on this task", code="task.already_voted") from error
    audit(
        ctx,
        "task.voted",
        account_id=account_id,
        target_type="task",
        target_id=task.id,
        details={"decision": str(decision), "type": task.type},
    )
    if decision == Vote.deny:
        _close(ctx, task, TaskStatus.denied, "task.denied")
        audit(
            ctx,
            "task.denied",
            account_id=account_id,
            target_type="task",
            target_id=task.id,
            outcome=Outcome.denied,
            details={"type": task.type},
        )
        return task
    approvals = sum(1 for v in task.votes if v.decision == Vote.approve)
    if approvals >= task.quorum:
        _apply(ctx, task)
    return task


def _apply(ctx: ServiceContext, task: Task) -> None:
    task_type, payload = _payload(ctx, task)
    savepoint = ctx.session.begin_nested()
    try:
        task_type.on_approved(ctx, task, payload)
        ctx.session.flush()
    except SanctumError as error:
        savepoint.rollback()
        task.status = TaskStatus.failed
        task.closed_at = ctx.now
        task.result_code = error.code
        audit(
            ctx,
            "task.failed",
            account_id=task.account_id,
            target_type="task",
            target_id=task.id,
            outcome=Outcome.failure,
            severity=Severity.warning,
            details={"type": task.type, "code": error.code, "message": error.message},
        )
        return
    savepoint.commit()
    task.status = TaskStatus.approved
    task.closed_at = ctx.now
    task.result_code = None
    audit(
        ctx,
        "task.approved",
        account_id=task.account_id,
        target_type="task",
        target_id=task.id,
        details={"type": task.type},
    )


def cancel_task(ctx: ServiceContext, account_id: str, task_id: str, *, is_admin: bool) -> Task:
    """Cancel a pending task (its requester or an administrator).

    Raises:
        NotFoundError: No such task.
        ConflictError: Already closed (``task.closed``).
        PermissionDeniedError: Neither the requester nor an administrator (``task.not_yours``).
    """
    task = get_task(ctx, account_id, task_id, lock=True)
    _require_open(task)
    actor = _responsible_user(ctx) or ctx.actor.id
    if not is_admin and actor != task.requested_by:
        raise PermissionDeniedError(
            "only the requester or an administrator may cancel a task", code="task.not_yours"
        )
    _close(ctx, task, TaskStatus.cancelled, "task.cancelled")
    audit(
        ctx,
        "task.cancelled",
        account_id=account_id,
        target_type="task",
        target_id=task.id,
        details={"type": task.type},
    )
    return task
