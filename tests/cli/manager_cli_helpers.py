"""A manager served over real HTTPS in this process (simulated platform allowed), and a CLI
logged in to it, for the tests of ``sanctum apps|builds|domains|nodes|certs|ca``."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from click.testing import CliRunner, Result
from fastapi import FastAPI

from sanctum.cli.main import cli
from sanctum.manager.app import create_app
from sanctum.manager.client import ClientConfig, save_login
from sanctum.manager.clock import ManualClock
from sanctum.manager.credentials import issue_bearer_token
from sanctum.manager.models import Membership, Role, User, UserStatus
from sanctum.manager.secretbox import LocalKeyProvider
from sanctum.manager.services.attestation import wire_collateral
from sanctum.manager.settings import ManagerSettings
from sanctum.manager.tls import ensure_server_tls
from sanctum.platforms.simulated import (
    SgxIdentity,
    SimulatedPlatform,
    load_or_create_simulation_pki,
)
from sanctum.protocol.workload import build_csr, generate_workload_key, workload_report_data

START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PASSWORD = "bootstrap-password-0123"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """The served manager, an HTTP client pinned to its CA, and a CLI runner logged in."""

    app: FastAPI
    http: httpx.Client
    clock: ManualClock
    account_id: str
    admin_token: str
    editor_token: str
    platform: SimulatedPlatform
    runner: CliRunner

    def cli(self, *args: str) -> Result:
        return self.runner.invoke(cli, list(args), catch_exceptions=False)

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    def approve(self, task_id: str) -> None:
        response = self.http.post(
            f"/v1/accounts/{self.account_id}/tasks/{task_id}/approve",
            headers={"Authorization": f"Bearer {self.editor_token}"},
        )
        assert response.status_code == 200, response.text

    def attest(self, app: str, sans: tuple[str, ...] = ()) -> httpx.Response:
        nonce = base64.b64decode(self.http.post("/v1/attest/challenge").json()["nonce"])
        key = generate_workload_key()
        body = {
            "app": app,
            "quote": base64.b64encode(
                self.platform.quote(workload_report_data(nonce, key))
            ).decode(),
            "csr": build_csr(key, common_name="w", sans=sans),
            "nonce": base64.b64encode(nonce).decode(),
            "collateral": wire_collateral(self.platform.collateral(now=START)).model_dump(
                mode="json"
            ),
        }
        return self.http.post("/v1/attest", json=body)


def _add_editor(app: FastAPI, account_id: str, clock: ManualClock) -> str:
    runtime = app.state.runtime
    with runtime.db.transaction() as session:
        user = User(
            email="editor@example.org",
            name="Editor",
            status=UserStatus.active,
            password_hash=None,
            created_at=clock.now(),
            updated_at=clock.now(),
        )
        session.add(user)
        session.flush()
        session.add(
            Membership(
                user_id=user.id, account_id=account_id, role=Role.editor, created_at=clock.now()
            )
        )
        user_id = user.id
    token, _ = issue_bearer_token(
        runtime.token_key, subject=user_id, kind="user", now=clock.now(), ttl=dt.timedelta(hours=1)
    )
    return token


@contextmanager
def served_manager(tmp_path: Path, monkeypatch: Any) -> Iterator[Served]:
    """Serve a fresh manager over HTTPS and point the CLI at it (config in ``tmp_path``)."""
    pki = load_or_create_simulation_pki(tmp_path / "simulation", now=START)
    settings = ManagerSettings(
        profile="dev",
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'manager.db'}",
        bootstrap_password=PASSWORD,  # type: ignore[arg-type]
        bootstrap_admin_email="admin@example.org",
        unsafe_fast_password_hashing=True,
        audit_sign_interval_seconds=3600.0,
        simulation_enabled=True,
        simulation_accounts=("default",),
        simulation_pki_dir=tmp_path / "simulation",
    )
    clock = ManualClock(START)
    app = create_app(settings, clock=clock, key_provider=LocalKeyProvider(bytes(range(32))))
    tls = ensure_server_tls(
        tmp_path / "tls",
        ["127.0.0.1"],
        dt.datetime.now(dt.UTC),
        keyring=app.state.runtime.box.keyring,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(tls.cert),
            ssl_keyfile=str(tls.key),
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{port}"
    http = httpx.Client(
        base_url=url, verify=ssl.create_default_context(cafile=str(tls.ca)), timeout=30
    )
    try:
        for _ in range(500):
            if server.started:
                break
            thread.join(0.01)
        token = http.post(
            "/v1/auth/token", json={"email": "admin@example.org", "password": PASSWORD}
        ).json()["access_token"]
        account_id = http.get("/v1/accounts", headers={"Authorization": f"Bearer {token}"}).json()[
            0
        ]["id"]
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        for name in ("SANCTUM_MANAGER_URL", "SANCTUM_MANAGER_CA", "SANCTUM_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        save_login(ClientConfig(url=url, token=token, account_id=account_id), tls.ca)
        platform = SimulatedPlatform(
            pki,
            tee="sgx",
            identity=SgxIdentity(
                mr_enclave=hashlib.sha256(b"cli enclave").digest(), isv_prod_id=7, isv_svn=3
            ),
            now=START,
            seed=b"cli",
        )
        yield Served(
            app=app,
            http=http,
            clock=clock,
            account_id=account_id,
            admin_token=token,
            editor_token=_add_editor(app, account_id, clock),
            platform=platform,
            runner=CliRunner(env={"COLUMNS": "300"}),
        )
    finally:
        http.close()
        server.should_exit = True
        thread.join(10)
        app.state.runtime.db.dispose()
