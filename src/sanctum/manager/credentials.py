"""Credentials: password hashing, API keys and invitation tokens, and signed bearer tokens.

- Passwords are hashed with Argon2id (argon2-cffi's RFC 9106 low-memory profile).
- API keys and invitation tokens are 256-bit random secrets; only their SHA-256 is stored (a
  slow hash adds nothing for secrets with that much entropy). API keys carry a public prefix so
  they can be found and listed without revealing them: ``snk_<prefix>_<secret>``.
- Bearer tokens are compact JWS (JWT, HS256) signed with a key every replica shares (sealed in
  the database), valid for a short time. Validity is *not* the whole check: every request also
  looks up the user or key (disabled users and revoked keys stop at once).

All functions are pure apart from the random generator; the time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Final, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from sanctum.errors import AuthenticationError, UsageError

__all__ = [
    "API_KEY_PREFIX",
    "BearerClaims",
    "check_password_strength",
    "hash_password",
    "hash_secret",
    "issue_bearer_token",
    "new_api_key",
    "new_password",
    "new_secret_token",
    "parse_api_key",
    "password_hasher",
    "password_needs_rehash",
    "verify_bearer_token",
    "verify_password",
]

API_KEY_PREFIX: Final = "snk"
MIN_PASSWORD_LENGTH: Final = 12
_HASHER: Final = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
#: Deliberately weak Argon2id parameters for test suites only (``unsafe_fast_password_hashing``).
_UNSAFE_FAST_HASHER: Final = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
_ISSUER: Final = "sanctum-manager"


def password_hasher(*, unsafe_fast: bool = False) -> PasswordHasher:
    """Return the Argon2id hasher: RFC 9106 low-memory, or the unsafe fast one for tests."""
    return _UNSAFE_FAST_HASHER if unsafe_fast else _HASHER


def hash_password(password: str, hasher: PasswordHasher = _HASHER) -> str:
    """Return the Argon2id hash of ``password``."""
    return hasher.hash(password)


def verify_password(
    password_hash: str | None, password: str, hasher: PasswordHasher = _HASHER
) -> bool:
    """Return whether ``password`` matches ``password_hash`` (``False`` when there is no hash).

    This is a predicate on purpose: the caller turns ``False`` into the one generic
    authentication error, so the response never tells which part was wrong.
    """
    if not password_hash:
        # Spend the same effort as a real check so timing does not reveal unknown users.
        hasher.hash(password)
        return False
    try:
        return hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str, hasher: PasswordHasher = _HASHER) -> bool:
    """Return whether the hash uses other parameters than ``hasher``."""
    return hasher.check_needs_rehash(password_hash)


def check_password_strength(password: str) -> None:
    """Refuse passwords that are too short.

    Raises:
        UsageError: Shorter than 12 characters (``user.password_weak``).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(
            f"passwords need at least {MIN_PASSWORD_LENGTH} characters",
            code="user.password_weak",
        )


def new_password() -> str:
    """Return a new random password (about 190 bits)."""
    return secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    """Return the SHA-256 hex digest used to store a high-entropy secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret_token() -> str:
    """Return a new 256-bit URL-safe random token (invitations)."""
    return secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """Return ``(key, prefix)`` for a new API key; the key is shown once, never stored."""
    prefix = secrets.token_hex(6)
    return f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def parse_api_key(key: str) -> str:
    """Return the prefix of an API key.

    Raises:
        AuthenticationError: Not shaped like a Sanctum API key (``auth.invalid_credentials``).
    """
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 12 or not parts[2]:
        raise AuthenticationError("invalid credentials", code="auth.invalid_credentials")
    return parts[1]


@dataclass(frozen=True, slots=True)
class BearerClaims:
    """What a verified bearer token says: who, how, and until when."""

    subject: str
    kind: Literal["user", "apikey"]
    issued_at: dt.datetime
    expires_at: dt.datetime
    token_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_HEADER: Final = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


def issue_bearer_token(
    key: bytes,
    *,
    subject: str,
    kind: Literal["user", "apikey"],
    now: dt.datetime,
    ttl: dt.timedelta,
) -> tuple[str, BearerClaims]:
    """Return a signed bearer token (JWT HS256) and its claims."""
    claims = BearerClaims(
        subject=subject,
        kind=kind,
        issued_at=now.replace(microsecond=0),
        expires_at=(now + ttl).replace(microsecond=0),
        token_id=secrets.token_hex(12),
    )
    payload = {
        "iss": _ISSUER,
        "sub": subject,
        "sanctum_kind": kind,
        "iat": int(claims.issued_at.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "jti": claims.token_id,
    }
    signing_input = f"{_HEADER}.{_b64(json.dumps(payload, separators=(',', ':')).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}", claims


def verify_bearer_token(key: bytes, token: str, *, now: dt.datetime) -> BearerClaims:
    """Check a bearer token's signature and lifetime; return its claims.

    Raises:
        AuthenticationError: Malformed, wrongly signed (``auth.token_invalid``) or expired
            (``auth.token_expired``).
    """
    invalid = AuthenticationError("the bearer token is not valid", code="auth.token_invalid")
    # Tokens are ASCII; anything else (a lone surrogate cannot even be encoded) is malformed.
    if not token.isascii():
        raise invalid
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _HEADER:
        raise invalid
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        signature = _unb64(parts[2])
        payload = json.loads(_unb64(parts[1]))
    except (binascii.Error, ValueError) as error:
        raise invalid from error
    if not hmac.compare_digest(signature, expected):
        raise invalid
    if not isinstance(payload, dict) or payload.get("iss") != _ISSUER:
        raise invalid
    kind, subject = payload.get("sanctum_kind"), payload.get("sub")
    iat, exp, jti = payload.get("iat"), payload.get("exp"), payload.get("jti")
    if (
        kind not in {"user", "apikey"}
        or not isinstance(subject, str)
        or not isinstance(iat, int)
        or not isinstance(exp, int)
        or not isinstance(jti, str)
    ):
        raise invalid
    expires_at = dt.datetime.fromtimestamp(exp, dt.UTC)
    if now >= expires_at:
        raise AuthenticationError(
            "the bearer token has expired", code="auth.token_expired", hint="sign in again"
        )
    return BearerClaims(
        subject=subject,
        kind="user" if kind == "user" else "apikey",
        issued_at=dt.datetime.fromtimestamp(iat, dt.UTC),
        expires_at=expires_at,
        token_id=jti,
    )
