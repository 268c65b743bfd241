"""``sanctum manager serve`` over real HTTPS on PostgreSQL (the SQLite leg, with the whole CLI,
is in tests/cli/test_manager_serve.py)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time

import httpx
import pytest

from conftest import free_port
from sanctum.errors import ConflictError
from sanctum.manager.client import ManagerClient

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_https_serve_on_postgres(pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    port = free_port()
    password = tmp_path / "pw"
    password.write_text("https-password-0123")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    env["SANCTUM_MANAGER_BOOTSTRAP_PASSWORD_FILE"] = str(password)
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sanctum",
            "manager",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--database-url",
            url,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        env=env,
    )
    base = f"https://127.0.0.1:{port}"
    ca = tmp_path / "d" / "tls" / "ca.pem"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "not ready"
            try:
                if (
                    ca.is_file()
                    and httpx.get(
                        f"{base}/readyz",
                        verify=ssl.create_default_context(cafile=str(ca)),
                        timeout=2,
                    ).status_code
                    == 200
                ):
                    break
            except (httpx.HTTPError, ssl.SSLError):
                pass
            time.sleep(0.1)
        client = ManagerClient(base, token=None, ca_file=str(ca))
        client.exchange(email="admin@localhost", password="https-password-0123")
        account = client.request("GET", "/v1/accounts")[0]["id"]
        created = client.request(
            "POST", f"/v1/accounts/{account}/apikeys", json_body={"name": "pg", "role": "editor"}
        )
        assert created["key"]["role"] == "editor"
        with pytest.raises(ConflictError) as raised:
            client.request("POST", "/v1/accounts", json_body={"name": "default"})
        assert raised.value.code == "account.name_taken"
        report = client.request("GET", f"/v1/accounts/{account}/audit/verify")
        assert report["intact"] is True
        assert report["entries_checked"] >= 2
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
