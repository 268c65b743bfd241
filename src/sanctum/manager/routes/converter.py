"""Conversions through the manager, and the registry credentials they may use.

``POST .../apps/{app_id}/convert`` and the Data Shield-compatible
``POST .../tools/converter/convert-app`` (the app named by the body's ``app``; also at
``/v1/tools/converter/convert-app`` for an API key's account or ``?account=``) queue a conversion
job and answer 202 with it; ``GET .../jobs/{job_id}`` follows it. :func:`install_conversion`
includes these routers and attaches the job worker that the app's lifespan starts and stops.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Response, status

from sanctum.errors import PermissionDeniedError, UsageError
from sanctum.manager.deps import ContextDep
from sanctum.manager.models import Role
from sanctum.manager.routes import jobs as job_routes
from sanctum.manager.routes.jobs import job_public
from sanctum.manager.runtime import Runtime
from sanctum.manager.schemas_jobs import ConversionIn, JobPublic, RegistryCredentialPublic
from sanctum.manager.services import conversion
from sanctum.manager.services.auth import effective_role
from sanctum.manager.services.jobs import JobWorker

__all__ = ["install_conversion", "router"]

_A = "/v1/accounts/{account_id}"
router = APIRouter(tags=["converter"])


def _accepted(response: Response, account_id: str, job: JobPublic) -> JobPublic:
    response.headers["Location"] = f"{_A.format(account_id=account_id)}/jobs/{job.id}"
    return job


@router.post(
    f"{_A}/apps/{{app_id}}/convert",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
)
def convert_app(
    account_id: str, app_id: str, body: ConversionIn, ctx: ContextDep, response: Response
) -> JobPublic:
    """Convert an image for the app; the job registers the build and opens its task."""
    job = conversion.start_conversion(ctx, account_id, app_id, body)
    return _accepted(response, account_id, job_public(job))


@router.post(
    f"{_A}/tools/converter/convert-app",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
)
def convert_app_datashield(
    account_id: str, body: ConversionIn, ctx: ContextDep, response: Response
) -> JobPublic:
    """Data Shield's converter endpoint: the same job, the app named by ``app``.

    Raises:
        UsageError: ``app`` is missing (``conversion.app_missing``).
    """
    if not body.app:
        raise UsageError(
            "name the app to convert for in the body's 'app' field", code="conversion.app_missing"
        )
    job = conversion.start_conversion(ctx, account_id, body.app, body)
    return _accepted(response, account_id, job_public(job))


@router.post(
    "/v1/tools/converter/convert-app",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
)
def convert_app_unscoped(
    body: ConversionIn,
    ctx: ContextDep,
    response: Response,
    account: Annotated[str | None, Query(max_length=36)] = None,
) -> JobPublic:
    """Data Shield's path without an account: an API key's account, or ``?account=``.

    Raises:
        UsageError: No account is known (``conversion.account_missing``) or ``app`` is missing.
        PermissionDeniedError: The caller is not an editor of the account (``auth.forbidden``).
    """
    account_id = account or ctx.actor.account_id
    if not account_id:
        raise UsageError(
            "name the account with ?account= (API keys use their own account)",
            code="conversion.account_missing",
        )
    role = effective_role(ctx.session, ctx.actor, account_id)
    if role is None or role.rank < Role.editor.rank:
        raise PermissionDeniedError(
            "this needs the editor role in the account", code="auth.forbidden"
        )
    return convert_app_datashield(account_id, body, ctx, response)


@router.get(f"{_A}/registry-credentials", response_model=list[RegistryCredentialPublic])
def list_registry_credentials(account_id: str, ctx: ContextDep) -> list[RegistryCredentialPublic]:
    """List the registries with saved credentials (user names only)."""
    rows = conversion.list_registry_credentials(ctx, account_id)
    return [RegistryCredentialPublic.model_validate(row) for row in rows]


@router.delete(f"{_A}/registry-credentials/{{registry}}", status_code=status.HTTP_204_NO_CONTENT)
def delete_registry_credential(account_id: str, registry: str, ctx: ContextDep) -> None:
    """Forget the saved credentials of a registry."""
    conversion.delete_registry_credential(ctx, account_id, registry)


def install_conversion(app: FastAPI, *, responses: dict[int | str, dict[str, Any]] | None) -> None:
    """Include the conversion and job routes and attach the job worker (``app.state``)."""
    runtime: Runtime = app.state.runtime
    app.state.job_worker = JobWorker(runtime, {conversion.CONVERSION: conversion.run_conversion})
    app.include_router(router, responses=responses)
    app.include_router(job_routes.router, responses=responses)
