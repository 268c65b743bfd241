"""Complete attestations per second against one manager process over HTTPS on loopback.

One attestation = ``POST /v1/attest/challenge`` + ``POST /v1/attest`` (quote verification,
binding, policy, certificate issuance, secret sealing, token signing, audit), made by a
simulated workload. The manager is a real ``sanctum manager serve`` subprocess (SQLite by
default, or ``--database-url``); the client threads run in this process. Workload keys and
CSRs are made before timing; the quote is made after the challenge (it binds the nonce), and
its cost is excluded from the latency (it happens in the workload, not in the manager).

Printed: attestations/s, p50/p95/p99 latency of the two requests, the baseline of the same
transport (``GET /healthz`` round trips/s over the same HTTPS connections) and the ratio, and
a cProfile summary of the attestation handler run in-process (where the server's time goes).

Run: ``.venv/bin/python benchmarks/bench_attest.py [--count 1000] [--concurrency 8]``.
Goal (issue [E]): at least 300 attestations/s with p99 under 50 ms on SQLite, 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import datetime as dt
import hashlib
import io
import os
import pstats
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from sanctum.manager.services.attestation import wire_collateral
from sanctum.platforms.simulated import (
    SgxIdentity,
    SimulatedPlatform,
    load_or_create_simulation_pki,
)
from sanctum.protocol.workload import build_csr, generate_workload_key, workload_report_data

PASSWORD = "bench-bootstrap-password-0123"
APP = "bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    env.update(
        SANCTUM_MANAGER_PROFILE="dev",
        SANCTUM_MANAGER_BOOTSTRAP_PASSWORD=PASSWORD,
        SANCTUM_MANAGER_BOOTSTRAP_ADMIN_EMAIL="admin@example.org",
        SANCTUM_MANAGER_UNSAFE_FAST_PASSWORD_HASHING="true",
        SANCTUM_MANAGER_SIMULATION_ENABLED="true",
        SANCTUM_MANAGER_SIMULATION_ACCOUNTS='["default"]',
        SANCTUM_MANAGER_SIMULATION_PKI_DIR=str(data_dir / "simulation"),
        SANCTUM_MANAGER_ATTEST_RATE_PER_SECOND="1000000",
        SANCTUM_MANAGER_ATTEST_RATE_BURST="1000000",
    )
    if database_url:
        env["SANCTUM_MANAGER_DATABASE_URL"] = database_url
    return env


class Manager:
    """A ``sanctum manager serve`` subprocess over HTTPS."""

    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca = data_dir / "tls" / "ca.pem"
        self.log = data_dir / "manager.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sanctum",
                "manager",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
            ],
            env=_env(data_dir, database_url),
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: an undrained pipe would block the server's logging.
            stderr=self.log.open("w"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the manager exited: {self.log.read_text()[-2000:]}")
            if self.ca.is_file():
                try:
                    if httpx.get(f"{self.url}/readyz", verify=self.context(), timeout=2).is_success:
                        return
                except (httpx.HTTPError, ssl.SSLError):  # Not listening, or the CA half-written.
                    pass
            time.sleep(0.1)
        raise SystemExit("the manager did not become ready")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.context(), timeout=30)

    def cpu_seconds(self) -> float:
        """Return the CPU time (user + system) the manager process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _setup(http: httpx.Client, platform: SimulatedPlatform) -> None:
    """Create the app, a second administrator to approve, the build; approve everything."""
    admin = http.post(
        "/v1/auth/token", json={"email": "admin@example.org", "password": PASSWORD}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {admin}"}
    account = http.get("/v1/accounts", headers=headers).json()[0]["id"]
    base = f"/v1/accounts/{account}"
    invited = http.post(
        f"{base}/users",
        json={"email": "approver@example.org", "name": "Approver", "role": "editor"},
        headers=headers,
    ).json()
    http.post(
        "/v1/invitations/accept",
        json={"token": invited["invitation_token"], "password": PASSWORD + "-approver"},
    ).raise_for_status()
    approver = http.post(
        "/v1/auth/token",
        json={"email": "approver@example.org", "password": PASSWORD + "-approver"},
    ).json()["access_token"]
    approve = {"Authorization": f"Bearer {approver}"}
    created = http.post(
        f"{base}/apps",
        json={
            "name": APP,
            "domains": ["bench.demo.local"],
            "secrets": {"DB_PASSWORD": {"value": "hunter2"}},
            "policy": {"unsafe_allow_simulated": True},
        },
        headers=headers,
    )
    created.raise_for_status()
    tasks = [t["id"] for t in created.json()["tasks"]]
    identity = platform.identity
    assert isinstance(identity, SgxIdentity)
    build = http.post(
        f"{base}/builds",
        json={"app": APP, "measurement": identity.mr_enclave.hex(), "simulated": True},
        headers=headers,
    )
    build.raise_for_status()
    tasks.append(build.json()["task"]["id"])
    for task in tasks:
        http.post(f"{base}/tasks/{task}/approve", headers=approve).raise_for_status()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _attest_once(
    http: httpx.Client,
    platform: SimulatedPlatform,
    collateral: dict[str, Any],
    key: Any,
    csr: str,
) -> float:
    started = time.perf_counter()
    response = http.post("/v1/attest/challenge")
    response.raise_for_status()
    spent = time.perf_counter() - started
    nonce = base64.b64decode(response.json()["nonce"])
    quote = platform.quote(workload_report_data(nonce, key))  # In the workload: not timed.
    body = {
        "app": APP,
        "quote": base64.b64encode(quote).decode(),
        "csr": csr,
        "nonce": base64.b64encode(nonce).decode(),
        "collateral": collateral,
    }
    started = time.perf_counter()
    answer = http.post("/v1/attest", json=body)
    spent += time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"attestation refused: {answer.text}")
    return spent


