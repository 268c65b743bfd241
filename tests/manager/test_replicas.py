"""Two manager processes on one PostgreSQL behave as one: concurrent first start, interleaved
and simultaneous votes on one task, a linear audit chain."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import BOOTSTRAP_PASSWORD, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _start(url: str, port: int, kek_file, data_dir, log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    env.update(
        SANCTUM_MANAGER_PROFILE="dev",
        SANCTUM_MANAGER_BOOTSTRAP_PASSWORD=BOOTSTRAP_PASSWORD,
        SANCTUM_MANAGER_BOOTSTRAP_ADMIN_EMAIL="admin@example.org",
        SANCTUM_MANAGER_UNSAFE_FAST_PASSWORD_HASHING="true",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sanctum",
            "manager",
            "serve",
            "--insecure-http",
            "--database-url",
            url,
            "--port",
            str(port),
            "--kek-file",
            str(kek_file),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        env=env,
    )


def _wait(base: str, process: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(log_path.read_text())
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("replica not ready")


@pytest.fixture
def replicas(pg_cluster, tmp_path):
    # A fresh, unmigrated database: both replicas migrate and bootstrap at the same time.
    name = f"replicas_{os.getpid()}"
    pg_cluster.admin(f"CREATE DATABASE {name}")
    url = pg_cluster.url(name)
    kek = tmp_path / "kek"
    kek.write_text(base64.b64encode(os.urandom(32)).decode())
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"replica{n}.log" for n in range(2)]
    handles = [path.open("w") for path in logs]
    processes = [
        _start(url, port, kek, tmp_path / f"d{n}", handles[n]) for n, port in enumerate(ports)
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, process, log in zip(bases, processes, logs, strict=True):
            _wait(base, process, log)
        clients = [httpx.Client(base_url=base, timeout=30) for base in bases]
        yield clients
        for client in clients:
            client.close()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for handle in handles:
            handle.close()


def _login(client, email, password):
    response = client.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_two_replicas_interleave_votes(replicas):
    a, b = replicas
    admin = _login(a, "admin@example.org", BOOTSTRAP_PASSWORD)
    # Exactly one account and one administrator: only one replica bootstrapped.
    accounts = b.get("/v1/accounts", headers=admin).json()
    assert len(accounts) == 1
    account = accounts[0]["id"]
    base = f"/v1/accounts/{account}"
    editors = []
    for number in range(5):
        email = f"editor{number}@example.org"
        invited = a.post(
            f"{base}/users",
            headers=admin,
            json={"email": email, "name": f"E{number}", "role": "editor"},
        ).json()
        # Accept on the other replica: invitation state lives in the database.
        accepted = b.post(
            "/v1/invitations/accept",
            json={"token": invited["invitation_token"], "password": "editor-password-1"},
        )
        assert accepted.status_code == 204
        editors.append(
            (invited["member"]["id"], _login(a if number % 2 else b, email, "editor-password-1"))
        )
    quorum = a.patch(base, headers=admin, json={"quorum": 3}).json()["task"]["id"]
    assert (
        b.post(f"{base}/tasks/{quorum}/approve", headers=editors[0][1]).json()["status"]
        == "approved"
    )
    assert a.get(base, headers=admin).json()["quorum"] == 3
    target = editors[4][0]
    task = a.patch(f"{base}/users/{target}", headers=admin, json={"role": "administrator"}).json()[
        "task"
    ]
    task_id = task["id"]
    assert task["quorum"] == 3
    url = f"{base}/tasks/{task_id}/approve"
    assert a.post(url, headers=editors[0][1]).json()["status"] == "pending"
    # The same voter on both replicas at once: one vote counts.
    with ThreadPoolExecutor(2) as pool:
        doubled = list(pool.map(lambda c: c.post(url, headers=editors[1][1]), [a, b]))
    assert sorted(r.status_code for r in doubled) == [200, 409]
    # Two different final votes at once on different replicas: exactly one closes the task.
    with ThreadPoolExecutor(2) as pool:
        finals = list(
            pool.map(
                lambda pair: pair[0].post(url, headers=pair[1][1]),
                [(a, editors[2]), (b, editors[3])],
            )
        )
    statuses = sorted(r.status_code for r in finals)
    assert statuses == [200, 409], [r.text for r in finals]
    closed = next(r for r in finals if r.status_code == 409)
    assert closed.json()["code"] == "task.closed"
    final = b.get(f"{base}/tasks/{task_id}", headers=admin).json()
    assert final["status"] == "approved"
    assert len(final["votes"]) == 3
    assert a.get(f"{base}/users/{target}", headers=admin).json()["role"] == "administrator"
    approvals = a.get(f"{base}/audit", headers=admin, params={"action": "task.approved"}).json()
    assert [e["target_id"] for e in approvals["entries"]].count(task_id) == 1
    for client in (a, b):
        report = client.get(f"{base}/audit/verify", headers=admin).json()
        assert report["intact"] is True, report
