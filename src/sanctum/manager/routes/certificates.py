"""Issued certificates of an account: list, show, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sanctum.manager.deps import ContextDep
from sanctum.manager.models_attestation import CertificateStatus
from sanctum.manager.schemas_attestation import CertificatePublic, CertificateRevoke
from sanctum.manager.services import certificates
from sanctum.manager.services.apps import get_app

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/certificates", tags=["certificates"])


@router.get("", response_model=list[CertificatePublic])
def list_certificates(
    *,
    account_id: str,
    ctx: ContextDep,
    app: Annotated[str | None, Query(max_length=200)] = None,
    build: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[CertificateStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CertificatePublic]:
    """List certificates, newest first, by app, build and status."""
    app_id = get_app(ctx, account_id, app).id if app else None
    found = certificates.list_certificates(
        ctx, account_id, app_id=app_id, build_id=build, status=status, limit=limit
    )
    return [CertificatePublic.model_validate(record) for record in found]


@router.get("/{serial}", response_model=CertificatePublic)
def get_certificate(account_id: str, serial: str, ctx: ContextDep) -> CertificatePublic:
    """Show a certificate (by serial in hex, or id)."""
    return CertificatePublic.model_validate(certificates.get_certificate(ctx, account_id, serial))


@router.post("/{serial}/revoke", response_model=CertificatePublic)
def revoke_certificate(
    account_id: str, serial: str, ctx: ContextDep, body: CertificateRevoke | None = None
) -> CertificatePublic:
    """Revoke a certificate; it is listed in the account's CRL from now on."""
    reason = body.reason if body is not None else "unspecified"
    record = certificates.revoke_certificate(ctx, account_id, serial, reason)
    return CertificatePublic.model_validate(record)
