"""The service skeleton: health, readiness, metrics, request ids, problem documents, settings,
migrations."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from pydantic import SecretStr

import sanctum.manager
from sanctum.errors import (
    AuthenticationError,
    ConflictError,
    EvidenceError,
    NotFoundError,
    PermissionDeniedError,
    SanctumError,
    UnavailableError,
    UsageError,
)
from sanctum.manager.db import Database
from sanctum.manager.deps import get_context
from sanctum.manager.errors import RateLimitedError, http_status_for
from sanctum.manager.models import Account, Base
from sanctum.manager.settings import ManagerSettings, load_settings

PROBLEM = "application/problem+json"


def test_health_ready_and_request_id(harness):
    response = harness.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-123"
    ready = harness.client.get("/readyz")
    assert ready.json() == {"status": "ok", "revision": harness.runtime.db.head_revision()}
    # A malformed incoming id is replaced, never echoed.
    odd = harness.client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert odd.headers["x-request-id"] != "bad id\twith spaces"
    assert len(odd.headers["x-request-id"]) == 32


def test_metrics_count_routes_per_app(harness_factory):
    first = harness_factory()
    second = harness_factory()
    for _ in range(3):
        first.client.get("/healthz")
    text = first.client.get("/metrics").text
    assert 'sanctum_http_requests_total{method="GET",route="/healthz",status="200"} 3.0' in text
    assert "sanctum_http_request_duration_seconds_bucket" in text
    # The second app has its own registry.
    assert 'route="/healthz"' not in second.client.get("/metrics").text


def test_problem_documents(harness):
    missing = harness.client.get("/v1/no-such-route")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["code"] == "request.not_found"
    unauthenticated = harness.client.get("/v1/accounts")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"] == "auth.unauthenticated"
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    invalid = harness.client.post("/v1/accounts", json={"name": ""}, headers=harness.headers())
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["code"] == "request.invalid"
    assert body["request_id"] == invalid.headers["x-request-id"]
    assert body["type"] == "urn:sanctum:error:request.invalid"
    unknown = harness.client.get(harness.url("/tasks/nope"), headers=harness.headers())
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "task.not_found"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (EvidenceError("x"), 422),
        (UnavailableError("x"), 503),
        (NotFoundError("x"), 404),
        (ConflictError("x"), 409),
        (AuthenticationError("x"), 401),
        (PermissionDeniedError("x"), 403),
        (UsageError("x"), 400),
        (RateLimitedError("x", retry_after_seconds=5), 429),
        (SanctumError("x"), 500),
    ],
)
def test_error_status_mapping(error, status):
    assert http_status_for(error) == status


def test_openapi_lists_v1_routes(harness):
    spec = harness.client.get("/openapi.json").json()
    assert "/v1/auth/token" in spec["paths"]
    assert all(
        path.startswith(("/v1/", "/healthz", "/readyz", "/metrics", "/.well-known/"))
        for path in spec["paths"]
    )


def test_settings_fail_closed(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="dev"):
        ManagerSettings(data_dir=tmp_path, bootstrap_password=SecretStr("x" * 20))
    with pytest.raises(ValueError, match="dev"):
        ManagerSettings(data_dir=tmp_path, unsafe_fast_password_hashing=True)
    with pytest.raises(ValueError, match="together"):
        ManagerSettings(data_dir=tmp_path, tls_cert=tmp_path / "c.pem")
    settings = ManagerSettings(data_dir=tmp_path)
    assert settings.profile == "production"
    assert settings.kek_file is None
    assert settings.bootstrap_password is None
    assert settings.resolved_database_url().endswith("manager.db")


def test_settings_from_file_and_environment(tmp_path, monkeypatch):
    config = tmp_path / "manager.toml"
    config.write_text('port = 9443\nhost = "127.0.0.1"\ntoken_ttl_seconds = 600\n')
    monkeypatch.setenv("SANCTUM_MANAGER_TOKEN_TTL_SECONDS", "300")
    settings = load_settings(config, data_dir=tmp_path)
    assert settings.port == 9443
    assert settings.token_ttl_seconds == 300  # The environment wins over the file.
    with pytest.raises(UsageError) as raised:
        load_settings(tmp_path / "missing.toml")
    assert raised.value.code == "settings.invalid"
    monkeypatch.setenv("SANCTUM_MANAGER_PORT", "not-a-port")
    with pytest.raises(UsageError):
        load_settings(data_dir=tmp_path)


def _import_all_models() -> None:
    # Other parts add model modules (models_*.py) on the same Base; compare against all of them.
    for module in pkgutil.iter_modules(sanctum.manager.__path__):
        if module.name.startswith("models"):
            importlib.import_module(f"sanctum.manager.{module.name}")


def test_migrations_match_models(database_url):
    _import_all_models()
    db = Database(database_url)
    db.migrate()
    with db.engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    db.dispose()
    assert diff == []


def test_readyz_reports_pending_migrations(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(UnavailableError) as raised:
        db.check_ready()
    assert raised.value.code == "database.migrations_pending"


def test_sqlite_pragmas(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_access_log_carries_the_request_id(harness, caplog):
    with caplog.at_level(logging.INFO, logger="sanctum.manager.access"):
        response = harness.client.get(harness.url("/users"), headers=harness.headers())
    records = [r for r in caplog.records if r.name == "sanctum.manager.access"]
    assert records[-1].request_id == response.headers["x-request-id"]
    assert records[-1].route == "/v1/accounts/{account_id}/users"
    assert records[-1].status == 200


def test_unlisted_route_is_refused(harness):
    harness.app.add_api_route("/v1/unlisted", lambda: {"ok": True}, methods=["GET"])
    response = harness.client.get("/v1/unlisted", headers=harness.headers())
    assert response.status_code == 403
    assert response.json()["code"] == "auth.route_unlisted"


def test_unexpected_errors_reveal_nothing(harness):
    def explode() -> None:
        msg = "secret-token-value in a message"
        raise RuntimeError(msg)

    harness.app.dependency_overrides[get_context] = explode
    client = TestClient(harness.app, raise_server_exceptions=False)
    response = client.get("/v1/accounts", headers=harness.headers())
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "internal.error"
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text


def test_constraint_races_become_conflicts(harness):
    runtime = harness.runtime
    with pytest.raises(ConflictError) as raised, runtime.db.transaction() as session:
        session.add(
            Account(
                name="default", quorum=1, allow_self_approval=False, created_at=harness.clock.now()
            )
        )
    assert raised.value.code == "database.conflict"
