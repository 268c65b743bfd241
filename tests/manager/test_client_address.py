"""The caller's address behind a trusted proxy: the rightmost X-Forwarded-For hop."""

from __future__ import annotations

from types import SimpleNamespace

from starlette.requests import Request

from sanctum.manager.deps import client_address


def _request(*forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": headers,
            "client": ("10.0.0.9", 1),
        }
    )


def _runtime(trust: bool) -> SimpleNamespace:
    return SimpleNamespace(settings=SimpleNamespace(trust_forwarded_for=trust))


def test_rightmost_hop_is_the_one_the_proxy_added():
    # The client forged "1.2.3.4"; the proxy appended the address it saw.
    assert client_address(_request("1.2.3.4, 198.51.100.7"), _runtime(True)) == "198.51.100.7"
    assert client_address(_request("1.2.3.4", "203.0.113.5 "), _runtime(True)) == "203.0.113.5"
    assert client_address(_request("1.2.3.4, "), _runtime(True)) == "1.2.3.4"


def test_forwarded_for_ignored_unless_trusted():
    assert client_address(_request("1.2.3.4"), _runtime(False)) == "10.0.0.9"
    assert client_address(_request(), _runtime(True)) == "10.0.0.9"
