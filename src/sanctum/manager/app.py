"""The FastAPI application factory of the Enclave Manager.

:func:`create_app` builds everything from explicit settings (nothing is read at import time):
the database (migrated on start unless disabled), the secret box under the configured KEK, the
manager's keys, the first account and administrator on first start, the routes, the one
problem+json error handler, request ids, access logs and metrics. A background thread signs the
audit chain heads periodically while the app runs.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sanctum import __version__
from sanctum.errors import UsageError
from sanctum.manager.clock import Clock, SystemClock
from sanctum.manager.db import Database
from sanctum.manager.deps import authorize
from sanctum.manager.limits import BodyLimitMiddleware
from sanctum.manager.metrics import ManagerMetrics
from sanctum.manager.permissions import ROUTE_ACCESS
from sanctum.manager.problems import install_problem_handlers
from sanctum.manager.routes import accounts, apikeys, auth, health, tasks, users
from sanctum.manager.routes import audit as audit_routes
from sanctum.manager.routes import encrypted_dirs as encrypted_dir_routes
from sanctum.manager.routes.attest import ATTESTATION_TASK_TYPES, install_attestation
from sanctum.manager.routes.converter import install_conversion
from sanctum.manager.routes.nodes import install_node_recheck
from sanctum.manager.runtime import Runtime
from sanctum.manager.schemas import problem_responses
from sanctum.manager.secretbox import (
    KeyProvider,
    Keyring,
    SecretBox,
    ensure_kek_file,
    load_kek_env,
    load_kek_file,
)
from sanctum.manager.services.accounts import QUORUM_CHANGE_TYPE
from sanctum.manager.services.apps import APP_POLICY_CHANGE_TYPE
from sanctum.manager.services.audit import install_audit_log_emitter, sign_chain_heads
from sanctum.manager.services.bootstrap import bootstrap
from sanctum.manager.services.tasks import TaskRegistry, TaskType
from sanctum.manager.services.users import ROLE_RAISE_TYPE
from sanctum.manager.settings import ManagerSettings

__all__ = [
    "RequestContextMiddleware",
    "RequestIdFilter",
    "create_app",
    "default_task_registry",
    "resolve_key_provider",
]

_log = logging.getLogger(__name__)
_access_log = logging.getLogger("sanctum.manager.access")
_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sanctum_request_id", default=None
)


class RequestIdFilter(logging.Filter):
    """Adds the current request id (if any) to every log record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the request id; never drops a record."""
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def default_task_registry(extra: Sequence[TaskType] = ()) -> TaskRegistry:
    """Return a registry with the core task types plus ``extra``."""
    registry = TaskRegistry()
    registry.register(ROLE_RAISE_TYPE)
    registry.register(QUORUM_CHANGE_TYPE)
    registry.register(APP_POLICY_CHANGE_TYPE)
    for task_type in extra:
        registry.register(task_type)
    return registry


def resolve_key_provider(settings: ManagerSettings) -> tuple[KeyProvider, bool]:
    """Return the KEK provider the settings name, and whether it was just created.

    Only in the ``dev`` profile (which ``sanctum manager serve`` with no options runs: the
    embedded developer default), a KEK file is created in the data directory (mode 0600) when
    none is configured; the caller warns that production keeps the KEK apart from the database.
    Every other profile must name its KEK (``kek_file`` or ``kek_env``) or pass a key provider
    to :func:`create_app` (ADR 0057).

    Raises:
        UsageError: The configured KEK is missing or malformed, or no KEK is configured outside
            the ``dev`` profile (``settings.kek_required``).
    """
    if settings.kek_file is not None:
        return load_kek_file(settings.kek_file), False
    if settings.kek_env is not None:
        return load_kek_env(settings.kek_env), False
    if settings.profile != "dev":
        raise UsageError(
            f"the {settings.profile!r} profile needs an explicit KEK: a KEK created next to the "
            "database protects nothing from whoever copies the data directory",
            code="settings.kek_required",
            hint="set kek_file or kek_env (or use the 'dev' profile for local development)",
        )
    return ensure_kek_file(settings.data_dir / "kek.b64")


class RequestContextMiddleware:
    """Pure ASGI middleware: request ids, access log lines and HTTP metrics for every request.

    A well-formed incoming ``X-Request-ID`` is kept, otherwise a new one is made; it is put in
    the request state (problem documents, audit entries), a context variable (log records) and
    the response headers.
    """

    def __init__(self, app: ASGIApp, metrics: ManagerMetrics) -> None:
        """Wrap ``app``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (other ASGI events pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = route.path if isinstance(route, APIRoute) else "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.observe(method, template, status, elapsed)
            # The record and its fields are only built when the access log is on at INFO.
            if _access_log.isEnabledFor(logging.INFO):
                _access_log.info(
                    "%s %s %d",
                    method,
                    template,
                    status,
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
            request_id_var.reset(token)


def _signing_loop(runtime: Runtime, stop: threading.Event) -> None:
    interval = runtime.settings.audit_sign_interval_seconds
    while not stop.wait(interval):
        try:
            with runtime.db.transaction() as session:
                sign_chain_heads(session, runtime.audit_signer(), runtime.clock.now())
        except Exception:  # noqa: BLE001 (a background job must survive; the error is logged)
            _log.warning("could not sign the audit chain heads this round", exc_info=True)


def create_app(
    settings: ManagerSettings,
    *,
    clock: Clock | None = None,
    key_provider: KeyProvider | None = None,
    previous_key_providers: Sequence[KeyProvider] = (),
    task_types: Sequence[TaskType] = (),
    database: Database | None = None,
) -> FastAPI:
    """Build the manager application from ``settings``.

    Args:
        settings: The manager settings.
        clock: The time source (the system clock by default; tests pass a manual clock).
        key_provider: The KEK provider; by default from the settings (file, env, or a KEK
            created in the data directory with a warning).
        previous_key_providers: Older KEKs accepted for unwrapping during a rotation.
        task_types: Extra approval task types (for example build and domain allowlisting).
        database: A database to use instead of the settings' URL.

    Raises:
        UsageError: A KEK or bootstrap setting is invalid.
        UnavailableError: The database cannot be reached or migrated.
    """
    if key_provider is None:
        key_provider, created = resolve_key_provider(settings)
        if created:
            _log.warning(
                "no KEK configured: created %s (mode 0600). Production should take the KEK from "
                "a key provider or a file kept apart from the database",
                settings.data_dir / "kek.b64",
            )
    previous = list(previous_key_providers) + [
        load_kek_file(p) for p in settings.previous_kek_files
    ]
    db = database or Database(settings.resolved_database_url())
    install_audit_log_emitter(db.sessions)
    if settings.migrate_on_start:
        db.migrate()
    else:
        db.check_ready()
    runtime = Runtime(
        settings=settings,
        db=db,
        clock=clock or SystemClock(),
        box=SecretBox(Keyring(key_provider, previous)),
        tasks=default_task_registry([*ATTESTATION_TASK_TYPES, *task_types]),
    )
    runtime.load_keys()
    bootstrap_result = bootstrap(runtime)
    metrics = ManagerMetrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        worker = threading.Thread(
            target=_signing_loop, args=(runtime, stop), name="audit-signer", daemon=True
        )
        worker.start()
        job_worker = getattr(_app.state, "job_worker", None)
        if job_worker is not None and runtime.settings.jobs_enabled:
            job_worker.start()
        node_recheck = _app.state.node_recheck.worker()
        if node_recheck is not None:
            node_recheck.start()
        try:
            yield
        finally:
            stop.set()
            if job_worker is not None:
                job_worker.stop()
            if node_recheck is not None:
                node_recheck.stop()
            worker.join(timeout=5)

    app = FastAPI(
        title="Sanctum Enclave Manager",
        version=__version__,
        description="Accounts, users, roles, API keys, approval tasks and the audit log.",
        dependencies=[Depends(authorize)],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.bootstrap = bootstrap_result
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    errors = problem_responses(400, 401, 403, 404, 405, 409, 422, 429, 500, 503)
    for module in (health, auth, accounts, users, apikeys, tasks, audit_routes):
        app.include_router(module.router, responses=errors)
    install_attestation(app, responses=errors)
    install_node_recheck(app)
    install_conversion(app, responses=errors)
    app.include_router(encrypted_dir_routes.router, responses=errors)
    _check_matrix(app)
    return app


def _check_matrix(app: FastAPI) -> None:
    missing = [
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
        if (method, route.path) not in ROUTE_ACCESS
    ]
    if missing:
        raise UsageError(
            f"routes without a permission-matrix entry: {', '.join(missing)}",
            code="auth.route_unlisted",
        )
