"""The account's CA: its chain (``GET .../ca``) and its CRL (``GET .../ca/crl``, public)."""

from __future__ import annotations

from typing import Annotated, Literal

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from sanctum.manager.deps import ContextDep, PrincipalDep, RuntimeDep, SessionDep, client_address
from sanctum.manager.routes.attest import AttestationDep
from sanctum.manager.schemas_attestation import CaPublic
from sanctum.manager.services import certificates
from sanctum.manager.services.context import Actor, ServiceContext

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/ca", tags=["ca"])


@router.get("", response_model=CaPublic)
def get_ca(account_id: str, ctx: ContextDep, att: AttestationDep) -> CaPublic:
    """Return the account's root certificate (to pin) and the issuing intermediate."""
    ca = certificates.ensure_account_ca(ctx, account_id, att.ca_cache)
    return CaPublic(
        account_id=account_id,
        root=ca.root_pem(),
        chain=ca.chain_pem(),
        crl_path=f"/v1/accounts/{account_id}/ca/crl",
    )


@router.get(
    "/crl",
    response_class=Response,
    responses={
        200: {
            "content": {"application/pkix-crl": {}, "application/x-pem-file": {}},
            "description": "The CRL signed by the issuing CA",
        }
    },
)
def get_crl(
    *,
    account_id: str,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    att: AttestationDep,
    _principal: PrincipalDep,
    format: Annotated[Literal["der", "pem"], Query()] = "der",  # noqa: A002 (the API's word)
) -> Response:
    """Return the account's current CRL (DER by default; ``?format=pem``). No credentials."""
    ctx = ServiceContext(
        session=session,
        now=runtime.clock.now(),
        actor=Actor.anonymous(),
        runtime=runtime,
        request_id=getattr(request.state, "request_id", None),
        source_address=client_address(request, runtime),
    )
    crl = certificates.crl_for(ctx, account_id, att.ca_cache)
    if format == "pem":
        return Response(
            crl.public_bytes(serialization.Encoding.PEM), media_type="application/x-pem-file"
        )
    return Response(crl.public_bytes(serialization.Encoding.DER), media_type="application/pkix-crl")
