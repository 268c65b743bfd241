"""Credentials: bearer tokens, API key format, password hashing (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.errors import AuthenticationError, UsageError
from sanctum.manager.credentials import (
    check_password_strength,
    hash_password,
    issue_bearer_token,
    new_api_key,
    parse_api_key,
    password_hasher,
    verify_bearer_token,
    verify_password,
)
from sanctum.manager.db import Database

KEY = b"\x11" * 32
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
TOKEN, CLAIMS = issue_bearer_token(
    KEY, subject="user-1", kind="user", now=NOW, ttl=dt.timedelta(minutes=15)
)


def test_token_round_trip_and_expiry():
    claims = verify_bearer_token(KEY, TOKEN, now=NOW + dt.timedelta(minutes=14))
    assert (claims.subject, claims.kind) == ("user-1", "user")
    assert claims.expires_at == NOW + dt.timedelta(minutes=15)
    with pytest.raises(AuthenticationError) as expired:
        verify_bearer_token(KEY, TOKEN, now=NOW + dt.timedelta(minutes=15))
    assert expired.value.code == "auth.token_expired"
    with pytest.raises(AuthenticationError):
        verify_bearer_token(b"\x12" * 32, TOKEN, now=NOW)


@settings(max_examples=200)
@given(position=st.integers(min_value=0, max_value=len(TOKEN) - 1), char=st.characters())
def test_any_change_to_a_token_is_refused(position, char):
    forged = TOKEN[:position] + char + TOKEN[position + 1 :]
    if forged == TOKEN:
        return
    try:
        claims = verify_bearer_token(KEY, forged, now=NOW)
    except AuthenticationError:
        return
    # Base64 padding bits can absorb a change of the last character without changing bytes.
    assert claims == verify_bearer_token(KEY, TOKEN, now=NOW)


def test_a_token_with_a_lone_surrogate_is_refused():
    with pytest.raises(AuthenticationError):
        verify_bearer_token(KEY, TOKEN[:-1] + "\ud800", now=NOW)


def test_api_key_format():
    key, prefix = new_api_key()
    assert parse_api_key(key) == prefix
    assert len(prefix) == 12
    for bad in (
        "",
        "snk_short_x",
        "abc_123456789012_x",
        "snk_123456789012_",
        key.replace("snk", "sk"),
    ):
        with pytest.raises(AuthenticationError):
            parse_api_key(bad)


def test_passwords():
    fast = password_hasher(unsafe_fast=True)
    hashed = hash_password("correct horse battery", fast)
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery", fast)
    assert not verify_password(hashed, "wrong horse battery", fast)
    assert not verify_password(None, "anything at all", fast)
    assert not verify_password("not-a-hash", "anything at all", fast)
    with pytest.raises(UsageError):
        check_password_strength("short")
    assert "m=65536" in password_hasher().hash("x" * 12)


def test_unsupported_database():
    with pytest.raises(UsageError) as raised:
        Database("mysql://localhost/x")
    assert raised.value.code == "database.unsupported"
