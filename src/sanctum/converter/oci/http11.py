"""A small HTTP/1.1 transport for httpx that moves large bodies without copying them in Python.

Why: a conversion moves every compressed layer twice (download and upload). httpx's default
transport (httpcore + h11) copies each received MiB about three times while holding the GIL
(into h11's receive buffer, out of it, into ``bytes``), and joins every sent chunk with its
framing; on a two-core machine those copies compete with the hashing and inflating threads
(ADR 0125). This transport reads a body with ``recv(n, MSG_WAITALL)`` straight into the
``bytes`` object handed to the caller (the kernel copies once, without the GIL), and sends body
chunks with ``sendall`` as they are.

It is an ordinary :class:`httpx.BaseTransport`: the httpx client still builds the requests,
follows redirects and handles cookies, so a wrapping transport (the manager's registry
allowlist, ADR 0076) sees and can refuse every request, redirects, upload locations and token
realms included. What it implements: HTTP/1.1 over TCP or TLS (certificate and host name
checked by the given :class:`ssl.SSLContext`), keep-alive connections pooled per origin,
``Content-Length``, ``chunked`` and close-delimited response bodies, ``chunked`` request
bodies, 1xx interim answers, and httpx's connect/read/write timeouts. Errors are raised as
httpx's own exceptions (``ConnectError``, ``ReadError``, ``RemoteProtocolError``, timeouts), so
callers' retry logic is the same as with httpx's transport. No proxies, no HTTP/2.

It is as strict as h11 where strictness is what keeps requests apart (ADR 0125, "Hardening"):
request methods and header names must be tokens and header values free of control characters
(no header can smuggle a second request, whatever a token or a cookie holds), response heads
with bare CR or LF, control characters, odd status codes, non-hex chunk sizes or unknown
transfer codings are refused, a TLS connection with unread bytes is never reused, and only
``GET``/``HEAD`` requests are sent again after a kept-alive connection failed.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from typing import Final, cast

import httpx

__all__ = ["BODY_CHUNK_SIZE", "Http11Transport"]

#: Largest body chunk handed out (the size a body is read in).
BODY_CHUNK_SIZE: Final = 1 << 20
#: Largest response head (status line and headers) accepted.
_MAX_HEAD: Final = 64 << 10
#: Bytes asked of the socket at a time while reading a head or chunked framing.
_HEAD_READ: Final = 16 << 10
#: Idle connections kept per origin.
_MAX_IDLE: Final = 16
#: Interim (1xx) answers accepted before the final one, and trailer bytes after a chunked body.
_MAX_INTERIM: Final = 32
_MAX_TRAILERS: Final = 64 << 10
#: Methods sent again on a new connection when a kept-alive one failed (idempotent, no body).
_REPLAYABLE: Final = frozenset({"GET", "HEAD"})
#: An RFC 9110 token: a method or a header name.
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Bytes a header value must not hold: control characters other than HTAB, and DEL.
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: Bytes a request target must not hold (it is visible ASCII, percent-encoded by httpx).
_BAD_TARGET: Final = re.compile(rb"[^\x21-\x7e]")
#: A status line: version, a status code from 100 to 599, an optional reason phrase.
_STATUS_LINE: Final = re.compile(
    rb"(HTTP/1\.[01]) ([1-5][0-9]{2})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?"
)
#: A chunk size line: at most 16 hex digits, then optional extensions (ignored).
_CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")
#: A Content-Length value (18 digits: far more than any body, and always a valid int).
_LENGTH: Final = re.compile(rb"[0-9]{1,18}")
_DEFAULT_PORTS: Final = {b"http": 80, b"https": 443}

Origin = tuple[bytes, str, int]


def _timeval(seconds: float | None) -> bytes:
    """Return a ``struct timeval`` for SO_RCVTIMEO/SO_SNDTIMEO (``None`` = wait forever).

    The kernel reads a zero ``timeval`` as "no timeout", so a timeout of zero becomes 1 µs.
    """
    if seconds is None:
        return struct.pack("ll", 0, 0)
    whole = int(max(seconds, 0))
    micros = int((max(seconds, 0) - whole) * 1e6)
    return struct.pack("ll", whole, micros if whole or micros else 1)


class _Connection:
    """One HTTP/1.1 connection (used by one request at a time).

    A plain TCP socket is kept in blocking mode with kernel timeouts (``SO_RCVTIMEO``), so a
    body read of ``n`` bytes is one ``recv(n, MSG_WAITALL)`` call without the GIL. A TLS socket
    keeps Python's timeout and is read with ``recv_into``.
    """

    def __init__(self, sock: socket.socket, origin: Origin) -> None:
        self.sock = sock
        self.origin = origin
        self.plain = not isinstance(sock, ssl.SSLSocket)
        self.buffer = bytearray()
        self._timeout: float | None = -1.0

    def set_timeout(self, seconds: float | None) -> None:
        """Apply the read and write timeout (``None`` = none) to the following calls."""
        if seconds == self._timeout:
            return
        self._timeout = seconds
        if self.plain:
            self.sock.settimeout(None)
            value = _timeval(seconds)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        else:
            self.sock.settimeout(seconds)

    def is_stale(self) -> bool:
        """Return whether an idle connection was closed (or sent something) meanwhile.

        Bytes already read from the socket count as well: those in :attr:`buffer` and those a
        TLS socket decrypted but did not hand out (a server may send a body and a forged next
        response in one TLS record, which polling the kernel socket does not see).
        """
        if self.buffer:
            return True
        if not self.plain:
            try:
                if cast("ssl.SSLSocket", self.sock).pending():
                    return True
            except (OSError, ValueError):
                return True
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        """Close the socket."""
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``.

        Raises:
            httpx.WriteTimeout: The peer did not take the data in time.
            httpx.WriteError: The connection failed.
        """
        try:
            self.sock.sendall(data)
        except (TimeoutError, BlockingIOError) as exc:
            raise httpx.WriteTimeout(f"sending timed out: {exc}") from exc
        except OSError as exc:
            raise httpx.WriteError(f"sending failed: {exc}") from exc

    def _recv(self, size: int) -> bytes:
        """Receive up to ``size`` bytes (at least one; ``b""`` at EOF).

        Raises:
            httpx.ReadTimeout: Nothing arrived in time.
            httpx.ReadError: The connection failed.
        """
        try:
            return self.sock.recv(size)
        except (TimeoutError, BlockingIOError) as exc:
            raise httpx.ReadTimeout(f"reading timed out: {exc}") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading failed: {exc}") from exc

    def read_some(self, size: int) -> bytes:
        """Return up to ``size`` buffered or received bytes (``b""`` at EOF).

        Raises:
            httpx.ReadTimeout: Nothing arrived in time.
            httpx.ReadError: The connection failed.
        """
        if self.buffer:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
            return data
        return self._recv(size)

    def read_exact(self, size: int) -> bytes:
        """Return exactly ``size`` bytes, fewer only when the peer closed the connection.

        Raises:
            httpx.ReadTimeout: The data did not arrive in time.
            httpx.ReadError: The connection failed.
        """
        parts: list[bytes] = []
        need = size
        if self.buffer:
            parts.append(self.read_some(need))
            need -= len(parts[0])
        while need > 0:
            if self.plain:
                try:
                    data = self.sock.recv(need, socket.MSG_WAITALL)
                except (TimeoutError, BlockingIOError) as exc:
                    raise httpx.ReadTimeout(f"reading timed out: {exc}") from exc
                except OSError as exc:
                    raise httpx.ReadError(f"reading failed: {exc}") from exc
            else:
                data = self._recv_tls(need)
            if not data:
                break
            parts.append(data)
            need -= len(data)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def _recv_tls(self, size: int) -> bytes:
        """Fill up to ``size`` bytes from a TLS socket (records of 16 KiB) with one copy.

        Raises:
            httpx.ReadTimeout: Nothing arrived in time.
            httpx.ReadError: The connection failed.
        """
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        try:
            while got < size:
                count = self.sock.recv_into(view[got:])
                if count == 0:
                    break
                got += count
        except (TimeoutError, BlockingIOError) as exc:
            raise httpx.ReadTimeout(f"reading timed out: {exc}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ReadError(f"reading failed: {exc}") from exc
        finally:
            view.release()
        return bytes(buf) if got == size else bytes(buf[:got])

    def read_line(self, what: str) -> bytes:
        """Return the next CRLF-terminated line without its CRLF.

        Raises:
            httpx.RemoteProtocolError: The line is too long or the connection ended first.
            httpx.ReadTimeout: The line did not arrive in time.
            httpx.ReadError: The connection failed.
        """
        return self.read_until(b"\r\n", what)

    def read_until(self, marker: bytes, what: str) -> bytes:
        """Return the bytes before ``marker`` (consumed too), reading as needed.

        Raises:
            httpx.RemoteProtocolError: Too long, or the connection ended first.
            httpx.ReadTimeout: The data did not arrive in time.
            httpx.ReadError: The connection failed.
        """
        start = 0
        while True:
            end = self.buffer.find(marker, start)
            if end >= 0:
                data = bytes(self.buffer[:end])
                del self.buffer[: end + len(marker)]
                return data
            if len(self.buffer) > _MAX_HEAD:
                raise httpx.RemoteProtocolError(f"the {what} is too long")
            start = max(0, len(self.buffer) - len(marker) + 1)
            data = self._recv(_HEAD_READ)
            if not data:
                raise httpx.RemoteProtocolError(
                    f"the server closed the connection before the end of the {what}"
                )
            self.buffer += data


def _parse_head(head: bytes) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Parse a response head into status, reason phrase, HTTP version and headers.

    Lines end with CRLF only: a bare CR or LF, or any other control character (HTAB aside),
    in the status line, a header name or a header value refuses the head, so no value can
    carry a line break into a later request (httpx's cookie jar echoes ``Set-Cookie``).

    Raises:
        httpx.RemoteProtocolError: The head is malformed.
    """
    lines = head.split(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        raise httpx.RemoteProtocolError("malformed status line in the response")
    version, status_text, reason = status_line.group(1, 2, 3)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        value = value.strip(b" \t")
        if not sep or _TOKEN.fullmatch(name) is None or _BAD_VALUE.search(value) is not None:
            raise httpx.RemoteProtocolError("malformed header line in the response")
        headers.append((name, value))
    return int(status_text), reason or b"", version, headers


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


class Http11Transport(httpx.BaseTransport):
    """An httpx transport speaking HTTP/1.1 itself, for large streamed bodies (see the module).

    Thread-safe: any number of requests may run at once, each on its own connection.
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        """Use ``ssl_context`` (which checks certificates) for ``https`` URLs."""
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _origin(self, url: httpx.URL) -> Origin:
        scheme = url.raw_scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        host = url.raw_host.decode("ascii")  # The IDNA (ASCII) form, for DNS and SNI.
        if not host:
            raise httpx.UnsupportedProtocol("the URL has no host")
        return scheme, host, url.port or _DEFAULT_PORTS[scheme]

    def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        """Open a new connection.

        Raises:
            httpx.ConnectTimeout: It was not established in time.
            httpx.ConnectError: It failed (TLS failures included).
        """
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == b"https":
                sock = self._ssl_context.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(f"the TLS handshake with {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise httpx.ConnectError(f"TLS with {host}:{port} failed: {exc}") from exc
        return _Connection(sock, origin)

    def _take_idle(self, origin: Origin) -> _Connection | None:
        while True:
            with self._lock:
                pool = self._idle.get(origin)
                if not pool:
                    return None
                connection = pool.pop()
            if not connection.is_stale():
                return connection
            connection.close()

    def _release(self, connection: _Connection) -> None:
        """Put a connection whose last response was read completely back in the pool."""
        with self._lock:
            pool = self._idle.setdefault(connection.origin, [])
            if not self._closed and len(pool) < _MAX_IDLE:
                pool.append(connection)
                return
        connection.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response with a streamed body.

        Raises:
            httpx.TransportError: Connecting, sending or reading the head failed (the
                ``ConnectError``/``ReadError``/``WriteError``/``RemoteProtocolError`` family
                and timeouts).
        """
        origin = self._origin(request.url)
        timeouts = request.extensions.get("timeout", {})
        # Only an idempotent request is sent twice: the server may have acted on the first.
        replayable = isinstance(request.stream, httpx.ByteStream) and request.method in _REPLAYABLE
        connection = self._take_idle(origin)
        reused = connection is not None
        while True:
            if connection is None:
                connection = self._connect(origin, timeouts.get("connect"))
            write_error: httpx.WriteError | None = None
            try:
                connection.set_timeout(timeouts.get("write"))
                try:
                    self._send(connection, request)
                except httpx.WriteError as exc:
                    # A server may answer (401, 413...) and close before taking the whole
                    # body: read its answer, and report the write error only without one.
                    write_error = exc
                connection.set_timeout(timeouts.get("read"))
                try:
                    status, reason, version, headers = self._read_head(connection)
                except httpx.TransportError:
                    if write_error is not None:
                        raise write_error from None
                    raise
                break
            except (httpx.TransportError, OSError) as exc:
                connection.close()
                # A kept-alive connection the server closed meanwhile: once more on a new one.
                stale = isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | OSError)
                if reused and replayable and stale:
                    connection, reused = None, False
                    continue
                if isinstance(exc, OSError):
                    raise httpx.ReadError(str(exc)) from exc
                raise
            except BaseException:
                connection.close()
                raise
        # A request cut short leaves the connection in an unknown state: it is not reused.
        try:
            stream = _ResponseBody(
                self, connection, request, (status, version, headers), reusable=write_error is None
            )
        except BaseException:
            connection.close()
            raise
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    @staticmethod
    def _request_head(request: httpx.Request) -> tuple[bytes, int | None, bool]:
        """Return the request head, its declared body length (or None) and whether it is chunked.

        Raises:
            httpx.LocalProtocolError: The method, target or a header could not be sent as it
                is (not a token, a control character in a value, conflicting body framing).
        """
        method = request.method.encode("ascii", "replace")
        target = request.url.raw_path or b"/"
        if _TOKEN.fullmatch(method) is None:
            raise httpx.LocalProtocolError(f"invalid request method {request.method!r}")
        if _BAD_TARGET.search(target) is not None:
            raise httpx.LocalProtocolError("the request target holds invalid characters")
        lines = [method + b" " + target + b" HTTP/1.1"]
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for name, value in request.headers.raw:
            if _TOKEN.fullmatch(name) is None:
                raise httpx.LocalProtocolError(f"invalid request header name {name!r}")
            if _BAD_VALUE.search(value) is not None:
                # The value is not shown: it may be a credential.
                raise httpx.LocalProtocolError(
                    f"the value of the request header {name.decode('ascii')!r} holds a "
                    "control character"
                )
            lower = name.lower()
            if lower == b"content-length":
                lengths.append(value.strip(b" \t"))
            elif lower == b"transfer-encoding":
                codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
            lines.append(name + b": " + value)
        if codings and (codings != [b"chunked"] or lengths):
            raise httpx.LocalProtocolError(
                "a request Transfer-Encoding other than chunked alone, or with a Content-Length"
            )
        if lengths and (len(lengths) != 1 or _LENGTH.fullmatch(lengths[0]) is None):
            raise httpx.LocalProtocolError("invalid request Content-Length")
        declared = int(lengths[0]) if lengths else None
        return b"\r\n".join(lines) + b"\r\n\r\n", declared, bool(codings)

    @staticmethod
    def _send(connection: _Connection, request: httpx.Request) -> None:
        """Send ``request``: its head, then its body framed as the head declares.

        Raises:
            httpx.LocalProtocolError: The request cannot be sent as it is (see
                :meth:`_request_head`), or its body does not match its declared length.
            httpx.WriteTimeout: The server did not take the data in time.
            httpx.WriteError: The connection failed.
        """
        head, declared, chunked = Http11Transport._request_head(request)
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            body = b"".join(stream)
            if chunked:
                body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
            elif len(body) != (declared or 0):
                raise httpx.LocalProtocolError(
                    f"the request body has {len(body)} bytes, its Content-Length says {declared}"
                )
            # A small body (a manifest, a token form) goes out with the head, in one segment.
            connection.send(head + body if len(body) <= _HEAD_READ else head)
            if len(body) > _HEAD_READ:
                connection.send(body)
            return
        left = declared
        connection.send(head)
        if not isinstance(stream, httpx.SyncByteStream):  # pragma: no cover (httpx checks)
            raise httpx.LocalProtocolError("an asynchronous request body")
        for chunk in stream:
            if not chunk:
                continue
            if left is None and not chunked:
                raise httpx.LocalProtocolError(
                    "a request body without a Content-Length or chunked framing"
                )
            if chunked:
                connection.send(b"%x\r\n" % len(chunk))
                connection.send(chunk)
                connection.send(b"\r\n")
                continue
            if left is not None:
                left -= len(chunk)
                if left < 0:
                    raise httpx.LocalProtocolError("the request body is longer than its length")
            connection.send(chunk)
        if chunked:
            connection.send(b"0\r\n\r\n")
        elif left:
            raise httpx.LocalProtocolError("the request body is shorter than its length")

    @staticmethod
    def _read_head(
        connection: _Connection,
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        """Read the final response head, skipping (a bounded number of) interim answers.

        Raises:
            httpx.RemoteProtocolError: The head is malformed, or too many interim answers.
            httpx.ReadTimeout: It did not arrive in time.
            httpx.ReadError: The connection failed.
        """
        for _ in range(_MAX_INTERIM + 1):
            status, reason, version, headers = _parse_head(
                connection.read_until(b"\r\n\r\n", "response head")
            )
            if not 100 <= status < 200 or status == 101:
                return status, reason, version, headers
        raise httpx.RemoteProtocolError("too many interim (1xx) answers in the response")

    def close(self) -> None:
        """Close the idle connections (connections in use close with their responses)."""
        with self._lock:
            self._closed = True
            pools = list(self._idle.values())
            self._idle.clear()
        for pool in pools:
            for connection in pool:
                connection.close()


class _ResponseBody(httpx.SyncByteStream):
    """A response body read from its connection as it is iterated.

    The connection returns to its pool once the body was read to its end (when the framing
    allows reuse), and is closed when the response is closed before that.
    """

    def __init__(
        self,
        transport: Http11Transport,
        connection: _Connection,
        request: httpx.Request,
        head: tuple[int, bytes, list[tuple[bytes, bytes]]],
        *,
        reusable: bool,
    ) -> None:
        """Read the body of the response ``head`` (status, version, headers) to ``request``.

        Raises:
            httpx.RemoteProtocolError: The body's framing headers are invalid.
        """
        status, version, headers = head
        self._transport = transport
        self._connection: _Connection | None = connection
        te_values = _header(headers, b"transfer-encoding")
        codings = [c.strip(b" \t") for c in b",".join(te_values).lower().split(b",")]
        lengths = {v.strip() for v in b",".join(_header(headers, b"content-length")).split(b",")}
        lengths.discard(b"")
        tokens = {t.strip() for t in b",".join(_header(headers, b"connection")).lower().split(b",")}
        self._reusable = (
            reusable
            and b"close" not in tokens
            and (version == b"HTTP/1.1" or b"keep-alive" in tokens)
        )
        if request.headers.get("connection", "").lower() == "close" or status == 101:
            self._reusable = False
        self._length: int | None = None
        self._chunked = False
        if request.method == "HEAD" or status in {204, 304}:
            self._length = 0
        elif te_values:
            # Only "chunked" alone: another coding would pass still-encoded bytes on as the body.
            if codings != [b"chunked"]:
                connection.close()
                raise httpx.RemoteProtocolError("unsupported Transfer-Encoding in the response")
            self._chunked = True
            if lengths:
                # Both framings: chunked wins, and the connection is closed after (RFC 9112 6.3).
                self._reusable = False
        elif lengths:
            if len(lengths) != 1 or _LENGTH.fullmatch(next(iter(lengths))) is None:
                connection.close()
                raise httpx.RemoteProtocolError("invalid Content-Length in the response")
            self._length = int(next(iter(lengths)))
        else:
            self._reusable = False  # The body ends when the server closes the connection.
        if self._length == 0:
            self._finish()

    def _finish(self) -> None:
        """The body was read to its end: give the connection back (or close it)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._reusable:
            self._transport._release(connection)  # noqa: SLF001 (the transport's own pool)
        else:
            connection.close()

    def __iter__(self) -> Iterator[bytes]:
        """Yield the body in chunks of up to :data:`BODY_CHUNK_SIZE` bytes.

        Raises:
            httpx.RemoteProtocolError: The connection ended before the body did, or the
                chunked framing is malformed.
            httpx.ReadTimeout: The data did not arrive in time.
            httpx.ReadError: The connection failed.
        """
        connection = self._connection
        if connection is None:
            return
        if self._chunked:
            yield from self._iter_chunked(connection)
        elif self._length is not None:
            left = self._length
            while left > 0:
                data = connection.read_exact(min(left, BODY_CHUNK_SIZE))
                if not data:
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body: "
                        f"received {self._length - left} bytes, expected {self._length}"
                    )
                left -= len(data)
                yield data
        else:
            while data := connection.read_exact(BODY_CHUNK_SIZE):
                yield data
        self._finish()

    @staticmethod
    def _iter_chunked(connection: _Connection) -> Iterator[bytes]:
        """Yield the data of a chunked body (strict hex sizes, bounded trailers).

        Raises:
            httpx.RemoteProtocolError: The framing is malformed or the trailers too long.
            httpx.ReadTimeout: The data did not arrive in time.
            httpx.ReadError: The connection failed.
        """
        while True:
            size_line = _CHUNK_LINE.fullmatch(connection.read_line("chunk size line"))
            if size_line is None:
                raise httpx.RemoteProtocolError("malformed chunk size in the response")
            size = int(size_line.group(1), 16)
            if size == 0:
                trailers = 0
                while trailer := connection.read_line("trailer"):
                    trailers += len(trailer) + 2
                    if trailers > _MAX_TRAILERS:
                        raise httpx.RemoteProtocolError("the trailers of the response are too long")
                return
            while size > 0:
                data = connection.read_exact(min(size, BODY_CHUNK_SIZE))
                if not data:
                    raise httpx.RemoteProtocolError("the connection ended inside a chunk")
                size -= len(data)
                yield data
            if connection.read_line("chunk end"):
                raise httpx.RemoteProtocolError("malformed chunk end in the response")

    def close(self) -> None:
        """Close the connection unless the body was read to its end."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
