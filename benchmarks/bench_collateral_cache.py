"""How much the collateral cache saves: PCS fetch over loopback HTTP vs memory and disk hits.

Serves the real PCS-format files of tests/vectors/pcs/sgx-00606a on 127.0.0.1 and measures, in
the same run: a full fetch (4 HTTP requests + parsing), a fetch answered from the in-memory cache,
and one answered from the on-disk cache by a fresh client (a restarted manager). Prints mean
times and the speed-up against the network baseline.
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from sanctum.platforms.pcs import CachePolicy, PcsClient, PcsEndpoints, PcsRequest

SITE = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "pcs" / "sgx-00606a"
NOW = datetime.fromtimestamp(1756530546, UTC)
REQUEST = PcsRequest(tee="sgx", fmspc="00606a000000", ca="platform")
ROUNDS = 200


def _routes() -> dict[str, tuple[bytes, dict[str, str]]]:
    signing = urllib.parse.quote((SITE / "tcb-signing-chain.pem").read_text(), safe="")
    pck_chain = urllib.parse.quote((SITE / "pck-crl-issuer-chain.pem").read_text(), safe="")
    return {
        "/sgx/certification/v4/tcb?fmspc=00606a000000": (
            (SITE / "tcb-info.json").read_bytes(),
            {"TCB-Info-Issuer-Chain": signing},
        ),
        "/sgx/certification/v4/qe/identity": (
            (SITE / "qe-identity.json").read_bytes(),
            {"SGX-Enclave-Identity-Issuer-Chain": signing},
        ),
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der": (
            (SITE / "pck-crl-platform.der").read_bytes(),
            {"SGX-PCK-CRL-Issuer-Chain": pck_chain},
        ),
        "/sgx/certification/v4/rootcacrl": (
            (SITE / "root-ca-crl.der").read_bytes().hex().encode(),
            {},
        ),
    }


def _serve() -> ThreadingHTTPServer:
    routes = _routes()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's
            # algorithm and delayed ACKs add ~40 ms per response and the baseline is meaningless.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            body, headers = routes[self.path]
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _time(action: Callable[[int], object], rounds: int = ROUNDS) -> float:
    samples = []
    for index in range(rounds):
        start = time.perf_counter()
        action(index)
        samples.append(time.perf_counter() - start)
    return statistics.mean(samples)


def main() -> None:
    server = _serve()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    no_cache = CachePolicy(max_age=timedelta(0))
    with (
        tempfile.TemporaryDirectory() as directory,
        PcsClient(PcsEndpoints(url), cache_policy=no_cache) as network,
        PcsClient(PcsEndpoints(url), cache_dir=Path(directory)) as cached,
    ):
        network_s = _time(lambda _i: network.fetch(REQUEST, now=NOW))
        cached.fetch(REQUEST, now=NOW)
        memory_s = _time(lambda _i: cached.fetch(REQUEST, now=NOW))

        shared_http = httpx.Client()

        def disk(_i: int) -> None:
            # A new client (empty memory cache) reading the disk cache, as after a restart; the
            # HTTP connection pool is shared so its TLS-context set-up is not measured.
            fresh = PcsClient(PcsEndpoints(url), cache_dir=Path(directory), http=shared_http)
            fresh.fetch(REQUEST, now=NOW)

        disk_s = _time(disk)
        shared_http.close()
    server.shutdown()
    print(f"rounds: {ROUNDS}")
    print(f"{'network fetch (4 requests over loopback)':42s} {network_s * 1e3:8.3f} ms  (baseline)")
    for label, seconds in (("memory cache hit", memory_s), ("disk cache hit (new client)", disk_s)):
        print(f"{label:42s} {seconds * 1e3:8.3f} ms  ({network_s / seconds:6.1f}x faster)")


if __name__ == "__main__":
    main()
