"""A loopback HTTP server that answers like Intel's PCS API v4 (and a PCCS) from real files.

It serves the files of ``tests/vectors/pcs/<site>/`` under the PCS v4 paths with the PCS headers
(URL-encoded PEM issuer chains, ``Request-ID``), plus the root CA CRL both where Intel publishes
it (``/IntelSGXRootCA.der``, DER) and where a PCCS serves it (``/sgx/certification/v4/rootcacrl``,
hex). It listens on 127.0.0.1 on a free port, records every request, and can be told to fail a
path with given statuses first, so tests exercise retries, outages and recovery for real.
"""

from __future__ import annotations

import socket
import ssl
import threading
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "pcs"

SITES = {
    # site folder: (tee, fmspc)
    "sgx-00606a": ("sgx", "00606a000000"),
    "tdx-00806f050000": ("tdx", "00806f050000"),
}


@dataclass
class Route:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


def _header_chain(path: Path) -> str:
    return urllib.parse.quote(path.read_text(), safe="")


def site_routes(site: str) -> dict[str, Route]:
    tee, fmspc = SITES[site]
    folder = VECTORS / site
    signing = _header_chain(folder / "tcb-signing-chain.pem")
    root_crl = (folder / "root-ca-crl.der").read_bytes()
    json_type = {"Content-Type": "application/json"}
    return {
        f"/{tee}/certification/v4/tcb?fmspc={fmspc}": Route(
            (folder / "tcb-info.json").read_bytes(),
            {**json_type, "TCB-Info-Issuer-Chain": signing},
        ),
        f"/{tee}/certification/v4/qe/identity": Route(
            (folder / "qe-identity.json").read_bytes(),
            {**json_type, "SGX-Enclave-Identity-Issuer-Chain": signing},
        ),
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der": Route(
            (folder / "pck-crl-platform.der").read_bytes(),
            {
                "Content-Type": "application/pkix-crl",
                "SGX-PCK-CRL-Issuer-Chain": _header_chain(folder / "pck-crl-issuer-chain.pem"),
            },
        ),
        "/IntelSGXRootCA.der": Route(root_crl, {"Content-Type": "application/pkix-crl"}),
        "/sgx/certification/v4/rootcacrl": Route(
            root_crl.hex().encode(), {"Content-Type": "application/x-pem-file"}
        ),
    }


class LoopbackPcs:
    """The server; use as a context manager or call start/stop."""

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.tls = tls
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.failures: dict[str, deque[Route]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def fail(self, path: str, *routes: Route) -> None:
        """Answer the next requests of ``path`` with ``routes`` before the real one."""
        self.failures.setdefault(path, deque()).extend(routes)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def start(self) -> LoopbackPcs:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                # Headers and body are separate writes: avoid Nagle + delayed-ACK stalls.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers.items())))
                queued = owner.failures.get(self.path)
                route = queued.popleft() if queued else owner.routes.get(self.path)
                if route is None:
                    route = Route(b'{"error":"not found"}', status=404)
                self.send_response(route.status)
                self.send_header("Request-ID", f"req-{len(owner.requests)}")
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *_args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
