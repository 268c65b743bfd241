"""Fixtures of the manager tests: SQLite and PostgreSQL databases, an app harness.

``backend`` is parametrised over SQLite and PostgreSQL; the PostgreSQL leg starts one throwaway
PostgreSQL 15 cluster per session (as the ``postgres`` user when running as root), migrates a
template database once and gives each test a fresh copy of it (``CREATE DATABASE ... TEMPLATE``),
which takes a few milliseconds.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sanctum.manager.app import create_app
from sanctum.manager.clock import ManualClock
from sanctum.manager.credentials import issue_bearer_token
from sanctum.manager.db import Database
from sanctum.manager.models import Membership, Role, User, UserStatus
from sanctum.manager.runtime import Runtime
from sanctum.manager.secretbox import LocalKeyProvider
from sanctum.manager.settings import ManagerSettings

PG_BIN = Path("/usr/lib/postgresql/15/bin")
BOOTSTRAP_PASSWORD = "bootstrap-password-0123"
START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
KEK = bytes(range(32))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 (trust authentication)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sanctum-pg-"))
        self.port = free_port()
        self.data = self.root / "data"
        self._counter = itertools.count()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            "start",
        )
        self.template = "sanctum_template"
        self.admin(f"CREATE DATABASE {self.template}")
        db = Database(self.url(self.template))
        db.migrate()
        db.dispose()

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else list(argv)
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(sql)  # type: ignore[arg-type]

    def new_database(self) -> str:
        name = f"t{os.getpid()}_{next(self._counter)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def _pg_holder() -> Iterator[dict[str, PostgresCluster]]:
    holder: dict[str, PostgresCluster] = {}
    yield holder
    if "cluster" in holder:
        holder["cluster"].stop()


@pytest.fixture
def pg_cluster(require_tool, _pg_holder) -> PostgresCluster:
    require_tool(str(PG_BIN / "initdb"), package="postgresql-15")
    require_tool(str(PG_BIN / "pg_ctl"), package="postgresql-15")
    if "cluster" not in _pg_holder:
        _pg_holder["cluster"] = PostgresCluster()
    return _pg_holder["cluster"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'manager.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    url = cluster.new_database()
    yield url
    cluster.drop_database(url)


def make_settings(tmp_path: Path, database_url: str, **extra: object) -> ManagerSettings:
    values: dict[str, object] = {
        "profile": "dev",
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "bootstrap_password": BOOTSTRAP_PASSWORD,
        "bootstrap_admin_email": "admin@example.org",
        "unsafe_fast_password_hashing": True,
        "insecure_http": True,
        "audit_sign_interval_seconds": 3600.0,
    }
    values.update(extra)
    return ManagerSettings(**values)  # type: ignore[arg-type]


@dataclass
class Harness:
    """One manager app with a manual clock, and shortcuts for tests."""

    app: FastAPI
    client: TestClient
    clock: ManualClock
    runtime: Runtime
    account_id: str
    admin_id: str
    admin_token: str
    _users: itertools.count[int] = field(default_factory=itertools.count)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def token_for(self, user_id: str) -> str:
        token, _ = issue_bearer_token(
            self.runtime.token_key,
            subject=user_id,
            kind="user",
            now=self.clock.now(),
            ttl=dt.timedelta(minutes=15),
        )
        return token

    def add_user(
        self, role: Role, *, account_id: str | None = None, email: str | None = None
    ) -> tuple[str, str]:
        """Create an active member directly in the database; return (user id, token)."""
        number = next(self._users)
        now = self.clock.now()
        with self.runtime.db.transaction() as session:
            user = User(
                email=email or f"user{number}-{role}@example.org",
                name=f"User {number}",
                status=UserStatus.active,
                password_hash=None,
                created_at=now,
                updated_at=now,
            )
            session.add(user)
            session.flush()
            session.add(
                Membership(
                    user_id=user.id,
                    account_id=account_id or self.account_id,
                    role=role,
                    created_at=now,
                )
            )
            user_id = user.id
        return user_id, self.token_for(user_id)

    def url(self, suffix: str = "") -> str:
        return f"/v1/accounts/{self.account_id}{suffix}"


def build_harness(settings: ManagerSettings) -> Harness:
    clock = ManualClock(START)
    app = create_app(settings, clock=clock, key_provider=LocalKeyProvider(KEK))
    client = TestClient(app)
    response = client.post(
        "/v1/auth/token", json={"email": "admin@example.org", "password": BOOTSTRAP_PASSWORD}
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    account = client.get("/v1/accounts", headers={"Authorization": f"Bearer {token}"}).json()[0]
    me = client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    return Harness(
        app=app,
        client=client,
        clock=clock,
        runtime=app.state.runtime,
        account_id=account["id"],
        admin_id=me["user_id"],
        admin_token=token,
    )


@pytest.fixture
def harness_factory(tmp_path, database_url) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def _make(**extra: object) -> Harness:
        harness = build_harness(make_settings(tmp_path, database_url, **extra))
        made.append(harness)
        return harness

    yield _make
    for harness in made:
        harness.client.close()
        harness.runtime.db.dispose()


@pytest.fixture
def harness(harness_factory) -> Harness:
    return harness_factory()
