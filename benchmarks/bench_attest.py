"""Complete attestations per second against one manager process over HTTPS on loopback.

One attestation = ``POST /v1/attest/challenge`` + ``POST /v1/attest`` (quote verification,
binding, policy, certificate issuance, secret sealing, token signing, audit), made by a
simulated workload. The manager is a real ``sanctum manager serve`` subprocess (SQLite by
default, or ``--database-url``). The load generator is a separate process (so that it does not
share the benchmark's interpreter): asyncio over keep-alive HTTPS connections with a minimal
HTTP/1.1 client, which costs the machine much less CPU per request than a general-purpose
client, leaving the cores to the server. Workload keys, CSRs and the constant part of the
request bodies are made before timing; the quote binds the fresh nonce, so it is made per
attestation, after the challenge, and excluded from the latency (it happens in the workload,
not in the manager).

Printed per round: attestations/s, p50/p95/p99 latency of the two requests, ``GET /healthz``
round trips/s over the same connections (the transport's baseline) and the ratio, the CPU the
manager and the load generator spent per attestation (much less sensitive to other load on
the machine than the rate), and the load average. Several rounds show the spread.

``--profile`` samples the manager while it serves the attestations (py-spy, GIL-holding
thread only, when py-spy is installed) and prints where its CPU goes by component; without
py-spy it profiles the service calls in-process with cProfile instead.

Run: ``.venv/bin/python benchmarks/bench_attest.py [--count 2000] [--concurrency 4]
[--rounds 3] [--profile]``.
Goal (issue [E]): at least 300 attestations/s with p99 under 50 ms on SQLite, 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import cProfile
import datetime as dt
import hashlib
import io
import json
import os
import pstats
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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
SEED = b"bench"


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


def _platform(pki_dir: Path, now: dt.datetime) -> SimulatedPlatform:
    return SimulatedPlatform(
        load_or_create_simulation_pki(pki_dir, now=now),
        tee="sgx",
        identity=SgxIdentity(mr_enclave=hashlib.sha256(SEED).digest()),
        now=now,
        seed=SEED,
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- The load generator (its own process) --------------------------------------------------------


class _Connection:
    """One keep-alive HTTPS connection speaking just enough HTTP/1.1 for this benchmark."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, method: bytes, path: bytes, body: bytes = b"") -> tuple[int, bytes]:
        self.writer.write(
            b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (method, path, len(body), body)
        )
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = -1
        while True:
            line = await self.reader.readline()
            if line in {b"\r\n", b""}:
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise SystemExit("a response without Content-Length")
        return status, await self.reader.readexactly(length)


@dataclass(frozen=True)
class LoadConfig:
    """What the load generator process needs (picklable)."""

    port: int
    ca: str
    pki_dir: str
    collateral: str
    count: int
    concurrency: int
    warmup: int


@dataclass(frozen=True)
class LoadResult:
    """What one load generator run measured."""

    attest_seconds: float
    attest_latencies: list[float]
    attest_cpu: float
    health_seconds: float
    health_cpu: float
    quote_ms: float


