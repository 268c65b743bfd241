"""Apps of an account: create, list, show, update, delete; secrets (write-only); instances."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import select

from sanctum.manager.deps import ContextDep
from sanctum.manager.models import Task
from sanctum.manager.models_attestation import Domain, WorkloadInstance
from sanctum.manager.schemas_attestation import (
    AppCreate,
    AppPublic,
    AppSecretIn,
    AppSecretPublic,
    AppUpdate,
    WorkloadInstancePublic,
)
from sanctum.manager.services import apps

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/apps", tags=["apps"])


@router.get("", response_model=list[AppPublic])
def list_apps(account_id: str, ctx: ContextDep) -> list[AppPublic]:
    """List the account's apps (secrets by name only)."""
    return [apps.app_public(ctx, app) for app in apps.list_apps(ctx, account_id)]


@router.post("", response_model=AppPublic, status_code=status.HTTP_201_CREATED)
def create_app(account_id: str, body: AppCreate, ctx: ContextDep) -> AppPublic:
    """Create an app; each domain it asks for opens an approval task."""
    app = apps.create_app(ctx, account_id, body)
    task_ids = ctx.session.scalars(select(Domain.task_id).where(Domain.app_id == app.id)).all()
    tasks = ctx.session.scalars(select(Task).where(Task.id.in_([t for t in task_ids if t]))).all()
    return apps.app_public(ctx, app, tasks=tasks)


@router.get("/{app_id}", response_model=AppPublic)
def get_app(account_id: str, app_id: str, ctx: ContextDep) -> AppPublic:
    """Show an app (by id or name)."""
    return apps.app_public(ctx, apps.get_app(ctx, account_id, app_id))


@router.patch("/{app_id}", response_model=AppPublic)
def update_app(account_id: str, app_id: str, body: AppUpdate, ctx: ContextDep) -> AppPublic:
    """Change an app's settings or policy; loosening the policy opens an approval task."""
    app, task = apps.update_app_request(ctx, account_id, app_id, body)
    return apps.app_public(ctx, app, tasks=[] if task is None else [task])


@router.delete("/{app_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_app(account_id: str, app_id: str, ctx: ContextDep) -> None:
    """Delete an app with its secrets, domains and builds."""
    apps.delete_app(ctx, account_id, app_id)


@router.put("/{app_id}/secrets/{name}", response_model=AppSecretPublic)
def set_secret(
    account_id: str, app_id: str, name: str, body: AppSecretIn, ctx: ContextDep
) -> AppSecretPublic:
    """Create or replace a secret; its value is never returned."""
    app = apps.get_app(ctx, account_id, app_id)
    return AppSecretPublic.model_validate(apps.set_secret(ctx, app, name, body))


@router.delete("/{app_id}/secrets/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_secret(account_id: str, app_id: str, name: str, ctx: ContextDep) -> None:
    """Delete a secret."""
    apps.delete_secret(ctx, apps.get_app(ctx, account_id, app_id), name)


@router.get("/{app_id}/instances", response_model=list[WorkloadInstancePublic])
def list_instances(account_id: str, app_id: str, ctx: ContextDep) -> list[WorkloadInstancePublic]:
    """List the app's workload instances and when each last attested."""
    app = apps.get_app(ctx, account_id, app_id)
    rows = ctx.session.scalars(
        select(WorkloadInstance)
        .where(WorkloadInstance.app_id == app.id)
        .order_by(WorkloadInstance.last_seen_at.desc())
    ).all()
    return [WorkloadInstancePublic.model_validate(row) for row in rows]
