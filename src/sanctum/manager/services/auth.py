"""Sign-in, bearer tokens and resolving the caller of each request.

``POST /v1/auth/token`` exchanges an API key or an email and password for a short-lived bearer
token (:func:`issue_token`). Failed attempts are recorded in the database and rate-limited per
identity (email or API key prefix) and per source address, so every replica sees the same
counters; successes and failures are audited. :func:`resolve_bearer` runs on every
authenticated request and re-reads the user or key, so disabled users and revoked keys stop
working at once, whatever their token says.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sanctum.errors import AuthenticationError, SanctumError, UsageError
from sanctum.manager.credentials import (
    hash_password,
    hash_secret,
    issue_bearer_token,
    parse_api_key,
    password_needs_rehash,
    verify_bearer_token,
    verify_password,
)
from sanctum.manager.errors import RateLimitedError
from sanctum.manager.models import ApiKey, AuthFailure, Membership, Role, User, UserStatus
from sanctum.manager.runtime import Runtime
from sanctum.manager.services.audit import Outcome, Severity, record
from sanctum.manager.services.context import Actor

__all__ = ["IssuedToken", "effective_role", "issue_token", "resolve_bearer"]

_API_KEY_TOUCH_INTERVAL = dt.timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A bearer token and who it is for."""

    token: str
    expires_at: dt.datetime
    kind: Literal["user", "apikey"]
    subject: str


def _invalid() -> AuthenticationError:
    # One message for every wrong credential, so responses never tell which part was wrong.
    return AuthenticationError("invalid credentials", code="auth.invalid_credentials")


def _failures_since(session: Session, scope: str, subject: str, since: dt.datetime) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(AuthFailure)
        .where(AuthFailure.scope == scope, AuthFailure.subject == subject, AuthFailure.at > since)
    )
    return int(count or 0)


def _check_rate(
    session: Session, runtime: Runtime, identity: str, address: str | None, now: dt.datetime
) -> None:
    settings = runtime.settings
    window = dt.timedelta(seconds=settings.login_failure_window_seconds)
    since = now - window
    limited = _failures_since(session, "identity", identity, since) >= (
        settings.login_max_failures_per_identity
    )
    if address and not limited:
        limited = _failures_since(session, "address", address, since) >= (
            settings.login_max_failures_per_address
        )
    if limited:
        raise RateLimitedError(
            "too many failed sign-ins; try again later",
            retry_after_seconds=settings.login_failure_window_seconds,
        )


def _audit_auth(
    session: Session,
    *,
    now: dt.datetime,
    action: str,
    outcome: Outcome,
    account_id: str | None,
    actor: Actor,
    request_id: str | None,
    address: str | None,
    details: dict[str, object],
) -> None:
    record(
        session,
        now=now,
        action=action,
        account_id=account_id,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_name=actor.name,
        outcome=outcome,
        severity=Severity.info if outcome == Outcome.success else Severity.warning,
        request_id=request_id,
        source_address=address,
        details=details,
    )


def issue_token(
    runtime: Runtime,
    *,
    api_key: str | None,
    email: str | None,
    password: str | None,
    address: str | None,
    request_id: str | None,
) -> IssuedToken:
    """Check the credentials and return a bearer token.

    The check runs in one transaction and the failure bookkeeping in another, committed before
    the error is raised, so counters and audit entries survive the refusal.

    Raises:
        UsageError: Neither or both kinds of credential given (``auth.credentials_missing``).
        RateLimitedError: Too many recent failures (``auth.rate_limited``, HTTP 429).
        AuthenticationError: Wrong credentials, disabled user, revoked or expired key
            (``auth.invalid_credentials``).
    """
    if (api_key is None) == (email is None or password is None):
        raise UsageError(
            "give either api_key, or email and password", code="auth.credentials_missing"
        )
    now = runtime.clock.now()
    ttl = dt.timedelta(seconds=runtime.settings.token_ttl_seconds)
    if api_key is not None:
        identity = "key:" + (api_key.split("_", 2)[1] if api_key.count("_") >= 2 else "?")
    else:
        identity = "email:" + (email or "").strip().lower()
    failure: SanctumError | None = None
    failure_account: str | None = None
    failure_actor = Actor.anonymous()
    try:
        with runtime.db.transaction() as session:
            _check_rate(session, runtime, identity, address, now)
    except RateLimitedError as error:
        with runtime.db.transaction() as session:
            _audit_auth(
                session,
                now=now,
                action="auth.rate_limited",
                outcome=Outcome.denied,
                account_id=None,
                actor=failure_actor,
                request_id=request_id,
                address=address,
                details={"identity": identity},
            )
        raise error from None
    with runtime.db.transaction() as session:
        try:
            if api_key is not None:
                key = _check_api_key(session, api_key, now)
                actor = Actor(type="apikey", id=key.id, name=key.name, account_id=key.account_id)
                token, claims = issue_bearer_token(
                    runtime.token_key, subject=key.id, kind="apikey", now=now, ttl=ttl
                )
                account_id: str | None = key.account_id
                key.last_used_at = now
            else:
                user = _check_password(session, runtime, email or "", password or "")
                actor = Actor(type="user", id=user.id, name=user.email, user_id=user.id)
                token, claims = issue_bearer_token(
                    runtime.token_key, subject=user.id, kind="user", now=now, ttl=ttl
                )
                account_id = None
            session.execute(
                delete(AuthFailure).where(
                    AuthFailure.scope == "identity", AuthFailure.subject == identity
                )
            )
            _audit_auth(
                session,
                now=now,
                action="auth.token_issued",
                outcome=Outcome.success,
                account_id=account_id,
                actor=actor,
                request_id=request_id,
                address=address,
                details={"method": "api_key" if api_key is not None else "password"},
            )
            return IssuedToken(
                token=token, expires_at=claims.expires_at, kind=claims.kind, subject=claims.subject
            )
        except AuthenticationError as error:
            failure = error
            named = error.details.get("account_id")
            failure_account = named if isinstance(named, str) else None
    with runtime.db.transaction() as session:
        session.add(AuthFailure(scope="identity", subject=identity, at=now))
        if address:
            session.add(AuthFailure(scope="address", subject=address, at=now))
        _audit_auth(
            session,
            now=now,
            action="auth.login_failed",
            outcome=Outcome.failure,
            account_id=failure_account,
            actor=failure_actor,
            request_id=request_id,
            address=address,
            details={"identity": identity, "reason": failure.code},
        )
    raise _invalid() from failure


