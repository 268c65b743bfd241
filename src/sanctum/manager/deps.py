"""Typed FastAPI dependencies: runtime, database session, the caller, and authorisation.

:func:`authorize` is installed as an app-wide dependency, so it runs for every API route and
enforces :data:`sanctum.manager.permissions.ROUTE_ACCESS`. Handlers receive the result through
:data:`PrincipalDep` / :data:`ContextDep` (FastAPI caches it per request, so it runs once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from sanctum.errors import AuthenticationError, PermissionDeniedError
from sanctum.manager.models import Role
from sanctum.manager.permissions import ROUTE_ACCESS, Access, required_role
from sanctum.manager.runtime import Runtime
from sanctum.manager.services.audit import Outcome, Severity, record_failures
from sanctum.manager.services.auth import effective_role, resolve_bearer
from sanctum.manager.services.context import Actor, ServiceContext

__all__ = [
    "ContextDep",
    "Principal",
    "PrincipalDep",
    "RuntimeDep",
    "SessionDep",
    "authorize",
    "client_address",
]


async def get_runtime(request: Request) -> Runtime:
    """Return the app's runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@contextmanager
def _request_transaction(runtime: Runtime, pending: list[dict[str, object]]) -> Iterator[Session]:
    try:
        with runtime.db.transaction() as session:
            yield session
    except Exception:
        if pending:
            with runtime.db.transaction() as session:
                record_failures(session, pending)
        raise


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[Session]:
    """Yield the request's session: one transaction, committed before the response is sent.

    If the request fails, its transaction rolls back and the failure audit entries the services
    queued (:func:`sanctum.manager.services.audit.audit_failure`) are written in a new one.

    Opening the session does no I/O (the transaction begins on its first statement), so it
    happens on the event loop; the commit or rollback runs in a worker thread, with its own
    capacity limiter (as FastAPI does for generator dependencies) so that it never waits
    behind requests queued for the writer lock that it is about to release. A request that
    used no connection, or whose handler committed already (:meth:`Database.commit`), ends on
    the event loop.
    """
    pending: list[dict[str, object]] = []
    request.state.failure_audits = pending
    manager = _request_transaction(runtime, pending)
    session = manager.__enter__()
    try:
        yield session
    except BaseException as error:
        with anyio.CancelScope(shield=True):
            suppressed = await anyio.to_thread.run_sync(
                manager.__exit__,
                type(error),
                error,
                error.__traceback__,
                limiter=anyio.CapacityLimiter(1),
            )
        if not suppressed:
            raise
    else:
        if not runtime.db.holds_connection(session):
            # Nothing to commit on a connection (the request used no database, or its handler
            # committed already): ending the session does no I/O.
            manager.__exit__(None, None, None)
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                manager.__exit__, None, None, None, limiter=anyio.CapacityLimiter(1)
            )


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authorised caller of a request.

    Attributes:
        actor: Who calls (anonymous on public routes).
        account_id: The account named by the route, if any.
        role: The caller's effective role in that account, if any.
    """

    actor: Actor
    account_id: str | None
    role: Role | None

    def require_role(self) -> Role:
        """Return the role of an account-scoped route.

        Raises:
            PermissionDeniedError: The route is not account-scoped (a matrix error).
        """
        if self.role is None:
            raise PermissionDeniedError("no role in this account", code="auth.forbidden")
        return self.role


def client_address(request: Request, runtime: Runtime) -> str | None:
    """Return the caller's address (``X-Forwarded-For`` only when configured to trust it).

    The rightmost ``X-Forwarded-For`` hop is used: it is the one the trusted proxy in front of
    the manager appended; entries to its left come from the client and can be forged.
    """
    if runtime.settings.trust_forwarded_for:
        hops = [
            hop.strip()
            for header in request.headers.getlist("x-forwarded-for")
            for hop in header.split(",")
        ]
        hops = [hop for hop in hops if hop]
        if hops:
            return hops[-1][:64]
    return request.client.host if request.client else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "use 'Authorization: Bearer <token>'", code="auth.scheme_unsupported"
        )
    return token.strip()


async def authorize(request: Request, runtime: RuntimeDep, session: SessionDep) -> Principal:
    """Enforce the permission matrix for this request's route; return the caller.

    Public and workload routes need no database work and are answered on the event loop; the
    credential and role checks of the other routes (database reads, on every request) run in
    a worker thread.

    Raises:
        PermissionDeniedError: The route is not in the matrix (``auth.route_unlisted``), or the
            caller's role is too low or absent in the account (``auth.forbidden``).
        AuthenticationError: Credentials are needed and missing or invalid.
    """
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else request.url.path
    access = ROUTE_ACCESS.get((request.method, path))
    if access is None:
        raise PermissionDeniedError(
            f"{request.method} {path} has no entry in the permission matrix",
            code="auth.route_unlisted",
        )
    if access in {Access.public, Access.workload}:
        return Principal(actor=Actor.anonymous(), account_id=None, role=None)
    return await run_in_threadpool(_authorize_caller, request, runtime, session, path, access)


def _authorize_caller(
    request: Request, runtime: Runtime, session: Session, path: str, access: Access
) -> Principal:
    token = _bearer(request)
    if token is None:
        raise AuthenticationError("sign in first", code="auth.unauthenticated")
    actor = resolve_bearer(session, runtime, token, runtime.clock.now())
    needed = required_role(access)
    if needed is None:
        return Principal(actor=actor, account_id=None, role=None)
    account_id = request.path_params.get("account_id")
    if not isinstance(account_id, str):
        raise PermissionDeniedError(
            f"{path} needs a role but names no account", code="auth.route_unlisted"
        )
    role = effective_role(session, actor, account_id)
    if role is None or role.rank < needed.rank:
        request.state.failure_audits.append(
            {
                "now": runtime.clock.now(),
                "action": "auth.access_denied",
                "account_id": None,
                "actor_type": actor.type,
                "actor_id": actor.id,
                "actor_name": actor.name,
                "target_type": "route",
                "target_id": f"{request.method} {path}",
                "outcome": Outcome.denied,
                "severity": Severity.warning,
                "request_id": getattr(request.state, "request_id", None),
                "source_address": client_address(request, runtime),
                "details": {"account_id": account_id, "needed": str(needed)},
            }
        )
        raise PermissionDeniedError(
            f"this needs the {needed} role in the account", code="auth.forbidden"
        )
    return Principal(actor=actor, account_id=account_id, role=role)


PrincipalDep = Annotated[Principal, Depends(authorize)]


async def get_context(
    request: Request, runtime: RuntimeDep, session: SessionDep, principal: PrincipalDep
) -> ServiceContext:
    """Return the service context of this request (no I/O: runs on the event loop)."""
    return ServiceContext(
        session=session,
        now=runtime.clock.now(),
        actor=principal.actor,
        runtime=runtime,
        request_id=getattr(request.state, "request_id", None),
        source_address=client_address(request, runtime),
        failure_audits=request.state.failure_audits,
    )


ContextDep = Annotated[ServiceContext, Depends(get_context)]