async def _load(config: LoadConfig) -> LoadResult:
    now = dt.datetime.now(dt.UTC)
    platform = _platform(Path(config.pki_dir), now)
    keys = [generate_workload_key() for _ in range(min(config.count, 256))]
    # The constant part of each body, serialised once; the quote and nonce go in per request.
    prefixes = [
        b'{"app":"%s","csr":%s,"collateral":%s,"quote":"'
        % (
            APP.encode(),
            json.dumps(build_csr(key, common_name="w")).encode(),
            config.collateral.encode(),
        )
        for key in keys
    ]
    started = time.perf_counter()
    for key in keys[:50]:
        platform.quote(workload_report_data(os.urandom(32), key))
    quote_ms = (time.perf_counter() - started) / min(50, len(keys)) * 1000

    async def attest_worker(connection: _Connection, todo: list[int], out: list[float]) -> None:
        for index in todo:
            begun = time.perf_counter()
            status, body = await connection.request(b"POST", b"/v1/attest/challenge")
            spent = time.perf_counter() - begun
            if status != 200:
                raise SystemExit(f"challenge refused: {body[:500]!r}")
            nonce_b64 = json.loads(body)["nonce"].encode()
            key = keys[index % len(keys)]
            quote = platform.quote(workload_report_data(base64.b64decode(nonce_b64), key))
            request = b"".join(
                (
                    prefixes[index % len(keys)],
                    base64.b64encode(quote),
                    b'","nonce":"',
                    nonce_b64,
                    b'"}',
                )
            )
            begun = time.perf_counter()
            status, body = await connection.request(b"POST", b"/v1/attest", request)
            spent += time.perf_counter() - begun
            if status != 200:
                raise SystemExit(f"attestation refused: {body[:500]!r}")
            out.append(spent)

    async def health_worker(connection: _Connection, todo: list[int], _out: list[float]) -> None:
        for _ in todo:
            status, _body = await connection.request(b"GET", b"/healthz")
            if status != 200:
                raise SystemExit(f"/healthz answered {status}")

    def phase(worker: Callable[..., Any], count: int) -> Callable[..., Any]:
        async def run(connections: list[_Connection]) -> tuple[float, float, list[float]]:
            latencies: list[float] = []
            cpu = time.process_time()
            begun = time.perf_counter()
            await asyncio.gather(
                *(
                    worker(connection, list(range(i, count, len(connections))), latencies)
                    for i, connection in enumerate(connections)
                )
            )
            return time.perf_counter() - begun, time.process_time() - cpu, latencies

        return run

    context = ssl.create_default_context(cafile=config.ca)
    connections = [
        _Connection(*await asyncio.open_connection("127.0.0.1", config.port, ssl=context))
        for _ in range(config.concurrency)
    ]
    await phase(attest_worker, config.warmup)(connections)
    print("ready", flush=True)  # The parent starts measuring the manager's CPU (and py-spy).
    sys.stdin.readline()
    attest_seconds, attest_cpu, latencies = await phase(attest_worker, config.count)(connections)
    print("attested", flush=True)
    sys.stdin.readline()
    health_seconds, health_cpu, _ = await phase(health_worker, config.count)(connections)
    for connection in connections:
        connection.writer.close()
    return LoadResult(attest_seconds, latencies, attest_cpu, health_seconds, health_cpu, quote_ms)


