"""Encrypted directories of an app: key policy, key metadata, and the audited key export.

Directory keys are released to workloads only in attestation responses; these routes let an
administrator choose the key policy, fetch a key for offline ``sanctum files`` use, rotate a
key and (forcibly) retire old versions. The ``{name}`` of a directory is its path without the
leading slash, further slashes written as ``:`` (``/var/lib/db`` is ``var:lib:db``), since a
URL path segment cannot hold ``/``.

``POST /v1/workloads/encrypted-dirs/report`` is the workloads' route (no user credentials):
a report signed by the attested key, carrying the certificate the manager issued for it
(ADR 0116). It spends a token of the source address's attestation rate limit.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from sanctum.errors import SanctumError
from sanctum.manager.deps import ContextDep, PrincipalDep, RuntimeDep, SessionDep, client_address
from sanctum.manager.models_encfs import KeyPolicy
from sanctum.manager.routes.attest import refusal_response, workload_context
from sanctum.manager.services import encrypted_dirs
from sanctum.manager.services.apps import get_app
from sanctum.manager.services.attestation import workload_actor
from sanctum.manager.services.builds import get_build
from sanctum.protocol.dir_reports import DirReportAnswer, SignedDirReport
from sanctum.protocol.messages import B64Bytes

__all__ = ["router"]

_log = logging.getLogger(__name__)
_APPS = "/v1/accounts/{account_id}/apps"

router = APIRouter(tags=["encrypted directories"])


class DirKeyInfoPublic(BaseModel):
    """One stored key version (never the key)."""

    path: str
    scope: str
    version: int
    created_at: str
    min_epoch: int = 0
    retired_at: str | None = None


class EncryptedDirsPublic(BaseModel):
    """An app's encrypted directories, key policy and stored key versions."""

    directories: list[str]
    key_policy: Literal["same_build", "app_builds"]
    keys: list[DirKeyInfoPublic]


class KeyPolicyIn(BaseModel):
    """Body of the policy change."""

    model_config = ConfigDict(extra="forbid")

    key_policy: Literal["same_build", "app_builds"]


class DirKeyExport(BaseModel):
    """A directory key for offline use (``sanctum files ... --key-file``)."""

    path: str
    scope: str
    version: int
    key: B64Bytes
    created: bool


def _public(ctx: ContextDep, account_id: str, app_id: str) -> EncryptedDirsPublic:
    app = get_app(ctx, account_id, app_id)
    return EncryptedDirsPublic(
        directories=list(app.encrypted_dirs),
        key_policy=encrypted_dirs.get_policy(ctx, app).value,
        keys=[
            DirKeyInfoPublic(
                path=info.path,
                scope=info.scope,
                version=info.version,
                created_at=info.created_at,
                min_epoch=info.min_epoch,
                retired_at=info.retired_at,
            )
            for info in encrypted_dirs.list_dir_keys(ctx, app)
        ],
    )


@router.get(_APPS + "/{app_id}/encrypted-dirs", response_model=EncryptedDirsPublic)
def list_encrypted_dirs(account_id: str, app_id: str, ctx: ContextDep) -> EncryptedDirsPublic:
    """Show the app's encrypted directories, key policy and key versions (no keys)."""
    return _public(ctx, account_id, app_id)


@router.put(_APPS + "/{app_id}/encrypted-dirs/policy", response_model=EncryptedDirsPublic)
def set_key_policy(
    account_id: str, app_id: str, body: KeyPolicyIn, ctx: ContextDep
) -> EncryptedDirsPublic:
    """Set the key policy: ``same_build`` (a key per build) or ``app_builds`` (shared)."""
    app = get_app(ctx, account_id, app_id)
    encrypted_dirs.set_policy(ctx, app, KeyPolicy(body.key_policy))
    return _public(ctx, account_id, app_id)


