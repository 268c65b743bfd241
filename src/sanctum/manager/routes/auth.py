"""Sign-in (bearer tokens), the caller's identity, password change, invitations."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from sanctum.manager.deps import ContextDep, PrincipalDep, RuntimeDep, client_address
from sanctum.manager.schemas import (
    ApiKeyCredentials,
    InvitationAccept,
    PasswordChange,
    PasswordCredentials,
    TokenRequest,
    TokenResponse,
    WhoAmI,
)
from sanctum.manager.services import auth, users

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["auth"])


@router.post("/auth/token", response_model=TokenResponse)
def create_token(
    body: TokenRequest, request: Request, runtime: RuntimeDep, _principal: PrincipalDep
) -> TokenResponse:
    """Exchange an API key, or an email and password, for a short-lived bearer token."""
    api_key = body.api_key if isinstance(body, ApiKeyCredentials) else None
    issued = auth.issue_token(
        runtime,
        api_key=api_key,
        email=body.email if isinstance(body, PasswordCredentials) else None,
        password=body.password if isinstance(body, PasswordCredentials) else None,
        address=client_address(request, runtime),
        request_id=getattr(request.state, "request_id", None),
    )
    return TokenResponse(
        access_token=issued.token,
        expires_at=issued.expires_at,
        expires_in=runtime.settings.token_ttl_seconds,
    )


@router.get("/auth/whoami", response_model=WhoAmI)
def whoami(principal: PrincipalDep) -> WhoAmI:
    """Return who the bearer token stands for."""
    actor = principal.actor
    return WhoAmI(
        actor_type=actor.type,
        id=actor.id,
        name=actor.name,
        user_id=actor.user_id,
        account_id=actor.account_id,
    )


@router.post("/auth/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(body: PasswordChange, ctx: ContextDep) -> None:
    """Change the caller's own password."""
    users.change_password(ctx, current=body.current_password, new=body.new_password)


@router.post("/invitations/accept", status_code=status.HTTP_204_NO_CONTENT)
def accept_invitation(
    body: InvitationAccept, request: Request, runtime: RuntimeDep, _principal: PrincipalDep
) -> None:
    """Accept an invitation: set a password and activate the user (the token works once)."""
    users.accept_invitation(
        runtime,
        token=body.token,
        password=body.password,
        name=body.name,
        address=client_address(request, runtime),
        request_id=getattr(request.state, "request_id", None),
    )
