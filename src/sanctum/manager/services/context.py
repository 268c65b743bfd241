"""What every service call needs: the session, the time, who acts, and where from.

A hot path may run its unit of work on a Core connection instead (:attr:`ServiceContext.connection`,
ADR 0120): its statements and audit entries go straight to that connection, and the session,
bound to the same connection, serves only the rare branches that need ORM objects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from sanctum.manager.models import Role

if TYPE_CHECKING:
    from sanctum.manager.runtime import Runtime

__all__ = ["Actor", "ActorType", "ServiceContext"]

ActorType = Literal["user", "apikey", "workload", "system", "anonymous"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action.

    Attributes:
        type: The kind of actor.
        id: The user, API key or workload id (``None`` for system and anonymous).
        name: A readable name (email, key name) for the audit log.
        user_id: The user behind the action: the user itself, or the owner of an API key.
        account_id: For an API key, the only account it may act in.
        key_role: For an API key, the most it may do (capped by its owner's current role).
    """

    type: ActorType
    id: str | None = None
    name: str | None = None
    user_id: str | None = None
    account_id: str | None = None
    key_role: Role | None = None

    @classmethod
    def system(cls) -> Actor:
        """Return the manager itself as the actor."""
        return cls(type="system", name="sanctum-manager")

    @classmethod
    def anonymous(cls) -> Actor:
        """Return an unauthenticated caller."""
        return cls(type="anonymous")


@dataclass(slots=True)
class ServiceContext:
    """The inputs of one unit of work (one request, one CLI action, one background job).

    Attributes:
        session: The unit of work's session (bound to ``connection`` when that is set).
        now: The time of the unit of work.
        actor: Who acts.
        runtime: The manager's runtime.
        request_id: The request id, if a request.
        source_address: The caller's address, if known.
        extras: Values services hand to each other (for example the resolved app).
        failure_audits: Audit entries to write even if the unit of work fails.
        connection: The Core connection of a hot-path unit of work (ADR 0120): its transaction
            is the unit's; audit entries are appended on it and their log lines queued in
            ``audit_lines`` for whoever commits it.
        audit_lines: The public form of audit entries appended on ``connection``, to log once
            the transaction committed.
    """

    session: Session
    now: dt.datetime
    actor: Actor
    runtime: Runtime
    request_id: str | None = None
    source_address: str | None = None
    extras: dict[str, object] = field(default_factory=dict)
    #: Audit entries to write even if the unit of work fails (its transaction rolls back).
    failure_audits: list[dict[str, object]] = field(default_factory=list)
    connection: Connection | None = None
    audit_lines: list[dict[str, Any]] = field(default_factory=list)