@router.get(_APPS + "/{app_id}/encrypted-dirs/{name}/key", response_model=DirKeyExport)
def export_key(  # noqa: PLR0917 (FastAPI passes path and query parameters by name)
    account_id: str,
    app_id: str,
    name: str,
    ctx: ContextDep,
    response: Response,
    build: str | None = None,
) -> DirKeyExport:
    """Return a directory key for offline use (administrators only; audited).

    Under the ``same_build`` policy, ``build`` (id or measurement) names whose key; a missing
    key is created so that input data can be encrypted before the first start.
    """
    app = get_app(ctx, account_id, app_id)
    build_row = None if build is None else get_build(ctx, account_id, build)
    exported = encrypted_dirs.export_dir_key(ctx, app, name, build_row)
    response.headers["Cache-Control"] = "no-store"
    return DirKeyExport(
        path=exported.path,
        scope=exported.scope,
        version=exported.version,
        key=exported.key,
        created=exported.created,
    )


class RetireIn(BaseModel):
    """Body of the forced retirement of a directory's older key versions."""

    model_config = ConfigDict(extra="forbid")

    force: bool = False


class RetiredPublic(BaseModel):
    """The key versions retired."""

    path: str
    retired: list[int]


@router.post(_APPS + "/{app_id}/encrypted-dirs/{name}/rotate", response_model=DirKeyInfoPublic)
def rotate_key(
    account_id: str, app_id: str, name: str, ctx: ContextDep, build: str | None = None
) -> DirKeyInfoPublic:
    """Add a new key version (administrators only; audited).

    The next attestation releases the new key and the older versions still needed; the
    workload re-encrypts the directory and reports it, which retires the older versions.
    """
    app = get_app(ctx, account_id, app_id)
    build_row = None if build is None else get_build(ctx, account_id, build)
    info = encrypted_dirs.rotate_dir_key(ctx, app, name, build_row)
    return DirKeyInfoPublic(
        path=info.path, scope=info.scope, version=info.version, created_at=info.created_at
    )


@router.post(_APPS + "/{app_id}/encrypted-dirs/{name}/retire", response_model=RetiredPublic)
def retire_keys(  # noqa: PLR0917 (FastAPI passes path and query parameters by name)
    account_id: str,
    app_id: str,
    name: str,
    body: RetireIn,
    ctx: ContextDep,
    build: str | None = None,
) -> RetiredPublic:
    """Retire the older key versions before the workload reported its rotation (``force``)."""
    app = get_app(ctx, account_id, app_id)
    build_row = None if build is None else get_build(ctx, account_id, build)
    retired = encrypted_dirs.retire_dir_keys(ctx, app, name, build_row, force=body.force)
    return RetiredPublic(path=encrypted_dirs.directory_of(app, name), retired=retired)


@router.post("/v1/workloads/encrypted-dirs/report", response_model=DirReportAnswer)
def report(
    *,
    body: SignedDirReport,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    _principal: PrincipalDep,
) -> DirReportAnswer | JSONResponse:
    """Record a workload's report: the epoch its directory reached, or a finished rotation."""
    ctx = workload_context(request, runtime, session, instance=None, app="unknown")
    try:
        # Their own bucket per address (a prefixed key): reports never use up the attestations'.
        request.app.state.attestation.limiter.take(
            "dir-report:" + (client_address(request, runtime) or "unknown"), ctx.now
        )
        workload = encrypted_dirs.certified_workload(ctx, body)
    except SanctumError as error:
        _log.warning(
            "refused an encrypted-directory report from %s: %s [%s]",
            ctx.source_address or "unknown",
            error.message,
            error.code,
            extra={"event": "encfs.report_refused", "audit": True, "code": error.code},
        )
        return refusal_response(request, error)
    ctx = dataclasses.replace(
        ctx, actor=workload_actor(workload.instance, f"app {workload.app_id}")
    )
    return encrypted_dirs.record_dir_report(ctx, workload)
