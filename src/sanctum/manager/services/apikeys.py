"""API keys for automation, shown once and stored only as a hash.

A user creates keys for themselves, or an administrator for a service account; a key's role is
never higher than its creator's, and a user's key is further capped by its owner's current role.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select

from sanctum.errors import NotFoundError, PermissionDeniedError, UsageError
from sanctum.manager.credentials import hash_secret, new_api_key
from sanctum.manager.models import ApiKey, Role
from sanctum.manager.services.audit import Severity, audit
from sanctum.manager.services.context import ServiceContext

__all__ = ["create_api_key", "list_api_keys", "revoke_api_key"]


def create_api_key(
    ctx: ServiceContext,
    account_id: str,
    *,
    name: str,
    role: Role,
    expires_at: dt.datetime | None,
    service_account: bool,
    actor_role: Role,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret (the only time the secret exists in clear).

    Raises:
        PermissionDeniedError: An API key creating keys (``apikey.creator_not_user``), a role
            above the creator's (``apikey.role_too_high``), or a service-account key by a
            non-administrator (``apikey.service_account_admin_only``).
        UsageError: An expiry in the past (``apikey.expiry_invalid``).
    """
    if ctx.actor.type != "user" or ctx.actor.user_id is None:
        raise PermissionDeniedError("only users create API keys", code="apikey.creator_not_user")
    if role.rank > actor_role.rank:
        raise PermissionDeniedError(
            f"a key cannot have more power than its creator ({actor_role})",
            code="apikey.role_too_high",
        )
    if service_account and actor_role != Role.administrator:
        raise PermissionDeniedError(
            "only administrators create service-account keys",
            code="apikey.service_account_admin_only",
        )
    if expires_at is not None and expires_at <= ctx.now:
        raise UsageError("the expiry is in the past", code="apikey.expiry_invalid")
    secret, prefix = new_api_key()
    key = ApiKey(
        account_id=account_id,
        user_id=None if service_account else ctx.actor.user_id,
        name=name,
        prefix=prefix,
        key_hash=hash_secret(secret),
        role=role,
        created_by=ctx.actor.user_id,
        created_at=ctx.now,
        expires_at=expires_at,
    )
    ctx.session.add(key)
    ctx.session.flush()
    audit(
        ctx,
        "apikey.created",
        account_id=account_id,
        target_type="apikey",
        target_id=key.id,
        details={
            "name": name,
            "prefix": prefix,
            "role": str(role),
            "service_account": service_account,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return key, secret


def list_api_keys(ctx: ServiceContext, account_id: str, *, actor_role: Role) -> Sequence[ApiKey]:
    """Return the account's keys (all for administrators, else the actor's own)."""
    statement = select(ApiKey).where(ApiKey.account_id == account_id)
    if actor_role != Role.administrator:
        owner = ctx.actor.user_id if ctx.actor.type == "user" else None
        statement = statement.where(ApiKey.user_id == owner)
    return ctx.session.scalars(statement.order_by(ApiKey.created_at, ApiKey.id)).all()


def revoke_api_key(
    ctx: ServiceContext, account_id: str, key_id: str, *, actor_role: Role
) -> ApiKey:
    """Revoke a key (its owner or an administrator); revoking twice is harmless.

    Raises:
        NotFoundError: No such key visible to the actor (``apikey.not_found``).
    """
    key = ctx.session.get(ApiKey, key_id)
    mine = ctx.actor.type == "user" and key is not None and key.user_id == ctx.actor.user_id
    if (
        key is None
        or key.account_id != account_id
        or not (mine or actor_role == Role.administrator)
    ):
        raise NotFoundError("no such API key", code="apikey.not_found")
    if key.revoked_at is None:
        key.revoked_at = ctx.now
        audit(
            ctx,
            "apikey.revoked",
            account_id=account_id,
            target_type="apikey",
            target_id=key.id,
            severity=Severity.warning,
            details={"prefix": key.prefix, "name": key.name},
        )
    return key
