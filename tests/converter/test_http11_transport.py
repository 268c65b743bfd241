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

import httpx
import pytest

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
def _server(handler: Handler) -> Iterator[tuple[str, list[int]]]:
    """Serve ``handler(connection, number)`` for every accepted connection; yield the URL."""
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
            accepted.append(len(accepted))
            with conn, suppress(OSError):
                handler(conn, len(accepted) - 1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        stop.set()
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
        assert client.post(url + "/2", content=b"replayable").content == b"once"
    assert accepted == [0, 1]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12, 13\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
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
