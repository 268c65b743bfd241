"""Encrypted directories of an app: key policy, key metadata, and the audited key export.

Directory keys are released to workloads only in attestation responses; these routes let an
administrator choose the key policy and fetch a key for offline ``sanctum files`` use. The
``{name}`` of a directory is its path without the leading slash, further slashes written as
``:`` (``/var/lib/db`` is ``var:lib:db``), since a URL path segment cannot hold ``/``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict

from sanctum.manager.deps import ContextDep
from sanctum.manager.models_encfs import KeyPolicy
from sanctum.manager.services import encrypted_dirs
from sanctum.manager.services.apps import get_app
from sanctum.manager.services.builds import get_build
from sanctum.protocol.messages import B64Bytes

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/apps", tags=["encrypted directories"])


class DirKeyInfoPublic(BaseModel):
    """One stored key version (never the key)."""

    path: str
    scope: str
    version: int
    created_at: str


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
                path=info.path, scope=info.scope, version=info.version, created_at=info.created_at
            )
            for info in encrypted_dirs.list_dir_keys(ctx, app)
        ],
    )


@router.get("/{app_id}/encrypted-dirs", response_model=EncryptedDirsPublic)
def list_encrypted_dirs(account_id: str, app_id: str, ctx: ContextDep) -> EncryptedDirsPublic:
    """Show the app's encrypted directories, key policy and key versions (no keys)."""
    return _public(ctx, account_id, app_id)


@router.put("/{app_id}/encrypted-dirs/policy", response_model=EncryptedDirsPublic)
def set_key_policy(
    account_id: str, app_id: str, body: KeyPolicyIn, ctx: ContextDep
) -> EncryptedDirsPublic:
    """Set the key policy: ``same_build`` (a key per build) or ``app_builds`` (shared)."""
    app = get_app(ctx, account_id, app_id)
    encrypted_dirs.set_policy(ctx, app, KeyPolicy(body.key_policy))
    return _public(ctx, account_id, app_id)


@router.get("/{app_id}/encrypted-dirs/{name}/key", response_model=DirKeyExport)
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
