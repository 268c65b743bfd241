"""The converter's HTTP/1.1 transport (ADR 0125) against scripted servers on 127.0.0.1.

Each test starts a raw TCP server whose handler reads the request bytes and writes exactly the
answer under test (framing, keep-alive, broken bodies), so the transport is checked on the
wire, not against another HTTP implementation's tolerance.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from converter_images import make_tls_certificates

from sanctum.converter.oci.http11 import BODY_CHUNK_SIZE, Http11Transport
from sanctum.manager.services.registry_allowlist import (
    AllowlistTransport,
    RegistryAllowlist,
    RegistryNotAllowedError,
)

Handler = Callable[[socket.socket, int], None]


def _read_request(conn: socket.socket) -> tuple[bytes, bytes]:
    """Read one request head and its Content-Length or chunked body; return (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            return b"", b""
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    if b"content-length" in headers:
        need = int(headers[b"content-length"])
        while len(rest) < need:
            rest += conn.recv(65536)
        return head, rest[:need]
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += conn.recv(65536)
            line, _, rest = rest.partition(b"\r\n")
            size = int(line, 16)
            while len(rest) < size + 2:
                rest += conn.recv(65536)
            body, rest = body + rest[:size], rest[size + 2 :]
            if size == 0:
                return head, body
    return head, b""


@contextmanager
def _server(handler: Handler, tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[int]]]:
    """Serve ``handler(connection, number)`` for every accepted connection; yield the URL.

    With ``tls`` (a server context), connections are TLS and the URL is ``https``.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if stop.is_set():  # The connection that wakes the loop up to stop.
                conn.close()
                break
            accepted.append(len(accepted))
            with conn, suppress(OSError):
                conn.settimeout(10)  # A test that went wrong fails instead of hanging.
                if tls is not None:
                    with tls.wrap_socket(conn, server_side=True) as wrapped:
                        handler(wrapped, len(accepted) - 1)
                else:
                    handler(conn, len(accepted) - 1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", accepted
    finally:
        stop.set()
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        thread.join()
        listener.close()


def _client(**kwargs: object) -> httpx.Client:
    return httpx.Client(transport=Http11Transport(ssl.create_default_context()), **kwargs)  # type: ignore[arg-type]


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def test_a_large_body_arrives_whole_in_mebibyte_chunks_over_one_kept_alive_connection() -> None:
    body = bytes(range(256)) * (3 * BODY_CHUNK_SIZE // 256 + 7)

    def handler(conn: socket.socket, _: int) -> None:
        for _ in range(3):
            head, _body = _read_request(conn)
            if not head:
                return
            if head.startswith(b"HEAD"):
                # The length of the body a GET would have, and no body.
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            else:
                conn.sendall(_ok(body))

    with _server(handler) as (url, accepted), _client() as client:
        with client.stream("GET", url + "/blob") as response:
            parts = list(response.iter_raw())
        assert b"".join(parts) == body
        assert max(len(p) for p in parts) == BODY_CHUNK_SIZE
        head = client.head(url + "/blob")
        assert head.status_code == 200
        assert head.content == b""
        assert client.get(url + "/again").content == body
    assert accepted == [0]


def test_chunked_and_close_delimited_bodies_and_interim_answers() -> None:
    def handler(conn: socket.socket, number: int) -> None:
        _read_request(conn)
        if number == 0:
            conn.sendall(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
            )
            _read_request(conn)
            conn.sendall(_ok(b"same connection"))
        else:
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
            conn.shutdown(socket.SHUT_WR)

    with _server(handler) as (url, accepted), _client() as client:
        assert client.get(url + "/a").content == b"hello world"
        assert client.get(url + "/b").content == b"same connection"
        assert client.get(url + "/c").content == b"until the end"
        assert accepted == [0, 1]


def test_request_bodies_are_sent_exactly_with_a_length_or_chunked() -> None:
    received: list[bytes] = []
    payload = b"x" * (2 * BODY_CHUNK_SIZE + 3)

    def handler(conn: socket.socket, _: int) -> None:
        while True:
            head, body = _read_request(conn)
            if not head:
                return
            received.append(hashlib.sha256(body).digest())
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")

    def pieces() -> Iterator[bytes]:
        yield payload[:100]
        yield payload[100:]

    with _server(handler) as (url, accepted), _client() as client:
        sized = client.put(
            url + "/1", content=pieces(), headers={"Content-Length": str(len(payload))}
        )
        assert sized.status_code == 201
        assert client.put(url + "/2", content=pieces()).status_code == 201  # chunked
        assert client.put(url + "/3", content=b"small").status_code == 201
    assert received == [hashlib.sha256(payload).digest()] * 2 + [hashlib.sha256(b"small").digest()]
    assert accepted == [0]


def test_a_body_that_ends_early_is_a_transport_error_and_the_connection_is_not_reused() -> None:
    def handler(conn: socket.socket, number: int) -> None:
        _read_request(conn)
        if number == 0:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        else:
            conn.sendall(_ok(b"fresh"))

    with _server(handler) as (url, accepted), _client() as client:
        with pytest.raises(httpx.RemoteProtocolError, match="received 9 bytes, expected 100"):
            client.get(url + "/short")
        assert client.get(url + "/next").content == b"fresh"
    assert accepted == [0, 1]


def test_a_kept_alive_connection_closed_by_the_server_is_replaced() -> None:
    def handler(conn: socket.socket, _: int) -> None:
        _read_request(conn)
        conn.sendall(_ok(b"once"))  # Keep-alive offered, then closed anyway.

    with _server(handler) as (url, accepted), _client() as client:
        assert client.get(url + "/1").content == b"once"
        assert client.get(url + "/2").content == b"once"
    assert accepted == [0, 1]


def _drop_second_request(seen: list[tuple[int, bytes]]) -> Handler:
    """A server that closes its first connection on the second request, without answering."""

    def handler(conn: socket.socket, number: int) -> None:
        while True:
            head, _body = _read_request(conn)
            if not head:
                return
            seen.append((number, head.split(b"\r\n", 1)[0]))
            if number == 0 and len(seen) == 2:
                return  # Read, perhaps acted upon, never answered.
            conn.sendall(_ok(b"answer"))

    return handler


def test_only_idempotent_requests_are_sent_again_after_a_kept_alive_connection_failed() -> None:
    seen: list[tuple[int, bytes]] = []
    with _server(_drop_second_request(seen)) as (url, accepted), _client() as client:
        assert client.get(url + "/1").content == b"answer"
        assert client.get(url + "/2").content == b"answer"  # Sent again on a new connection.
    assert seen == [(0, b"GET /1 HTTP/1.1"), (0, b"GET /2 HTTP/1.1"), (1, b"GET /2 HTTP/1.1")]
    assert accepted == [0, 1]

    seen.clear()
    with _server(_drop_second_request(seen)) as (url, accepted), _client() as client:
        assert client.get(url + "/1").content == b"answer"
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(url + "/uploads", content=b"once only")
    assert seen == [(0, b"GET /1 HTTP/1.1"), (0, b"POST /uploads HTTP/1.1")]
    assert accepted == [0]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12, 13\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
        # Line breaks and control characters inside the head (a Set-Cookie carrying a bare LF
        # would be echoed by httpx's cookie jar into later requests to other hosts).
        (
            b"HTTP/1.1 200 OK\r\nSet-Cookie: s=a\n\nDELETE /v2/x/manifests/1 HTTP/1.1\nX: y\r\n"
            b"Content-Length: 0\r\n\r\n"
        ),
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\x1bb\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX A\x01: v\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\x00\x01\r\nContent-Length: 0\r\n\r\n",
        # Status codes outside 100-599.
        b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n",
        # Chunk sizes Python's int() would take but HTTP does not.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+0_5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"0" * 17
        + b"5\r\nhello\r\n0\r\n\r\n",
        # A transfer coding other than chunked alone would pass still-encoded bytes on.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 0\r\n\r\n",
        # Lengths too long for a body (and for int() when they have thousands of digits).
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 19 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        # Endless interim answers, endless trailers.
        b"HTTP/1.1 102 Processing\r\n\r\n" * 40 + _ok(b"late"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        + b"X-Trailer: t\r\n" * 6000
        + b"\r\n",
    ],
)
def test_malformed_answers_are_protocol_errors(answer: bytes) -> None:
    def handler(conn: socket.socket, _: int) -> None:
        _read_request(conn)
        conn.sendall(answer)
        conn.shutdown(socket.SHUT_WR)

    with (
        _server(handler) as (url, _accepted),
        _client() as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get(url + "/")


def test_a_refused_answer_closes_its_connection() -> None:
    closed = threading.Event()

    def handler(conn: socket.socket, _: int) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
        if conn.recv(1) == b"":  # The client closed its end.
            closed.set()

    with (
        _server(handler) as (url, _accepted),
        _client() as client,
        pytest.raises(httpx.RemoteProtocolError, match="Content-Length"),
    ):
        client.get(url + "/")
    assert closed.is_set()


def test_interim_answers_and_trailers_within_bounds_are_accepted() -> None:
    def handler(conn: socket.socket, _: int) -> None:
        _read_request(conn)
        conn.sendall(
            b"HTTP/1.1 102 Processing\r\n\r\n" * 5
            + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"5 ; name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\n"
            + b"X-Trailer: t\r\n" * 100
            + b"\r\n"
        )

    with _server(handler) as (url, _accepted), _client() as client:
        assert client.get(url + "/").content == b"hello0123456789"


def test_with_both_content_length_and_chunked_the_body_is_chunked_and_the_connection_closed() -> (
    None
):
    def handler(conn: socket.socket, number: int) -> None:
        _read_request(conn)
        if number == 0:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n"
            )
            _read_request(conn)  # A second request on this connection would be answered here.
            conn.sendall(b"HTTP/1.1 299 Smuggled\r\nContent-Length: 4\r\n\r\nEVIL")
        else:
            conn.sendall(_ok(b"real"))

    with _server(handler) as (url, accepted), _client() as client:
        assert client.get(url + "/1").content == b"hello"
        assert client.get(url + "/2").content == b"real"
    assert accepted == [0, 1]


@pytest.mark.parametrize(
    ("method", "headers", "cookies"),
    [
        ("GET", {"Authorization": "Bearer t\r\nX-Injected: 1\r\n\r\nDELETE /v2/x HTTP/1.1"}, {}),
        ("GET", {"X-A": "a\nb"}, {}),
        ("GET", {"X-A": "a\rb"}, {}),
        ("GET", {"X-A": "a\x00b"}, {}),
        ("GET", {"X-A": "a\x7fb"}, {}),
        ("GET", {"X A": "v"}, {}),
        ("GET", {"X-A\r\nX-Injected": "v"}, {}),
        ("GET", {"X-A:": "v"}, {}),
        ("GET", {}, {"session": "a\nDELETE /v2/x HTTP/1.1"}),  # Echoed by the cookie jar.
        ("GET / HTTP/1.1\r\nX", {}, {}),
        ("GE T", {}, {}),
        ("POST", {"Content-Length": "5"}, {}),  # The body has 3 bytes.
        ("POST", {"Content-Length": "2"}, {}),
        ("POST", {"Transfer-Encoding": "gzip"}, {}),
    ],
)
def test_requests_that_could_be_read_as_other_requests_are_refused_before_sending(
    method: str, headers: dict[str, str], cookies: dict[str, str]
) -> None:
    received: list[bytes] = []

    def handler(conn: socket.socket, _: int) -> None:
        while data := conn.recv(65536):
            received.append(data)
            conn.sendall(_ok(b"answered"))

    with _server(handler) as (url, _accepted), _client() as client:
        client.cookies.update(cookies)
        content = b"abc" if method == "POST" else None
        with pytest.raises(httpx.LocalProtocolError):
            client.request(method, url + "/v2/", headers=headers, content=content)
    assert received == []


def test_a_byte_body_declared_chunked_is_sent_chunked() -> None:
    received: list[tuple[bytes, bytes]] = []

    def handler(conn: socket.socket, _: int) -> None:
        received.append(_read_request(conn))
        conn.sendall(_ok(b""))

    with _server(handler) as (url, _accepted), _client() as client:
        request = client.build_request("POST", url + "/", content=b"framed")
        del request.headers["Content-Length"]
        request.headers["Transfer-Encoding"] = "chunked"
        assert client.send(request).status_code == 200
    [(head, body)] = received
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"framed"


def test_a_streamed_body_without_framing_is_refused() -> None:
    def handler(conn: socket.socket, _: int) -> None:
        _read_request(conn)
        conn.recv(65536)

    def pieces() -> Iterator[bytes]:
        yield b"GET /smuggled HTTP/1.1\r\n\r\n"

    with _server(handler) as (url, _accepted), _client() as client:
        request = client.build_request("POST", url + "/", content=pieces())
        del request.headers["Transfer-Encoding"]
        with pytest.raises(httpx.LocalProtocolError, match="framing"):
            client.send(request)


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for 127.0.0.1 and a client context trusting it."""
    root: Path = tmp_path_factory.mktemp("tls")
    ca = make_tls_certificates(root)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(root / "server.pem", root / "server.key")
    return server, ssl.create_default_context(cafile=str(ca))


