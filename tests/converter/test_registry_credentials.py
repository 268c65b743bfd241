"""Registry credentials go only to the registry's own origin and to HTTPS token realms.

A small registry on 127.0.0.1 names an upload ``Location`` on another origin (another port of
127.0.0.1 here, as a stand-in for another host); the other origin records every request and
must never see an ``Authorization`` header. Token-realm rules are checked with an in-process
httpx transport, since they are decided before any request leaves.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from sanctum.converter.errors import RegistryAuthError, RegistryUnavailable
from sanctum.converter.oci import RegistryAuth, RegistryReference, parse_image_reference
from sanctum.converter.oci.model import OCI_LAYER_GZIP, Descriptor, digest_of
from sanctum.converter.oci.registry import RegistryClient, RegistrySink, RegistrySource

AUTH = RegistryAuth("alice", "s3cret-password")
BASIC = AUTH.basic_header()
TOKEN = "registry-bearer-token"
BLOB = b"0123456789" * 10


@dataclass
class _Seen:
    """What one server received: (method, path, Authorization header or None)."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, authorization: str | None) -> None:
        with self.lock:
            self.requests.append((method, path, authorization))

    def authorizations(self) -> list[str | None]:
        with self.lock:
            return [a for _, _, a in self.requests]


class _Server(ThreadingHTTPServer):
    """A test server whose handler reads its behaviour from these attributes."""

    daemon_threads = True
    seen: _Seen
    mode: str  # "registry" or "elsewhere"
    auth_scheme: str  # "basic" or "bearer" (registry mode)
    upload_location: str  # where the registry's POST points uploads
    elsewhere_status: int  # the status the other origin answers with


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep test output quiet."""

    def _reply(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        authorization = self.headers.get("Authorization")
        self.server.seen.add(self.command, self.path, authorization)
        if self.server.mode == "elsewhere":
            status = self.server.elsewhere_status
            here = f"http://{self.headers['Host']}{self.path.split('?')[0]}"
            headers = {"Location": here + "-next"} if status == 202 else {}
            if status == 401:
                realm = f"http://{self.headers['Host']}/token"
                headers = {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'}
            self._reply(status, headers)
            return
        host = self.headers["Host"]
        if self.path.startswith("/token"):
            if authorization != BASIC:
                self._reply(401)
                return
            self._reply(
                200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode()
            )
            return
        expected = BASIC if self.server.auth_scheme == "basic" else f"Bearer {TOKEN}"
        if authorization != expected:
            if self.server.auth_scheme == "basic":
                challenge = 'Basic realm="registry"'
            else:
                challenge = f'Bearer realm="http://{host}/token",service="registry"'
            self._reply(401, {"WWW-Authenticate": challenge})
            return
        if self.command == "POST":
            self._reply(202, {"Location": self.server.upload_location})
        elif self.command == "PATCH":
            self._reply(202, {"Location": self.path.split("?")[0]})
        elif self.command == "PUT":
            self._reply(201)
        else:
            self._reply(200 if self.path == "/v2/" else 204)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815


@contextmanager
def _server(mode: str, **attrs: object) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.seen = _Seen()
    server.mode = mode
    server.auth_scheme = "basic"
    server.upload_location = ""
    server.elsewhere_status = 201
    for key, value in attrs.items():
        setattr(server, key, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _port(server: _Server) -> int:
    return int(server.server_address[1])


def _sink(registry: _Server, *, chunk_size: int = 1 << 20) -> RegistrySink:
    reference = parse_image_reference(f"127.0.0.1:{_port(registry)}/team/app:1")
    assert isinstance(reference, RegistryReference)
    client = RegistryClient(reference, auth=AUTH, push=True, timeout=10)
    return RegistrySink(reference, client, chunk_size=chunk_size)


def _descriptor() -> Descriptor:
    return Descriptor(OCI_LAYER_GZIP, digest_of(BLOB), len(BLOB))


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_upload_location_on_the_registry_origin_gets_credentials(scheme: str) -> None:
    # The positive control: a same-origin absolute Location is still authenticated.
    with _server("registry", auth_scheme=scheme) as registry:
        registry.upload_location = (
            f"http://127.0.0.1:{_port(registry)}/v2/team/app/blobs/uploads/u1"
        )
        with _sink(registry) as sink:
            sink.put_blob(_descriptor(), io.BytesIO(BLOB))
        expected = BASIC if scheme == "basic" else f"Bearer {TOKEN}"
        puts = [a for m, _, a in registry.seen.requests if m == "PUT"]
        assert puts == [expected]


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_monolithic_upload_to_another_origin_carries_no_authorization(scheme: str) -> None:
    with _server("elsewhere") as other, _server("registry", auth_scheme=scheme) as registry:
        registry.upload_location = f"http://127.0.0.1:{_port(other)}/uploads/u1"
        with _sink(registry) as sink:
            sink.put_blob(_descriptor(), io.BytesIO(BLOB))
        assert [m for m, _, _ in other.seen.requests] == ["PUT"]
        assert other.seen.authorizations() == [None]
        # The registry itself did get the credentials (the POST that started the upload).
        assert any(a is not None for a in registry.seen.authorizations())


def test_chunked_upload_and_cancel_on_another_origin_carry_no_authorization() -> None:
    with _server("elsewhere", elsewhere_status=202) as other, _server("registry") as registry:
        registry.upload_location = f"http://127.0.0.1:{_port(other)}/uploads/u2"
        # The other origin answers 202 to the final PUT too, so the sink cancels (DELETE).
        with (
            _sink(registry, chunk_size=30) as sink,
            pytest.raises(RegistryUnavailable, match="HTTP 202"),
        ):
            sink.put_blob(_descriptor(), io.BytesIO(BLOB))
        methods = [m for m, _, _ in other.seen.requests]
        assert methods.count("PATCH") == 4
        assert methods[-2:] == ["PUT", "DELETE"]
        assert set(other.seen.authorizations()) == {None}


def test_a_challenge_from_another_origin_is_not_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sanctum.converter.oci.registry")
    with _server("elsewhere", elsewhere_status=401) as other, _server("registry") as registry:
        registry.upload_location = f"http://127.0.0.1:{_port(other)}/uploads/u3?_state=signed"
        with _sink(registry) as sink, pytest.raises(RegistryAuthError):
            sink.put_blob(_descriptor(), io.BytesIO(BLOB))
        # No token was fetched from the realm the other origin named, and nothing was
        # retried there with credentials.
        assert [m for m, p, _ in other.seen.requests if p.startswith("/token")] == []
        assert set(other.seen.authorizations()) == {None}
    # The failed cancel is logged without the upload URL's query (a signed session state).
    assert "could not cancel upload /uploads/u3" in caplog.text
    assert "signed" not in caplog.text


# Token realms: decided before any request goes out, so an in-process transport suffices.


def _challenge_client(
    realm: str,
    *,
    ref: str = "registry.example.com/team/app:1",
    auth: RegistryAuth | None = AUTH,
    unsafe_plain_http: bool = False,
) -> tuple[RegistrySource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.scheme == "https" and request.url.host == "127.0.0.1":
            raise httpx.ConnectError("no TLS here", request=request)
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": TOKEN})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx.Response(
                401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="r"'}
            )
        return httpx.Response(404)

    reference = parse_image_reference(ref)
    assert isinstance(reference, RegistryReference)
    client = RegistryClient(
        reference,
        auth=auth,
        unsafe_plain_http=unsafe_plain_http,
        transport=httpx.MockTransport(handler),
    )
    return RegistrySource(reference, client), seen


def _token_requests(seen: list[httpx.Request]) -> list[httpx.Request]:
    return [r for r in seen if r.url.path == "/token"]


@pytest.mark.parametrize(
    "auth",
    [AUTH, RegistryAuth("", "", identity_token="refresh-token")],
    ids=["basic", "identity-token"],
)
def test_credentials_are_not_sent_to_a_plain_http_realm_of_an_https_registry(
    auth: RegistryAuth,
) -> None:
    source, seen = _challenge_client("http://auth.example.com/token", auth=auth)
    with source, pytest.raises(RegistryAuthError) as caught:
        source.blob_exists(digest_of(BLOB))
    assert caught.value.code == "registry.insecure_token_realm"
    assert _token_requests(seen) == []


def test_an_https_registry_never_downgrades_to_a_loopback_http_realm() -> None:
    source, seen = _challenge_client("http://127.0.0.1:9/token")
    with source, pytest.raises(RegistryAuthError) as caught:
        source.blob_exists(digest_of(BLOB))
    assert caught.value.code == "registry.insecure_token_realm"
    assert _token_requests(seen) == []


def test_a_plain_loopback_registry_may_use_a_loopback_http_realm_only() -> None:
    ok, seen = _challenge_client("http://127.0.0.1:5001/token", ref="127.0.0.1:5000/team/app:1")
    with ok:
        assert ok.blob_exists(digest_of(BLOB)) is False
    assert [r.headers.get("Authorization") for r in _token_requests(seen)] == [BASIC]

    refused, seen = _challenge_client(
        "http://auth.example.com/token", ref="127.0.0.1:5000/team/app:1"
    )
    with refused, pytest.raises(RegistryAuthError) as caught:
        refused.blob_exists(digest_of(BLOB))
    assert caught.value.code == "registry.insecure_token_realm"
    assert _token_requests(seen) == []


def test_unsafe_plain_http_allows_a_plain_realm_and_anonymous_needs_no_https() -> None:
    source, seen = _challenge_client("http://auth.example.com/token", unsafe_plain_http=True)
    with source:
        assert source.blob_exists(digest_of(BLOB)) is False
    assert len(_token_requests(seen)) == 1
    # Without credentials there is nothing to protect: an anonymous token may come over HTTP.
    anonymous, seen = _challenge_client("http://auth.example.com/token", auth=None)
    with anonymous:
        assert anonymous.blob_exists(digest_of(BLOB)) is False
    assert [r.headers.get("Authorization") for r in _token_requests(seen)] == [None]