def _run_parallel(
    count: int, concurrency: int, make: Callable[[], httpx.Client], work: Callable[..., float]
) -> tuple[float, list[float]]:
    clients = [make() for _ in range(concurrency)]
    latencies: list[float] = []
    lock = threading.Lock()
    per_worker = [
        count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)
    ]

    def worker(index: int) -> None:
        local = [work(clients[index], index, n) for n in range(per_worker[index])]
        with lock:
            latencies.extend(local)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return elapsed, latencies


def _profile_in_process(platform: SimulatedPlatform, pki_dir: Path, count: int) -> str:
    """Run ``count`` challenge + attest service calls in this thread under cProfile.

    This is the work of the two handlers without HTTP, TLS and FastAPI (which the baseline
    above measures), so the profile shows where the manager's own time goes.
    """
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from sanctum.manager.app import create_app  # noqa: PLC0415
    from sanctum.manager.secretbox import LocalKeyProvider  # noqa: PLC0415
    from sanctum.manager.services import attestation  # noqa: PLC0415
    from sanctum.manager.services.context import ServiceContext  # noqa: PLC0415
    from sanctum.manager.settings import ManagerSettings  # noqa: PLC0415
    from sanctum.protocol.messages import AttestRequest  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="sanctum-bench-profile-") as tmp:
        settings = ManagerSettings(
            profile="dev",
            data_dir=Path(tmp),
            bootstrap_password=PASSWORD,  # type: ignore[arg-type]
            bootstrap_admin_email="admin@example.org",
            unsafe_fast_password_hashing=True,
            insecure_http=True,
            simulation_enabled=True,
            simulation_accounts=("default",),
            simulation_pki_dir=pki_dir,
        )
        app = create_app(settings, key_provider=LocalKeyProvider(os.urandom(32)))
        with TestClient(app) as client:
            _setup(client, platform)
        runtime = app.state.runtime
        att = app.state.attestation
        collateral = wire_collateral(platform.collateral()).model_dump(mode="json")
        keys = [generate_workload_key() for _ in range(count)]
        csrs = [build_csr(k, common_name="w") for k in keys]
        profiler = cProfile.Profile()

        def once(key: Any, csr: str, profile: bool) -> None:
            if profile:
                profiler.enable()
            with runtime.db.transaction() as session:
                nonce = attestation.issue_challenge(session, att, runtime.clock.now()).nonce
            if profile:
                profiler.disable()
            quote = platform.quote(workload_report_data(nonce, key))
            request = AttestRequest.model_validate(
                {
                    "app": APP,
                    "quote": base64.b64encode(quote).decode(),
                    "csr": csr,
                    "nonce": base64.b64encode(nonce).decode(),
                    "collateral": collateral,
                }
            )
            if profile:
                profiler.enable()
            with runtime.db.transaction() as session:
                ctx = ServiceContext(
                    session=session,
                    now=runtime.clock.now(),
                    actor=attestation.workload_actor(None, APP),
                    runtime=runtime,
                    source_address="127.0.0.1",
                )
                attestation.attest(ctx, att, request)
            if profile:
                profiler.disable()

        started = time.perf_counter()
        for key, csr in zip(keys, csrs, strict=True):
            once(key, csr, profile=False)
        elapsed = time.perf_counter() - started
        for key, csr in zip(keys, csrs, strict=True):
            once(key, csr, profile=True)
        runtime.db.dispose()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    print(
        f"in-process service calls: {count / elapsed:.1f} attestations/s "
        "(no HTTP, one thread, no profiler)"
    )
    stats.sort_stats("cumulative").print_stats(r"sanctum/(manager|attestation|protocol)", 30)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp dir.")
    parser.add_argument("--profile-count", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sanctum-bench-attest-") as tmp:
        data_dir = Path(tmp)
        now = dt.datetime.now(dt.UTC)
        pki = load_or_create_simulation_pki(data_dir / "simulation", now=now)
        platform = SimulatedPlatform(
            pki,
            tee="sgx",
            identity=SgxIdentity(mr_enclave=hashlib.sha256(b"bench").digest()),
            now=now,
            seed=b"bench",
        )
        manager = Manager(data_dir, args.database_url)
        try:
            with manager.client() as http:
                _setup(http, platform)
            collateral = wire_collateral(platform.collateral(now=now)).model_dump(mode="json")
            material = [
                (key, build_csr(key, common_name="w"))
                for key in (generate_workload_key() for _ in range(args.count))
            ]
            quote_started = time.perf_counter()
            for key, _csr in material[:50]:
                platform.quote(workload_report_data(os.urandom(32), key))
            quote_ms = (time.perf_counter() - quote_started) / 50 * 1000

            # Warm up (connections, caches), then measure.
            _run_parallel(
                args.concurrency * 4,
                args.concurrency,
                manager.client,
                lambda c, i, n: _attest_once(
                    c, platform, collateral, *material[(i * 7 + n) % len(material)]
                ),
            )

            def attest(client: httpx.Client, index: int, n: int) -> float:
                key, csr = material[(n * args.concurrency + index) % len(material)]
                return _attest_once(client, platform, collateral, key, csr)

            cpu_before = manager.cpu_seconds()
            elapsed, latencies = _run_parallel(args.count, args.concurrency, manager.client, attest)
            attest_cpu = manager.cpu_seconds() - cpu_before

            def health(client: httpx.Client, _index: int, _n: int) -> float:
                started = time.perf_counter()
                client.get("/healthz").raise_for_status()
                return time.perf_counter() - started

            cpu_before = manager.cpu_seconds()
            base_elapsed, _ = _run_parallel(args.count, args.concurrency, manager.client, health)
            health_cpu = manager.cpu_seconds() - cpu_before
        finally:
            manager.stop()
        rate = args.count / elapsed
        baseline = args.count / base_elapsed
        print(f"backend              {args.database_url or 'sqlite (temp file)'}")
        print(f"cores                {os.cpu_count()}, concurrency {args.concurrency}")
        print(f"attestations         {args.count} in {elapsed:.2f} s")
        print(f"attestations/s       {rate:.1f}   (goal >= 300)")
        print(
            "latency ms           "
            f"p50 {statistics.median(latencies) * 1000:.1f}  "
            f"p95 {_percentile(latencies, 0.95) * 1000:.1f}  "
            f"p99 {_percentile(latencies, 0.99) * 1000:.1f}   (goal p99 < 50)"
        )
        print(f"baseline /healthz/s  {baseline:.1f}   ratio attest/healthz {rate / baseline:.3f}")
        print(f"workload quote ms    {quote_ms:.2f} (client side, not in the latency)")
        # CPU time of the manager process: what an attestation costs the server, much less
        # sensitive to other load on the machine than the rate.
        print(
            f"manager CPU ms       {attest_cpu / args.count * 1000:.2f} per attestation, "
            f"{health_cpu / args.count * 1000:.2f} per /healthz "
            f"(load average {os.getloadavg()[0]:.2f})"
        )
        print()
        print(f"cProfile of {args.profile_count} sequential attestations in-process:")
        print(_profile_in_process(platform, data_dir / "simulation", args.profile_count))


if __name__ == "__main__":
    main()