def _check_api_key(session: Session, api_key: str, now: dt.datetime) -> ApiKey:
    prefix = parse_api_key(api_key)
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if key is None or not hmac.compare_digest(key.key_hash, hash_secret(api_key)):
        raise AuthenticationError("unknown API key", code="auth.key_unknown")
    details = {"account_id": key.account_id}
    if key.revoked_at is not None:
        raise AuthenticationError("revoked API key", code="auth.key_revoked", details=details)
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthenticationError("expired API key", code="auth.key_expired", details=details)
    if key.user_id is not None:
        owner = session.get(User, key.user_id)
        if owner is None or owner.status != UserStatus.active:
            raise AuthenticationError(
                "the key's owner is disabled", code="auth.key_owner_disabled", details=details
            )
    return key


def _check_password(session: Session, runtime: Runtime, email: str, password: str) -> User:
    hasher = runtime.hasher
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if not verify_password(user.password_hash if user else None, password, hasher) or user is None:
        raise AuthenticationError("wrong email or password", code="auth.password_wrong")
    if user.status != UserStatus.active:
        raise AuthenticationError("the user is not active", code="auth.user_inactive")
    if user.password_hash and password_needs_rehash(user.password_hash, hasher):
        user.password_hash = hash_password(password, hasher)
    return user


def resolve_bearer(session: Session, runtime: Runtime, token: str, now: dt.datetime) -> Actor:
    """Return the actor behind a bearer token, re-checking the user or key now.

    Raises:
        AuthenticationError: Bad or expired token (``auth.token_invalid``,
            ``auth.token_expired``), or its user/key no longer valid, or a user token issued
            before the user's password last changed (``auth.revoked``).
    """
    claims = verify_bearer_token(runtime.token_key, token, now=now)
    revoked = AuthenticationError(
        "the credentials behind this token are no longer valid", code="auth.revoked"
    )
    if claims.kind == "user":
        user = session.get(User, claims.subject)
        if user is None or user.status != UserStatus.active:
            raise revoked
        if user.tokens_valid_after is not None and claims.issued_at < user.tokens_valid_after:
            raise revoked  # Issued before the user's password last changed.
        return Actor(type="user", id=user.id, name=user.email, user_id=user.id)
    key = session.get(ApiKey, claims.subject)
    if key is None or key.revoked_at is not None:
        raise revoked
    if key.expires_at is not None and key.expires_at <= now:
        raise revoked
    if key.user_id is not None:
        owner = session.get(User, key.user_id)
        if owner is None or owner.status != UserStatus.active:
            raise revoked
    if key.last_used_at is None or now - key.last_used_at >= _API_KEY_TOUCH_INTERVAL:
        key.last_used_at = now
    return Actor(
        type="apikey",
        id=key.id,
        name=key.name,
        user_id=key.user_id,
        account_id=key.account_id,
        key_role=key.role,
    )


def effective_role(session: Session, actor: Actor, account_id: str) -> Role | None:
    """Return what ``actor`` may do in ``account_id`` (``None``: nothing).

    A user's role is its membership; an API key acts only in its own account, with its own role
    capped by its owner's current role.
    """
    if actor.type == "user" and actor.user_id is not None:
        membership = session.get(Membership, (actor.user_id, account_id))
        return membership.role if membership is not None else None
    if actor.type == "apikey" and actor.key_role is not None:
        if actor.account_id != account_id:
            return None
        role = actor.key_role
        if actor.user_id is not None:
            membership = session.get(Membership, (actor.user_id, account_id))
            if membership is None:
                return None
            if membership.role.rank < role.rank:
                role = membership.role
        return role
    return None
