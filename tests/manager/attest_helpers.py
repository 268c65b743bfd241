"""Shared pieces of the attestation tests: a manager that trusts a simulation PKI, apps and
builds approved through tasks, and a workload that attests with a simulated platform.

The workload side uses only :mod:`sanctum.protocol` and the simulated platform (as the
launcher does); the manager side is the real app behind the harness's client.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select

from conftest import START, Harness, free_port
from sanctum.manager.models import AuditEntry, Role
from sanctum.manager.models_attestation import CertificateRecord
from sanctum.manager.services.attestation import wire_collateral
from sanctum.manager.tls import ensure_server_tls
from sanctum.platforms.simulated import (
    SgxIdentity,
    SimulatedPlatform,
    SimulationPki,
    load_or_create_simulation_pki,
)
from sanctum.protocol.workload import build_csr, generate_workload_key, workload_report_data

ACCOUNT = "default"


def simulation_settings(tmp_path: Path) -> dict[str, Any]:
    """Manager settings that trust the simulation PKI in ``tmp_path`` for the default account.

    The platform side owns that PKI (the manager reads only its root), so it is created here,
    as the simulated quoting service would, before any manager starts with these settings.
    """
    simulation_pki(tmp_path)
    return {
        "simulation_enabled": True,
        "simulation_accounts": (ACCOUNT,),
        "simulation_pki_dir": tmp_path / "simulation",
    }


def simulation_pki(tmp_path: Path) -> SimulationPki:
    """Return the PKI the manager of :func:`simulation_settings` trusts."""
    return load_or_create_simulation_pki(tmp_path / "simulation", now=START)


def identity(label: str, *, isv_prod_id: int = 7, isv_svn: int = 3) -> SgxIdentity:
    """Return a distinct enclave identity per ``label``."""
    return SgxIdentity(
        mr_enclave=hashlib.sha256(f"enclave {label}".encode()).digest(),
        mr_signer=hashlib.sha256(b"signer").digest(),
        isv_prod_id=isv_prod_id,
        isv_svn=isv_svn,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Workload:
    """A simulated workload: a platform, a key, a CSR."""

    platform: SimulatedPlatform
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    csr: str

    @classmethod
    def make(
        cls,
        platform: SimulatedPlatform,
        *,
        sans: tuple[str, ...] = (),
        key_type: str = "ec-p256",
    ) -> Workload:
        key = generate_workload_key(key_type)  # type: ignore[arg-type]
        return cls(platform, key, build_csr(key, common_name="workload", sans=sans))

    def request(self, app: str, nonce: bytes, **extra: Any) -> dict[str, Any]:
        quote = self.platform.quote(workload_report_data(nonce, self.key))
        collateral = wire_collateral(self.platform.collateral(now=START))
        body: dict[str, Any] = {
            "app": app,
            "quote": b64(quote),
            "csr": self.csr,
            "nonce": b64(nonce),
            "collateral": collateral.model_dump(mode="json"),
        }
        body.update(extra)
        return body


@dataclass
class Kit:
    """A harness with an editor to approve tasks and a simulation PKI."""

    harness: Harness
    pki: SimulationPki
    editor_token: str = ""
    platforms: dict[str, SimulatedPlatform] = field(default_factory=dict)
    #: An HTTP client to use instead of the harness's in-process one (HTTPS tests).
    http: Any = None

    def __post_init__(self) -> None:
        _, self.editor_token = self.harness.add_user(Role.editor)

    @property
    def client(self) -> Any:
        return self.http if self.http is not None else self.harness.client

    def platform(self, label: str = "app", **options: Any) -> SimulatedPlatform:
        return SimulatedPlatform(
            self.pki,
            tee="sgx",
            identity=options.pop("identity", None) or identity(label),
            now=START,
            seed=options.pop("seed", label.encode()),
            **options,
        )

    def approve(self, task_id: str) -> dict[str, Any]:
        response = self.client.post(
            self.harness.url(f"/tasks/{task_id}/approve"),
            headers=self.harness.headers(self.editor_token),
        )
        assert response.status_code == 200, response.text
        return response.json()

    def create_app(
        self,
        name: str,
        *,
        domains: tuple[str, ...] = ("bank.demo.local",),
        secrets: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        approve_domains: bool = True,
        **fields: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "domains": list(domains),
            "secrets": secrets
            if secrets is not None
            else {"DB_PASSWORD": {"value": "hunter2", "delivery": "env"}},
            "policy": {"unsafe_allow_simulated": True} if policy is None else policy,
            **fields,
        }
        response = self.client.post(
            self.harness.url("/apps"), json=body, headers=self.harness.headers()
        )
        assert response.status_code == 201, response.text
        app = response.json()
        if approve_domains:
            for task in app["tasks"]:
                self.approve(task["id"])
        return app

    def register_build(
        self, app: str, platform: SimulatedPlatform, *, approve: bool = True, **extra: Any
    ) -> dict[str, Any]:
        ident = platform.identity
        assert isinstance(ident, SgxIdentity)
        response = self.client.post(
            self.harness.url("/builds"),
            json={
                "app": app,
                "tee": "sgx",
                "measurement": ident.mr_enclave.hex(),
                "signer": ident.mr_signer.hex(),
                "isvprodid": ident.isv_prod_id,
                "isvsvn": ident.isv_svn,
                "simulated": True,
                "image_name": f"registry.local/{app}:shielded",
                **extra,
            },
            headers=self.harness.headers(),
        )
        assert response.status_code == 201, response.text
        created = response.json()
        if approve:
            self.approve(created["task"]["id"])
        return created["build"]

    def challenge(self) -> bytes:
        response = self.client.post("/v1/attest/challenge")
        assert response.status_code == 200, response.text
        return base64.b64decode(response.json()["nonce"])

    def attest(self, workload: Workload, app: str, **extra: Any) -> Any:
        nonce = self.challenge()
        return self.client.post("/v1/attest", json=workload.request(app, nonce, **extra))

    def certificate_count(self) -> int:
        with self.harness.runtime.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(CertificateRecord)) or 0)

    def audit_actions(self, action: str) -> list[AuditEntry]:
        with self.harness.runtime.db.transaction() as session:
            return list(
                session.scalars(
                    select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
                ).all()
            )


@contextmanager
def https_server(app: Any, data_dir: Path) -> Iterator[httpx.Client]:
    """Serve ``app`` over HTTPS on a free loopback port; yield a client that pins its CA."""
    tls = ensure_server_tls(
        data_dir,
        ["127.0.0.1"],
        dt.datetime.now(dt.UTC),
        keyring=app.state.runtime.box.keyring,
    )
    port = free_port()
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
    context = ssl.create_default_context(cafile=str(tls.ca))
    client = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context, timeout=30)
    try:
        for _ in range(500):
            if server.started:
                break
            thread.join(0.01)
        assert server.started, "the HTTPS server did not start"
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(10)
