"""Domains (certificate names) of an account's apps: request (opens a task), list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from sanctum.manager.deps import ContextDep
from sanctum.manager.schemas import TaskPublic
from sanctum.manager.schemas_attestation import DomainCreate, DomainCreated, DomainPublic
from sanctum.manager.services import domains
from sanctum.manager.services.apps import get_app

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/domains", tags=["domains"])


@router.get("", response_model=list[DomainPublic])
def list_domains(
    account_id: str,
    ctx: ContextDep,
    app: Annotated[str | None, Query(max_length=200)] = None,
) -> list[DomainPublic]:
    """List the account's domains, optionally of one app."""
    app_id = get_app(ctx, account_id, app).id if app else None
    return [
        DomainPublic.model_validate(d) for d in domains.list_domains(ctx, account_id, app_id=app_id)
    ]


@router.post("", response_model=DomainCreated, status_code=status.HTTP_201_CREATED)
def request_domain(account_id: str, body: DomainCreate, ctx: ContextDep) -> DomainCreated:
    """Ask for a certificate name for an app; it is usable once its task is approved."""
    domain, task = domains.request_domain(ctx, get_app(ctx, account_id, body.app), body.name)
    return DomainCreated(
        domain=DomainPublic.model_validate(domain), task=TaskPublic.model_validate(task)
    )


@router.delete("/{domain_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_domain(account_id: str, domain_id: str, ctx: ContextDep) -> None:
    """Remove a domain from its app."""
    domains.delete_domain(ctx, account_id, domain_id)