def test_bytes_left_inside_a_tls_connection_make_it_unusable(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls_contexts

    def handler(conn: socket.socket, number: int) -> None:
        _read_request(conn)
        if number == 0:
            # Two TLS records: the head, then the body with a forged answer after it. The
            # client reads the head's record, then two bytes of the second: the forged answer
            # stays decrypted inside the TLS object, where polling the socket cannot see it.
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
            conn.sendall(b"okHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED")
            _read_request(conn)
        else:
            conn.sendall(_ok(b"real"))

    with (
        _server(handler, server_context) as (url, accepted),
        httpx.Client(transport=Http11Transport(client_context)) as client,
    ):
        assert client.get(url + "/1").content == b"ok"
        assert client.get(url + "/2").content == b"real"
    assert accepted == [0, 1]


def test_tls_connections_are_kept_alive(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls_contexts
    body = b"b" * (BODY_CHUNK_SIZE + 5)

    def handler(conn: socket.socket, _: int) -> None:
        while _read_request(conn)[0]:
            conn.sendall(_ok(body))

    with (
        _server(handler, server_context) as (url, accepted),
        httpx.Client(transport=Http11Transport(client_context)) as client,
    ):
        assert client.get(url + "/1").content == body
        assert client.get(url + "/2").content == body
    assert accepted == [0]


def test_timeouts_and_refused_connections_are_httpx_errors() -> None:
    release = threading.Event()

    def handler(conn: socket.socket, _: int) -> None:
        _read_request(conn)
        release.wait(5)

    with _server(handler) as (url, _accepted), _client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(url + "/slow")
        release.set()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with _client() as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/")


def test_tls_to_a_plain_server_fails_to_connect() -> None:
    def handler(conn: socket.socket, _: int) -> None:
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with (
        _server(handler) as (url, _accepted),
        _client() as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(url.replace("http://", "https://") + "/v2/")


def test_redirects_stay_behind_the_managers_allowlist() -> None:
    def handler(conn: socket.socket, _: int) -> None:
        _read_request(conn)
        conn.sendall(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/latest/\r\n"
            b"Content-Length: 0\r\n\r\n"
        )

    allowlist = RegistryAllowlist.parse(["127.0.0.1:*"])
    transport = AllowlistTransport(Http11Transport(ssl.create_default_context()), allowlist)
    with (
        _server(handler) as (url, accepted),
        httpx.Client(transport=transport, follow_redirects=True) as client,
        pytest.raises(RegistryNotAllowedError),
    ):
        client.get(url + "/v2/app/blobs/sha256:00")
    assert accepted == [0]


def test_an_answer_sent_before_the_whole_body_was_taken_is_returned() -> None:
    def handler(conn: socket.socket, number: int) -> None:
        if number == 0:
            conn.recv(65536)  # Part of the request only, then an early answer and close.
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\ndenied")
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        else:
            _read_request(conn)
            conn.sendall(_ok(b"next"))

    def big() -> Iterator[bytes]:
        for _ in range(64):
            yield b"\0" * BODY_CHUNK_SIZE

    with _server(handler) as (url, accepted), _client() as client:
        response = client.put(
            url + "/upload", content=big(), headers={"Content-Length": str(64 * BODY_CHUNK_SIZE)}
        )
        assert (response.status_code, response.content) == (401, b"denied")
        assert client.get(url + "/again").content == b"next"  # On a new connection.
    assert accepted == [0, 1]