def _run_loadgen(
    config: LoadConfig, on_ready: Callable[[], None], on_done: Callable[[], None]
) -> LoadResult:
    """Run the load generator in a child process; call back around its measured phase."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--loadgen-child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SANCTUM_BENCH_LOADGEN": json.dumps(config.__dict__)},
    )
    assert child.stdin is not None
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "ready":
        raise SystemExit(f"the load generator failed: {line}")
    on_ready()
    child.stdin.write("go\n")
    child.stdin.flush()
    if child.stdout.readline().strip() != "attested":
        raise SystemExit("the load generator failed while attesting")
    on_done()
    child.stdin.write("go\n")
    child.stdin.flush()
    output = child.stdout.read()
    if child.wait() != 0:
        raise SystemExit("the load generator failed")
    return LoadResult(**json.loads(output.strip().splitlines()[-1]))


def _loadgen_child() -> None:
    config = LoadConfig(**json.loads(os.environ["SANCTUM_BENCH_LOADGEN"]))

    async def main() -> LoadResult:
        return await _load(config)

    try:
        import uvloop  # noqa: PLC0415 (optional: a cheaper client-side event loop)

        result = uvloop.run(main())
    except ImportError:
        result = asyncio.run(main())
    print(json.dumps(result.__dict__), flush=True)


# --- Profiles ------------------------------------------------------------------------------------

_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("sanctum/attestation/", "quote verification (sanctum.attestation)"),
    ("sanctum/manager/ca/", "certificate issuance (sanctum.manager.ca)"),
    ("sanctum/protocol/", "binding and sealing (sanctum.protocol)"),
    ("sanctum/manager/tokens", "EAR token (sanctum.manager.tokens)"),
    ("sanctum/manager/services/audit", "audit chain append"),
    ("sanctum/manager/services/", "attestation service logic"),
    ("sanctum/manager/db", "transactions (sanctum.manager.db)"),
    ("sanctum/manager/", "manager app (middleware, routes, deps)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("sqlite3/", "SQLite driver"),
    ("psycopg", "PostgreSQL driver"),
    ("cryptography/", "cryptography (other)"),
    ("pydantic", "pydantic (request/response models)"),
    ("fastapi/", "FastAPI"),
    ("starlette/", "Starlette"),
    ("anyio/", "anyio (worker threads)"),
    ("uvicorn/", "uvicorn (HTTP, TLS)"),
    ("/ssl.py", "uvicorn (HTTP, TLS)"),
    ("asyncio/", "asyncio / uvloop"),
    ("/json/", "json"),
    ("prometheus_client/", "metrics"),
    ("/logging/", "logging"),
)


def _component(stack: list[str]) -> str:
    """Name the component of the innermost frame that belongs to a known one."""
    for frame in reversed(stack):
        for marker, name in _COMPONENTS:
            if marker in frame:
                return name
    return "other"


def summarise_py_spy(raw: str, top: int = 25) -> str:
    """Return a per-component and per-function summary of py-spy's raw (collapsed) output."""
    components: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            re.sub(r".*?(site-packages/|src/|lib/python3\.\d+/)", "", frame)
            for frame in stack_text.split(";")
        ]
        total += count
        components[_component(frames)] += count
        for name in {re.sub(r":\d+\)$", ")", f) for f in frames if "sanctum/" in f}:
            inclusive[name] += count
    if not total:
        return "py-spy recorded no samples"
    lines = [f"{total} samples of the GIL-holding thread; share of the manager's Python CPU:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in components.most_common()]
    lines.append("sanctum functions, inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    local = Path(sys.executable).parent / "py-spy"
    return found or (str(local) if local.is_file() else None)


class Sampler:
    """py-spy sampling the manager while the attestations run."""

    def __init__(self, executable: str, pid: int, output: Path) -> None:
        self.output = output
        self.process = subprocess.Popen(
            [
                executable,
                "record",
                "--pid",
                str(pid),
                "--gil",
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # Let it attach.

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return self.output.read_text() if self.output.is_file() else ""


def _profile_in_process(pki_dir: Path, count: int) -> str:
    """Run ``count`` challenge + attest service calls in this thread under cProfile.

    This is the work of the two handlers without HTTP, TLS and FastAPI (which the baseline
    measures), so the profile shows where the manager's own time goes.
    """
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from sanctum.manager.app import create_app  # noqa: PLC0415
    from sanctum.manager.secretbox import LocalKeyProvider  # noqa: PLC0415
    from sanctum.manager.services import attestation  # noqa: PLC0415
    from sanctum.manager.services.context import ServiceContext  # noqa: PLC0415
    from sanctum.manager.settings import ManagerSettings  # noqa: PLC0415
    from sanctum.protocol.messages import AttestRequest  # noqa: PLC0415

    platform = _platform(pki_dir, dt.datetime.now(dt.UTC))
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
            attest_rate_per_second=1_000_000,
            attest_rate_burst=1_000_000,
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
    out.write(
        f"in-process service calls: {count / elapsed:.1f} attestations/s "
        "(no HTTP, one thread, no profiler)\n"
    )
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"sanctum/(manager|attestation|protocol)", 30)
    return out.getvalue()


class _Marks:
    """The manager's CPU counters around the measured phase (and the sampler, if any)."""

    def __init__(self, manager: Manager, spy: str | None, output: Path) -> None:
        self.manager = manager
        self.spy = spy
        self.output = output
        self.sampler: Sampler | None = None
        self.cpu = 0.0
        self.attest_cpu = 0.0
        self.load = 0.0
        self.profile = ""

    def ready(self) -> None:
        if self.spy is not None:
            self.sampler = Sampler(self.spy, self.manager.process.pid, self.output)
        self.cpu = self.manager.cpu_seconds()

    def done(self) -> None:
        now = self.manager.cpu_seconds()
        self.attest_cpu = now - self.cpu
        self.cpu = now
        self.load = os.getloadavg()[0]
        if self.sampler is not None:
            self.profile = self.sampler.stop()


# --- Main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="Attestations per round.")
    parser.add_argument("--concurrency", type=int, default=4, help="Connections.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp dir.")
    parser.add_argument("--profile", action="store_true", help="Sample the manager (py-spy).")
    parser.add_argument("--profile-raw", type=Path, default=None, help="Keep py-spy's samples.")
    parser.add_argument("--loadgen-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen_child:
        _loadgen_child()
        return

    with tempfile.TemporaryDirectory(prefix="sanctum-bench-attest-") as tmp:
        data_dir = Path(tmp)
        now = dt.datetime.now(dt.UTC)
        platform = _platform(data_dir / "simulation", now)
        manager = Manager(data_dir, args.database_url)
        rows: list[dict[str, float]] = []
        profile_text = ""
        try:
            with httpx.Client(base_url=manager.url, verify=manager.context(), timeout=30) as http:
                _setup(http, platform)
            collateral = json.dumps(
                wire_collateral(platform.collateral(now=now)).model_dump(mode="json"),
                separators=(",", ":"),
            )
            spy = _py_spy() if args.profile else None
            for round_index in range(args.rounds):
                marks = _Marks(manager, spy if round_index == 0 else None, data_dir / "spy.txt")
                result = _run_loadgen(
                    LoadConfig(
                        port=manager.port,
                        ca=str(manager.ca),
                        pki_dir=str(data_dir / "simulation"),
                        collateral=collateral,
                        count=args.count,
                        concurrency=args.concurrency,
                        warmup=args.concurrency * 8,
                    ),
                    marks.ready,
                    marks.done,
                )
                health_cpu = manager.cpu_seconds() - marks.cpu
                if marks.sampler is not None:
                    profile_text = summarise_py_spy(marks.profile)
                    if args.profile_raw is not None:
                        args.profile_raw.write_text(marks.profile)
                latencies = result.attest_latencies
                rate = args.count / result.attest_seconds
                baseline = args.count / result.health_seconds
                rows.append(
                    {
                        "rate": rate,
                        "p50": statistics.median(latencies) * 1000,
                        "p95": _percentile(latencies, 0.95) * 1000,
                        "p99": _percentile(latencies, 0.99) * 1000,
                        "healthz": baseline,
                        "ratio": rate / baseline,
                        "manager_ms": marks.attest_cpu / args.count * 1000,
                        "manager_health_ms": health_cpu / args.count * 1000,
                        "client_ms": result.attest_cpu / args.count * 1000,
                        "load": marks.load,
                        "quote_ms": result.quote_ms,
                    }
                )
        finally:
            manager.stop()
        print(f"backend              {args.database_url or 'sqlite (temp file)'}")
        print(
            f"cores                {os.cpu_count()}, one manager process, "
            f"{args.concurrency} connections, {args.count} attestations per round"
        )
        print(
            "round  att/s   p50 ms  p95 ms  p99 ms  healthz/s  ratio  "
            "mgr CPU ms/att  client CPU ms/att  load"
        )
        for index, row in enumerate(rows, 1):
            print(
                f"{index:>5}  {row['rate']:6.1f}  {row['p50']:6.1f}  {row['p95']:6.1f}  "
                f"{row['p99']:6.1f}  {row['healthz']:9.1f}  {row['ratio']:.3f}  "
                f"{row['manager_ms']:14.2f}  {row['client_ms']:17.2f}  {row['load']:4.2f}"
            )
        best = max(rows, key=lambda r: r["rate"])
        print(
            f"best round: {best['rate']:.1f} attestations/s (goal >= 300), "
            f"p99 {best['p99']:.1f} ms (goal < 50); manager CPU per /healthz "
            f"{best['manager_health_ms']:.2f} ms; workload quote {best['quote_ms']:.2f} ms "
            "(client side, not in the latency)"
        )
        print(
            "ceiling of one manager process at its measured CPU cost: "
            f"{1000 / statistics.median(r['manager_ms'] for r in rows):.0f} attestations/s"
        )
        if args.profile:
            print()
            if profile_text:
                print("Where the manager's CPU goes (py-spy, first round):")
                print(profile_text)
            else:
                print("py-spy is not installed: cProfile of the service calls in-process:")
                print(_profile_in_process(data_dir / "simulation", 200))


if __name__ == "__main__":
    main()
