"""Benchmark: authenticated read requests per second and p99 latency of the manager over HTTPS.

Starts ``sanctum manager serve`` (one process, HTTPS with its own CA) on SQLite and on a
throwaway PostgreSQL 15 cluster, signs in, then runs concurrent keep-alive clients that call
``GET /v1/accounts/{id}/users`` (bearer token checked against the database, role resolved,
one query) for a fixed time. The baseline, measured in the same run against the same server, is
``GET /healthz`` (TLS + routing + middleware, no authentication, no database).

Usage: python benchmarks/bench_manager_api.py [--seconds 5] [--clients 8] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "bench-password-0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_postgres(root: Path) -> tuple[str, Callable[[], None]]:
    as_postgres = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    data = root / "pg"
    subprocess.run(
        [
            *prefix,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "pg.log"),
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )

    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop


def serve(root: Path, database_url: str | None) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    data_dir = root / "manager"
    pw = root / "password"
    pw.write_text(PASSWORD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    env["SANCTUM_MANAGER_BOOTSTRAP_PASSWORD_FILE"] = str(pw)
    env["SANCTUM_MANAGER_BOOTSTRAP_ADMIN_EMAIL"] = "admin@example.org"
    argv = [
        sys.executable,
        "-m",
        "sanctum",
        "manager",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
    ]
    if database_url:
        argv += ["--database-url", database_url]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"https://127.0.0.1:{port}"
    ca = data_dir / "tls" / "ca.pem"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ca.is_file():
            try:
                if (
                    httpx.get(
                        f"{url}/readyz",
                        verify=ssl.create_default_context(cafile=str(ca)),
                        timeout=2,
                    ).status_code
                    == 200
                ):
                    return process, url, ca
            except (httpx.HTTPError, ssl.SSLError):
                pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the manager did not start")


def cpu_seconds(process: subprocess.Popen) -> float:
    """Return the CPU time (user + system) ``process`` has used so far."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    *, url: str, ca: Path, path: str, headers: dict[str, str], clients: int, seconds: float
) -> tuple[float, float, float]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0]
    stop_at = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(
            base_url=url,
            verify=ssl.create_default_context(cafile=str(ca)),
            headers=headers,
            timeout=30,
        ) as client:
            client.get(path)  # Warm the connection (TLS handshake) outside the measurement.
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = client.get(path)
                latencies[index].append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    flat = sorted(x for part in latencies for x in part)
    if errors[0]:
        raise SystemExit(f"{errors[0]} requests failed on {path}")
    p99 = flat[int(len(flat) * 0.99) - 1] * 1000
    return len(flat) / elapsed, p99, statistics.median(flat) * 1000


def bench(name: str, database_url: str | None, root: Path, args: argparse.Namespace) -> None:
    process, url, ca = serve(root, database_url)
    try:
        token = httpx.post(
            f"{url}/v1/auth/token",
            verify=ssl.create_default_context(cafile=str(ca)),
            json={"email": "admin@example.org", "password": PASSWORD},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        account = httpx.get(
            f"{url}/v1/accounts", verify=ssl.create_default_context(cafile=str(ca)), headers=headers
        ).json()[0]["id"]
        base_rps, base_p99, _ = load(
            url=url, ca=ca, path="/healthz", headers={}, clients=args.clients, seconds=args.seconds
        )
        cpu_before = cpu_seconds(process)
        rps, p99, p50 = load(
            url=url,
            ca=ca,
            path=f"/v1/accounts/{account}/users",
            headers=headers,
            clients=args.clients,
            seconds=args.seconds,
        )
        # Server CPU per request: much less sensitive to other load on the machine than rates.
        cpu_ms = (cpu_seconds(process) - cpu_before) / max(1.0, rps * args.seconds) * 1000
        print(
            f"{name:10s} authenticated read: {rps:8.0f} req/s  p50 {p50:6.1f} ms  "
            f"p99 {p99:6.1f} ms | baseline /healthz {base_rps:8.0f} req/s p99 {base_p99:6.1f} ms"
            f" | ratio {rps / base_rps:.2f} | server CPU {cpu_ms:.2f} ms/request"
            f" (load average {os.getloadavg()[0]:.2f})"
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(
        f"manager API over HTTPS, {args.clients} clients, {args.seconds:.0f} s each, "
        f"{os.cpu_count()} CPUs (server and load generator share them)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "sqlite").mkdir()
        bench("sqlite", None, root / "sqlite", args)
        if not args.no_postgres and (PG_BIN / "initdb").exists():
            # Outside the 0700 temporary directory, so the postgres user can reach it.
            pg_root = Path(tempfile.mkdtemp(prefix="sanctum-bench-pg-"))
            pg_url, stop = start_postgres(pg_root)
            try:
                bench("postgresql", pg_url, pg_root, args)
            finally:
                stop()
                shutil.rmtree(pg_root, ignore_errors=True)


if __name__ == "__main__":
    main()
