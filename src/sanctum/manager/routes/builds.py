"""Builds of an account: register (opens an allowlisting task), list, show, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from sanctum.manager.deps import ContextDep
from sanctum.manager.models_attestation import BuildStatus
from sanctum.manager.schemas import TaskPublic
from sanctum.manager.schemas_attestation import BuildCreate, BuildCreated, BuildPublic, BuildRevoked
from sanctum.manager.services import builds
from sanctum.manager.services.apps import get_app

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/builds", tags=["builds"])


@router.get("", response_model=list[BuildPublic])
def list_builds(
    account_id: str,
    ctx: ContextDep,
    app: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[BuildStatus | None, Query()] = None,
) -> list[BuildPublic]:
    """List builds, newest first, by app and status."""
    found_app = get_app(ctx, account_id, app) if app else None
    found = builds.list_builds(ctx, account_id, app=found_app, status=status)
    return [BuildPublic.model_validate(build) for build in found]


@router.post("", response_model=BuildCreated, status_code=status.HTTP_201_CREATED)
def create_build(account_id: str, body: BuildCreate, ctx: ContextDep) -> BuildCreated:
    """Register a build; it is allowlisted when its approval task reaches the quorum."""
    build, task = builds.create_build(ctx, account_id, body)
    return BuildCreated(
        build=BuildPublic.model_validate(build), task=TaskPublic.model_validate(task)
    )


@router.get("/{build_id}", response_model=BuildPublic)
def get_build(account_id: str, build_id: str, ctx: ContextDep) -> BuildPublic:
    """Show a build (by id or measurement)."""
    return BuildPublic.model_validate(builds.get_build(ctx, account_id, build_id))


@router.post("/{build_id}/revoke", response_model=BuildRevoked)
def revoke_build(account_id: str, build_id: str, ctx: ContextDep) -> BuildRevoked:
    """Revoke an allowlisted build and every certificate issued to it (administrators)."""
    build, count = builds.revoke_build(ctx, account_id, build_id)
    return BuildRevoked(build=BuildPublic.model_validate(build), certificates_revoked=count)
