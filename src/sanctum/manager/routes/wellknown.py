"""``/.well-known/jwks.json``: the keys that verify the manager's attestation result tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sanctum.manager.deps import PrincipalDep
from sanctum.manager.routes.attest import AttestationDep

__all__ = ["router"]

router = APIRouter(tags=["attestation"])


@router.get("/.well-known/jwks.json")
def jwks(att: AttestationDep, _principal: PrincipalDep) -> dict[str, list[dict[str, Any]]]:
    """Return the JWK Set (RFC 7517) of the token signing keys, active key first."""
    keys: dict[str, list[dict[str, Any]]] = {
        "keys": [dict(key) for key in att.ear_keys.jwks()["keys"]]
    }
    return keys
