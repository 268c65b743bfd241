"""Request and response models of the REST API (``Base`` / ``Create`` / ``Public`` split).

Response models (``*Public``) list exactly what may leave the manager: never a password hash, a
key hash or a sealed secret. Secrets that must be shown once (a new API key, an invitation
token) appear only in the dedicated ``*Created`` models returned by the creating call.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sanctum.manager.models import Role, TaskStatus, UserStatus

__all__ = [
    "AccountCreate",
    "AccountPublic",
    "AccountUpdate",
    "AccountUpdated",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyCredentials",
    "ApiKeyPublic",
    "AuditEntryPublic",
    "AuditPage",
    "ChainReportPublic",
    "Health",
    "InvitationAccept",
    "MemberInvite",
    "MemberInvited",
    "MemberPublic",
    "MemberUpdate",
    "MemberUpdated",
    "PasswordChange",
    "PasswordCredentials",
    "Problem",
    "TaskDetail",
    "TaskPublic",
    "TaskVoteIn",
    "TaskVotePublic",
    "TokenRequest",
    "TokenResponse",
    "VoterPublic",
    "WhoAmI",
    "problem_responses",
]

_STRICT = ConfigDict(extra="forbid")
_ORM = ConfigDict(from_attributes=True)

Name = Field(min_length=1, max_length=200)


class Problem(BaseModel):
    """An RFC 9457 problem document (every error response)."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable dotted error code, e.g. task.closed.")
    instance: str | None = None
    request_id: str | None = None
    hint: str | None = None
    details: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return OpenAPI ``responses`` entries documenting problem documents for ``statuses``."""
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        status: {"model": Problem, "content": content, "description": "Problem document"}
        for status in statuses
    }


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok"]
    revision: str | None = None


class ApiKeyCredentials(BaseModel):
    """An API key to exchange for a bearer token."""

    model_config = _STRICT

    api_key: str = Field(min_length=1, max_length=200)


class PasswordCredentials(BaseModel):
    """An email and password to exchange for a bearer token."""

    model_config = _STRICT

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


TokenRequest = ApiKeyCredentials | PasswordCredentials


class TokenResponse(BaseModel):
    """A bearer token (RFC 6750)."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the RFC 6750 scheme name)
    expires_at: dt.datetime
    expires_in: int


class WhoAmI(BaseModel):
    """The caller."""

    actor_type: str
    id: str | None
    name: str | None
    user_id: str | None
    account_id: str | None


class PasswordChange(BaseModel):
    """Change one's own password."""

    model_config = _STRICT

    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class InvitationAccept(BaseModel):
    """Accept an invitation by choosing a password."""

    model_config = _STRICT

    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=12, max_length=1024)
    name: str | None = Field(None, min_length=1, max_length=200)


class AccountBase(BaseModel):
    """Fields shared by account models."""

    name: str = Field(min_length=1, max_length=200)


class AccountCreate(AccountBase):
    """A new account; its creator becomes its administrator."""

    model_config = _STRICT

    allow_self_approval: bool = False


class AccountUpdate(BaseModel):
    """Account changes; quorum and self-approval changes become an approval task."""

    model_config = _STRICT

    name: str | None = Field(None, min_length=1, max_length=200)
    quorum: int | None = Field(None, ge=1, le=100)
    allow_self_approval: bool | None = None


class AccountPublic(AccountBase):
    """An account as the API shows it."""

    model_config = _ORM

    id: str
    quorum: int
    allow_self_approval: bool
    created_at: dt.datetime
    role: Role | None = None


class TaskVotePublic(BaseModel):
    """One vote."""

    model_config = _ORM

    voter_id: str
    decision: str
    comment: str | None
    created_at: dt.datetime


class TaskPublic(BaseModel):
    """An approval task with its votes."""

    model_config = _ORM

    id: str
    account_id: str
    type: str
    status: TaskStatus
    summary: str
    payload: dict[str, Any]
    requested_by: str
    requested_by_type: str
    quorum: int
    allow_self_approval: bool
    created_at: dt.datetime
    expires_at: dt.datetime
    closed_at: dt.datetime | None
    result_code: str | None
    votes: list[TaskVotePublic]


class VoterPublic(BaseModel):
    """A user who may vote on a task, and their vote so far."""

    id: str
    email: str
    name: str
    role: Role
    decision: str | None
    is_requester: bool


class TaskDetail(TaskPublic):
    """A task with its votes and every eligible voter."""

    voters: list[VoterPublic]


class AccountUpdated(BaseModel):
    """The account after the call, and the approval task opened, if any."""

    account: AccountPublic
    task: TaskPublic | None


class TaskVoteIn(BaseModel):
    """An optional comment with a vote."""

    model_config = _STRICT

    comment: str | None = Field(None, max_length=1000)


class MemberBase(BaseModel):
    """Fields shared by member models."""

    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field(min_length=1, max_length=200)


class MemberInvite(MemberBase):
    """Invite someone (or add an existing user) to the account."""

    model_config = _STRICT

    role: Role = Role.viewer


class MemberPublic(MemberBase):
    """A member of the account."""

    id: str
    status: UserStatus
    role: Role
    created_at: dt.datetime


class MemberInvited(BaseModel):
    """The new member; the invitation token (shown once) when the user is new."""

    member: MemberPublic
    invitation_token: str | None
    invitation_expires_at: dt.datetime | None


class MemberUpdate(BaseModel):
    """Changes to a member; raising to administrator becomes an approval task."""

    model_config = _STRICT

    name: str | None = Field(None, min_length=1, max_length=200)
    role: Role | None = None
    status: Literal["active", "disabled"] | None = None


class MemberUpdated(BaseModel):
    """The member after the call, and the approval task opened, if any."""

    member: MemberPublic
    task: TaskPublic | None


class ApiKeyCreate(BaseModel):
    """A new API key."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.viewer
    expires_at: dt.datetime | None = None
    service_account: bool = False


class ApiKeyPublic(BaseModel):
    """An API key as listed: never its secret."""

    model_config = _ORM

    id: str
    account_id: str
    user_id: str | None
    name: str
    prefix: str
    role: Role
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class ApiKeyCreated(BaseModel):
    """A new key and its secret: the only time the secret is shown."""

    key: ApiKeyPublic
    secret: str


class AuditEntryPublic(BaseModel):
    """One audit entry."""

    model_config = _ORM

    id: int
    chain: str
    seq: int
    time: dt.datetime
    account_id: str | None
    actor_type: str
    actor_id: str | None
    actor_name: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    severity: str
    request_id: str | None
    source_address: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditPage(BaseModel):
    """A page of audit entries, newest first."""

    entries: list[AuditEntryPublic]
    next_cursor: str | None


class ChainProblemPublic(BaseModel):
    """The first problem found in a chain."""

    code: str
    message: str
    seq: int | None
    entry_id: int | None


class ChainReportPublic(BaseModel):
    """The result of verifying an account's audit chain."""

    chain: str
    intact: bool
    entries_checked: int
    checkpoints_checked: int
    head_seq: int
    problem: ChainProblemPublic | None
