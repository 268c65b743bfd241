"""Approval tasks of an account: list, show, approve, deny, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sanctum.manager.deps import ContextDep, PrincipalDep
from sanctum.manager.models import Role, TaskStatus
from sanctum.manager.schemas import TaskDetail, TaskPublic, TaskVoteIn, VoterPublic
from sanctum.manager.services import tasks

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/tasks", tags=["tasks"])


@router.get("", response_model=list[TaskPublic])
def list_tasks(
    account_id: str,
    ctx: ContextDep,
    status: Annotated[TaskStatus | None, Query()] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,  # noqa: A002 (the API's word)
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[TaskPublic]:
    """List tasks, newest first, by status and type."""
    found = tasks.list_tasks(ctx, account_id, status=status, type_name=type, limit=limit)
    return [TaskPublic.model_validate(task) for task in found]


@router.get("/{task_id}", response_model=TaskDetail)
def get_task(account_id: str, task_id: str, ctx: ContextDep) -> TaskDetail:
    """Show a task with its votes and the users eligible to vote on it."""
    task = tasks.get_task(ctx, account_id, task_id)
    decisions = {vote.voter_id: vote.decision for vote in task.votes}
    voters = [
        VoterPublic(
            id=user.id,
            email=user.email,
            name=user.name,
            role=role,
            decision=decisions.get(user.id),
            is_requester=user.id == task.requested_by,
        )
        for user, role in tasks.eligible_voters(ctx.session, account_id)
    ]
    public = TaskPublic.model_validate(task)
    return TaskDetail(**public.model_dump(), voters=voters)


@router.post("/{task_id}/approve", response_model=TaskPublic)
def approve_task(
    account_id: str, task_id: str, ctx: ContextDep, body: TaskVoteIn | None = None
) -> TaskPublic:
    """Approve a task; it takes effect when the quorum is reached."""
    comment = body.comment if body else None
    task = tasks.vote(ctx, account_id, task_id, tasks.Vote.approve, comment)
    return TaskPublic.model_validate(task)


@router.post("/{task_id}/deny", response_model=TaskPublic)
def deny_task(
    account_id: str, task_id: str, ctx: ContextDep, body: TaskVoteIn | None = None
) -> TaskPublic:
    """Deny a task; one denial closes it."""
    comment = body.comment if body else None
    task = tasks.vote(ctx, account_id, task_id, tasks.Vote.deny, comment)
    return TaskPublic.model_validate(task)


@router.post("/{task_id}/cancel", response_model=TaskPublic)
def cancel_task(
    account_id: str, task_id: str, ctx: ContextDep, principal: PrincipalDep
) -> TaskPublic:
    """Cancel a pending task (its requester or an administrator)."""
    task = tasks.cancel_task(
        ctx, account_id, task_id, is_admin=principal.require_role() == Role.administrator
    )
    return TaskPublic.model_validate(task)
