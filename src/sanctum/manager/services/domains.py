"""Domains: the certificate names an app may carry, each approved through a task.

A name an app asks for is recorded ``pending`` and opens a ``domain_allowlist`` task; when the
task reaches its quorum the name becomes ``approved`` and attested workloads of the app may get
it in their certificates. A denied, cancelled or expired task makes it ``rejected``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, cast

from pydantic import BaseModel
from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.exc import IntegrityError

from sanctum.errors import ConflictError, NotFoundError, UsageError
from sanctum.manager.ca import parse_sans
from sanctum.manager.db import Prepared
from sanctum.manager.models import Task, TaskStatus
from sanctum.manager.models_attestation import App, Domain, DomainStatus
from sanctum.manager.services.audit import audit
from sanctum.manager.services.context import ServiceContext
from sanctum.manager.services.tasks import DOMAIN_ALLOWLIST, TaskType, create_task

__all__ = [
    "DOMAIN_ALLOWLIST_TYPE",
    "DomainAllowlist",
    "approved_domain_names",
    "approved_domains",
    "delete_domain",
    "list_domains",
    "normalise_domain",
    "request_domain",
]


class DomainAllowlist(BaseModel):
    """Payload of a ``domain_allowlist`` task."""

    domain_id: str
    app_id: str
    name: str


def normalise_domain(name: str) -> str:
    """Return the canonical form of a certificate name (lower case, no trailing dot).

    Raises:
        UsageError: Neither a DNS name nor an IP address (``domain.invalid``).
    """
    try:
        general = parse_sans([name.strip()])[0]
    except UsageError as error:
        raise UsageError(error.message, code="domain.invalid") from error
    return str(general.value)


def request_domain(ctx: ServiceContext, app: App, name: str) -> tuple[Domain, Task]:
    """Record ``name`` as pending for ``app`` and open its approval task.

    Raises:
        UsageError: Not a DNS name or IP address (``domain.invalid``).
        ConflictError: The app already has this name (``domain.duplicate``).
    """
    canonical = normalise_domain(name)
    domain = Domain(
        account_id=app.account_id,
        app_id=app.id,
        name=canonical,
        status=DomainStatus.pending,
        created_by=ctx.actor.user_id or ctx.actor.id,
        created_at=ctx.now,
    )
    try:
        with ctx.session.begin_nested():
            ctx.session.add(domain)
            ctx.session.flush()
    except IntegrityError as error:
        raise ConflictError(
            f"the app already has the domain {canonical!r}", code="domain.duplicate"
        ) from error
    task = create_task(
        ctx,
        app.account_id,
        DOMAIN_ALLOWLIST,
        DomainAllowlist(domain_id=domain.id, app_id=app.id, name=canonical),
        f"Allow app {app.name} the certificate name {canonical}",
    )
    domain.task_id = task.id
    audit(
        ctx,
        "domain.requested",
        account_id=app.account_id,
        target_type="domain",
        target_id=domain.id,
        details={"app_id": app.id, "name": canonical, "task_id": task.id},
    )
    return domain, task


def list_domains(
    ctx: ServiceContext, account_id: str, *, app_id: str | None = None
) -> Sequence[Domain]:
    """Return the account's domains (optionally of one app), by name."""
    statement = select(Domain).where(Domain.account_id == account_id)
    if app_id is not None:
        statement = statement.where(Domain.app_id == app_id)
    return ctx.session.scalars(statement.order_by(Domain.name, Domain.app_id)).all()


def approved_domains(ctx: ServiceContext, app_id: str) -> list[str]:
    """Return the app's approved certificate names, by name."""
    return list(
        ctx.session.scalars(
            select(Domain.name)
            .where(Domain.app_id == app_id, Domain.status == DomainStatus.approved)
            .order_by(Domain.created_at, Domain.name)
        ).all()
    )


_DOMAINS: Final = cast("Table", Domain.__table__)
_APPROVED: Final = Prepared(
    select(_DOMAINS.c.name)
    .where(
        _DOMAINS.c.app_id == bindparam("app_id"),
        _DOMAINS.c.status == DomainStatus.approved,
    )
    .order_by(_DOMAINS.c.created_at, _DOMAINS.c.name)
)


def approved_domain_names(connection: Connection, app_id: str) -> list[str]:
    """Return what :func:`approved_domains` returns, with one prepared Core statement.

    The attestation hot path reads the approved names on every request (never cached: an
    approval or a deletion on any replica must count at once).
    """
    return [name for (name,) in _APPROVED.rows(connection, {"app_id": app_id})]


def delete_domain(ctx: ServiceContext, account_id: str, domain_id: str) -> None:
    """Remove a domain from its app (new certificates no longer carry it).

    Raises:
        NotFoundError: No such domain (``domain.not_found``).
    """
    domain = ctx.session.scalars(
        select(Domain).where(Domain.account_id == account_id, Domain.id == domain_id)
    ).first()
    if domain is None:
        raise NotFoundError("no such domain", code="domain.not_found")
    ctx.session.delete(domain)
    audit(
        ctx,
        "domain.deleted",
        account_id=account_id,
        target_type="domain",
        target_id=domain_id,
        details={"name": domain.name, "app_id": domain.app_id},
    )


def _domain_of(ctx: ServiceContext, task: Task, payload: BaseModel) -> Domain:
    if not isinstance(payload, DomainAllowlist):  # pragma: no cover (the registry validates)
        raise UsageError("wrong payload", code="task.payload_invalid")
    domain = ctx.session.get(Domain, payload.domain_id)
    if domain is None or domain.account_id != task.account_id:
        raise NotFoundError("the domain of this task no longer exists", code="domain.not_found")
    return domain


def _approve(ctx: ServiceContext, task: Task, payload: BaseModel) -> None:
    domain = _domain_of(ctx, task, payload)
    if domain.status != DomainStatus.pending:
        raise ConflictError(f"the domain is {domain.status}", code="domain.not_pending")
    domain.status = DomainStatus.approved
    domain.decided_at = ctx.now
    audit(
        ctx,
        "domain.approved",
        account_id=domain.account_id,
        target_type="domain",
        target_id=domain.id,
        details={"app_id": domain.app_id, "name": domain.name, "task_id": task.id},
    )


def _closed(ctx: ServiceContext, task: Task, payload: BaseModel, status: TaskStatus) -> None:
    if not isinstance(payload, DomainAllowlist):  # pragma: no cover
        return
    domain = ctx.session.get(Domain, payload.domain_id)
    if domain is None or domain.status != DomainStatus.pending:
        return
    domain.status = DomainStatus.rejected
    domain.decided_at = ctx.now
    audit(
        ctx,
        "domain.rejected",
        account_id=domain.account_id,
        target_type="domain",
        target_id=domain.id,
        details={"name": domain.name, "task_id": task.id, "task_status": str(status)},
    )


DOMAIN_ALLOWLIST_TYPE = TaskType(
    name=DOMAIN_ALLOWLIST,
    payload_model=DomainAllowlist,
    on_approved=_approve,
    on_closed=_closed,
    description="Allow an app a certificate name (DNS name or IP address).",
)
