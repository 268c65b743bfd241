"""The attestation endpoints, and the wiring of the whole attestation part into the app.

``POST /v1/attest/challenge`` and ``POST /v1/attest`` carry no user credentials: the workload's
quote is its credential (verified here), so the permission matrix lists them as ``workload``
access and each call spends a token of its source address's rate limit. A refusal is answered
as a problem document *and committed*: the nonce stays used, and the refusal is audited.

:func:`install_attestation` is what :func:`sanctum.manager.app.create_app` calls: it builds the
:class:`~sanctum.manager.services.attestation.AttestationRuntime` from the settings (trust
anchors, collateral source, token key, metrics) and includes every attestation router.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import NotFoundError, SanctumError
from sanctum.manager.deps import PrincipalDep, RuntimeDep, SessionDep, client_address
from sanctum.manager.errors import http_status_for
from sanctum.manager.models import Role
from sanctum.manager.models_attestation import App
from sanctum.manager.permissions import ROUTE_ACCESS, Access
from sanctum.manager.problems import problem_response
from sanctum.manager.runtime import Runtime
from sanctum.manager.schemas_attestation import VerifyEvidenceRequest
from sanctum.manager.services import attestation
from sanctum.manager.services.auth import effective_role
from sanctum.manager.services.builds import BUILD_ALLOWLIST_TYPE
from sanctum.manager.services.context import ServiceContext
from sanctum.manager.services.domains import DOMAIN_ALLOWLIST_TYPE
from sanctum.manager.services.tasks import TaskType
from sanctum.manager.settings import ManagerSettings
from sanctum.platforms.collateral_source import CollateralSource, OfflineBundleSource
from sanctum.protocol.messages import (
    AttestRequest,
    AttestResponse,
    ChallengeResponse,
    VerifyEvidenceResponse,
)

__all__ = [
    "ATTESTATION_TASK_TYPES",
    "AttestFastLane",
    "AttestationDep",
    "install_attestation",
    "refusal_response",
    "router",
    "workload_context",
]

_log = logging.getLogger(__name__)

#: The approval task types of the attestation part (registered by the app factory).
ATTESTATION_TASK_TYPES: Final[tuple[TaskType, ...]] = (BUILD_ALLOWLIST_TYPE, DOMAIN_ALLOWLIST_TYPE)

router = APIRouter(prefix="/v1/attest", tags=["attestation"])


def get_attestation(request: Request) -> attestation.AttestationRuntime:
    """Return the app's attestation runtime."""
    att: attestation.AttestationRuntime = request.app.state.attestation
    return att


AttestationDep = Annotated[attestation.AttestationRuntime, Depends(get_attestation)]


def workload_context(
    request: Request, runtime: Runtime, session: SessionDep, *, instance: str | None, app: str
) -> ServiceContext:
    """Return the service context of a workload's request (actor ``workload``)."""
    return ServiceContext(
        session=session,
        now=runtime.clock.now(),
        actor=attestation.workload_actor(instance, app),
        runtime=runtime,
        request_id=getattr(request.state, "request_id", None),
        source_address=client_address(request, runtime),
    )


_NO_STORE: Final = {"cache-control": "no-store"}


def _json(model: BaseModel) -> Response:
    """Return ``model`` serialised once, as the route's documented ``response_model``.

    The model was validated when the service built it; returning a ``Response`` spares FastAPI
    validating and serialising it a second time (the OpenAPI schema still comes from the
    route's ``response_model``). Never stored by a cache: answers carry a token, a certificate
    and sealed secrets, and a nonce is single use.
    """
    return Response(
        content=model.model_dump_json(), media_type="application/json", headers=_NO_STORE
    )


def refusal_response(request: Request, error: SanctumError) -> JSONResponse:
    """Return the problem document of a refusal (the transaction still commits)."""
    extra: dict[str, object] = {}
    if error.hint:
        extra["hint"] = error.hint
    if error.details:
        extra["details"] = attestation.jsonable(dict(error.details))
    headers: dict[str, str] = {}
    retry = getattr(error, "retry_after_seconds", None)
    if isinstance(retry, int):
        headers["Retry-After"] = str(retry)
    return problem_response(
        request, http_status_for(error), error.code, error.message, extra=extra, headers=headers
    )


@router.post("/challenge", response_model=ChallengeResponse)
def challenge(
    *,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    att: AttestationDep,
    _principal: PrincipalDep,
) -> Response:
    """Issue a single-use nonce to bind into a quote's report data."""
    now = runtime.clock.now()
    try:
        att.limiter.take(client_address(request, runtime) or "unknown", now)
    except SanctumError as error:
        att.metrics.count("challenge", "refused", error.code)
        return refusal_response(request, error)
    issued = attestation.issue_challenge(session, att, now)
    # Commit here, in this worker thread: the nonce is stored before the response is sent.
    runtime.db.commit(session)
    return _json(issued)


@router.post("", response_model=AttestResponse)
def attest(
    *,
    body: AttestRequest,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    att: AttestationDep,
    _principal: PrincipalDep,
) -> Response:
    """Attest a workload: verify its quote and issue its certificate, secrets and token."""
    del session  # The attestation is its own unit of work, on a Core connection (ADR 0120).
    source = client_address(request, runtime)
    # Fetched before the transaction: a PCS round trip must not hold the database.
    fetched, rate_taken = attestation.prefetch_for_attempt(
        att, body, source_address=source, now=runtime.clock.now()
    )
    outcome = attestation.attest_unit(
        att,
        body,
        now=None,  # Read when the unit of work begins.
        request_id=getattr(request.state, "request_id", None),
        source_address=source,
        fetched=fetched,
        rate_taken=rate_taken,
    )
    if isinstance(outcome, SanctumError):
        # A refusal committed too: the nonce stays used and the refusal stays audited.
        return refusal_response(request, outcome)
    if outcome is None:  # pragma: no cover (a waiting unit of work always answers)
        msg = "the attestation returned no answer"
        raise RuntimeError(msg)
    return _json(outcome)


@router.post("/verify-evidence", response_model=VerifyEvidenceResponse)
def verify_evidence(
    *,
    body: VerifyEvidenceRequest,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    att: AttestationDep,
    principal: PrincipalDep,
) -> VerifyEvidenceResponse:
    """Dry run: appraise a quote against an app's policy, check by check; issue nothing."""
    ctx = ServiceContext(
        session=session,
        now=runtime.clock.now(),
        actor=principal.actor,
        runtime=runtime,
        request_id=getattr(request.state, "request_id", None),
        source_address=client_address(request, runtime),
    )

    def authorise(app: App) -> None:
        # The same answer as for an app that does not exist: app names of other accounts
        # must not leak through a 404/403 difference.
        role = effective_role(session, principal.actor, app.account_id)
        if role is None or role.rank < Role.viewer.rank:
            raise NotFoundError(f"no app {body.app!r}", code="attest.app_unknown")

    return attestation.dry_run(ctx, att, body, authorise=authorise)


class AttestFastLane:
    """Pure ASGI middleware that serves the two hot workload routes without FastAPI's machinery.

    ``POST /v1/attest/challenge`` and ``POST /v1/attest`` (with a JSON body) are answered
    here, innermost of the app's middlewares (request ids, access log, metrics and the body
    limit still apply), with exactly what the routes above do: the same rate limit, service
    calls, transaction, refusal handling and problem documents; ADR 0085. What is skipped is
    the per-request cost of FastAPI's route scan, dependency resolution and response
    validation, which was a third of the manager's CPU per attestation. Any other request,
    and a ``POST /v1/attest`` whose body is not declared JSON, goes on to the routes, which
    stay registered (and documented in the OpenAPI schema). On SQLite the transactions run on
    the event loop when the database is free this instant, else on the serial worker thread
    (ADR 0120).
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app`` (the rest of the middleware stack and the router)."""
        self.app = app
        routes = {
            (method, route.path): route
            for route in router.routes
            if isinstance(route, APIRoute)
            for method in route.methods or ()
        }
        self.challenges = _ChallengeBatcher()
        self.challenge_route = routes[("POST", "/v1/attest/challenge")]
        self.attest_route = routes[("POST", "/v1/attest")]
        for key in (("POST", "/v1/attest/challenge"), ("POST", "/v1/attest")):
            # This lane does no authorisation: it must only ever serve workload routes.
            if ROUTE_ACCESS.get(key) is not Access.workload:  # pragma: no cover (a matrix error)
                msg = f"{key} is not a workload route"
                raise RuntimeError(msg)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the two routes; pass everything else on."""
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path == "/v1/attest/challenge":
                await self._challenge(scope, receive, send)
                return
            if path == "/v1/attest" and _declares_json(scope):
                await self._attest(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _challenge(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.challenge_route
        request = Request(scope)
        runtime: Runtime = scope["app"].state.runtime
        att: attestation.AttestationRuntime = scope["app"].state.attestation
        now = runtime.clock.now()
        try:
            att.limiter.take(client_address(request, runtime) or "unknown", now)
        except SanctumError as error:
            att.metrics.count("challenge", "refused", error.code)
            await refusal_response(request, error)(scope, receive, send)
            return
        pending = attestation.new_challenge(att, now)
        try:
            # The nonce is committed before the response is sent.
            await self.challenges.store(runtime, att, pending)
        except SanctumError as error:
            await (await _error_response(request, error))(scope, receive, send)
            return
        content = pending.response.model_dump_json().encode()
        await Response(content, media_type="application/json", headers=_NO_STORE)(
            scope, receive, send
        )

    async def _attest(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.attest_route
        request = Request(scope, receive)
        raw = await request.body()
        try:
            body = AttestRequest.model_validate_json(raw)
        except ValidationError as error:
            invalid = RequestValidationError(
                [{**item, "loc": ("body", *item["loc"])} for item in error.errors()]
            )
            await (await _error_response(request, invalid))(scope, receive, send)
            return
        runtime: Runtime = scope["app"].state.runtime
        att: attestation.AttestationRuntime = scope["app"].state.attestation
        request_id = scope["state"].get("request_id") if "state" in scope else None
        source = client_address(request, runtime)
        fetched, rate_taken = None, False
        if attestation.fetch_needed(att, body.collateral):
            # A PCS round trip, outside the transaction and off the serial SQLite thread, only
            # for an attempt within its rate limit, for a known app, with a live nonce.
            fetched, rate_taken = await _in_thread(
                lambda: attestation.prefetch_for_attempt(
                    att, body, source_address=source, now=runtime.clock.now()
                ),
                serial=False,
            )

        def run(*, wait: bool = True) -> Response | None:
            outcome = attestation.attest_unit(
                att,
                body,
                now=None,  # Read when the unit of work begins (after any fetch or wait).
                request_id=request_id,
                source_address=source,
                fetched=fetched,
                rate_taken=rate_taken,
                wait=wait,
            )
            if outcome is None:
                return None
            if isinstance(outcome, SanctumError):
                # A refusal committed too: the nonce stays used and the refusal audited.
                return refusal_response(request, outcome)
            return _json(outcome)

        serial = runtime.db.backend == "sqlite"
        try:
            # SQLite: on this thread when nothing would make it wait (ADR 0120), since handing
            # the work to a thread and back cost a fifth of the CPU of an attestation.
            response = await _inline(runtime, lambda: run(wait=False)) if serial else None
            if response is None:
                response = await _in_thread(run, serial=serial)
        except SanctumError as error:
            response = await _error_response(request, error)
        if response is None:  # pragma: no cover (a waiting run always answers)
            msg = "the attestation returned no answer"
            raise RuntimeError(msg)
        await response(scope, receive, send)


_T = TypeVar("_T")

#: How often the loop waits for another thread's SQLite transaction before handing work over.
_INLINE_TRIES: Final = 4
#: The longest wait for one release of the writer lock (seconds).
_INLINE_WAIT: Final = 0.25


async def _inline(runtime: Runtime, attempt: Callable[[], _T | None]) -> _T | None:
    """Run ``attempt`` (a no-wait SQLite unit of work) on the event loop, if it can be done.

    When another thread of this process holds the writer lock (the job poller, an API route,
    a worker-side attestation), the loop waits for its release (:meth:`Database.
    writer_released`, no thread hand-off) and tries again, a few times, rather than queue the
    work behind it on the worker thread: once there, every later attestation would find the
    lock held by the worker and follow it, and the process would stay in the slower hand-off
    mode for as long as the load lasts. ``None`` when it still could not run (the pool has no
    idle connection, another process holds the file, or the lock stayed busy): the caller
    hands the work to the worker.
    """
    for _ in range(_INLINE_TRIES):
        result = attempt()
        if result is not None:
            return result
        await runtime.db.writer_released(_INLINE_WAIT)  # At once (one loop turn) when free.
    return None


_pools: dict[bool, _WorkerPool] = {}
_pools_lock = threading.Lock()


class _WorkerPool:
    """Daemon threads running the lane's blocking work, handing results straight to the loop.

    What ``loop.run_in_executor`` does with half the bookkeeping: a job is a plain tuple on a
    queue, and its result goes back with one ``call_soon_threadsafe`` onto the asyncio future
    the request awaits (no ``concurrent.futures`` future chained to it), which halved the event
    loop's CPU per hand-off (ADR 0120).
    """

    def __init__(self, size: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], contextvars.Context, asyncio.AbstractEventLoop, Any]
        ] = queue.SimpleQueue()
        for index in range(size):
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True).start()

    def submit(
        self, function: Callable[[], _T], context: contextvars.Context
    ) -> asyncio.Future[_T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._jobs.put((function, context, loop, future))
        return future

    def _work(self) -> None:
        while True:
            function, context, loop, future = self._jobs.get()
            try:
                result = context.run(function)
            except BaseException as error:  # noqa: BLE001 (handed to the awaiting request)
                _deliver(loop, _set_exception, future, error)
            else:
                _deliver(loop, _set_result, future, result)
            del function, context, loop, future  # Hold nothing between jobs.


def _deliver(loop: asyncio.AbstractEventLoop, setter: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(setter, *args)
    except RuntimeError:  # The loop closed meanwhile: nobody awaits the result any more.
        _log.debug("an attestation worker finished after its event loop closed")


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # A cancelled request no longer waits.
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


async def _in_thread(function: Callable[[], _T], *, serial: bool) -> _T:
    """Run ``function`` in the attestation worker threads, in this task's context.

    Plain worker threads rather than anyio's (which the rest of the app uses): the lane needs
    no capacity limiter or cancel scope per call, and these cost the event loop about as much
    as the HTTP parsing of a request. ``serial`` work (SQLite, where the writer lock
    serialises whole transactions anyway) runs on one thread, in arrival order: threads
    queueing on the writer lock only added lock and GIL hand-offs. Other work (PostgreSQL)
    runs on a pool sized like the connection pool's base. The pools are shared by every app
    of the process.
    """
    pool = _pools.get(serial)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(serial)
            if pool is None:
                pool = _pools[serial] = _WorkerPool(
                    1 if serial else 20,
                    "sanctum-attest-serial" if serial else "sanctum-attest",
                )
    # Log records keep the request id.
    return await pool.submit(function, contextvars.copy_context())


class _ChallengeBatcher:
    """Group commit of challenge nonces: concurrent challenges share one transaction.

    Each challenge still waits until the transaction holding its nonce committed, so the
    nonce is stored (any replica can accept it) before its response is sent, exactly as with
    one transaction per challenge; under load, one transaction stores every nonce that
    arrived while the previous one was committing. A failed transaction fails every
    challenge of its batch with the same error. State is per event loop (a server has one;
    test clients may use several).
    """

    def __init__(self) -> None:
        """Start with nothing pending."""
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBatch] = (
            weakref.WeakKeyDictionary()
        )

    async def store(
        self,
        runtime: Runtime,
        att: attestation.AttestationRuntime,
        pending: attestation.PendingChallenge,
    ) -> None:
        """Return once ``pending`` is committed.

        Raises:
            UnavailableError: The database could not be reached.
        """
        loop = asyncio.get_running_loop()
        batch = self._loops.get(loop)
        if batch is None:
            batch = self._loops[loop] = _LoopBatch()
        future: asyncio.Future[None] = loop.create_future()
        batch.pending.append((pending, future))
        if batch.task is None or batch.task.done():
            batch.task = loop.create_task(batch.flush(runtime, att))
        await future


class _LoopBatch:
    """The challenges waiting on one event loop, and the task committing them."""

    def __init__(self) -> None:
        self.pending: list[tuple[attestation.PendingChallenge, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    async def flush(self, runtime: Runtime, att: attestation.AttestationRuntime) -> None:
        while self.pending:
            batch, self.pending = self.pending, []

            def store(batch: list[tuple[attestation.PendingChallenge, Any]] = batch) -> None:
                with runtime.db.connection() as connection:
                    attestation.store_challenges(connection, att, [item for item, _ in batch])

            def store_if_free(
                batch: list[tuple[attestation.PendingChallenge, Any]] = batch,
            ) -> bool | None:
                with runtime.db.connection_if_free() as connection:
                    if connection is None:
                        return None
                    attestation.store_challenges(connection, att, [item for item, _ in batch])
                return True

            try:
                # SQLite: on this thread when nothing would make it wait, as attestations.
                serial = runtime.db.backend == "sqlite"
                if not (serial and await _inline(runtime, store_if_free)):
                    await _in_thread(store, serial=serial)
            except BaseException as error:
                # Every waiting challenge gets the error (not swallowed: each request
                # answers it); a cancellation of this task still propagates.
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(error, Exception):
                    # This task dies: challenges queued meanwhile would wait for a flush that
                    # never comes, so they get the error too (a later challenge starts a new
                    # task).
                    waiting, self.pending = self.pending, []
                    for _, future in waiting:
                        if not future.done():
                            future.set_exception(error)
                    raise
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)


def _declares_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


async def _error_response(request: Request, error: Exception) -> Response:
    """Return what the app's registered exception handler answers for ``error``."""
    handlers = request.app.exception_handlers
    handler = next((handlers[kind] for kind in type(error).__mro__ if kind in handlers), None)
    if handler is None:  # pragma: no cover (the app registers a handler for Exception)
        raise error
    response = handler(request, error)
    if inspect.isawaitable(response):
        response = await response
    if not isinstance(response, Response):  # pragma: no cover (handlers return responses)
        raise error
    return response


def _simulated_root(settings: ManagerSettings) -> TrustAnchor | None:
    if not settings.simulation_enabled:
        return None
    from sanctum.platforms.simulated import read_simulation_root  # noqa: PLC0415

    # The manager only needs the simulation *root certificate* (its trust anchor). The keys
    # belong to the platform side (the simulated quoting service creates them), so the manager
    # never creates, loads or stores a simulation private key.
    directory = settings.simulation_pki_dir or settings.data_dir / "simulation"
    root_der = read_simulation_root(Path(directory))
    _log.warning(
        "the simulated platform is trusted for accounts %s: its evidence protects nothing",
        ", ".join(settings.simulation_accounts) or "(none)",
    )
    return TrustAnchor.from_bytes(root_der, simulated=True)


def _collateral_source(settings: ManagerSettings) -> CollateralSource | None:
    if settings.collateral_dir is not None:
        return OfflineBundleSource(settings.collateral_dir)
    if settings.pcs_url is not None:
        from sanctum.platforms.pcs import (  # noqa: PLC0415 (httpx only when used)
            PcsClient,
            PcsCollateralSource,
            PcsEndpoints,
        )

        return PcsCollateralSource(
            PcsClient(PcsEndpoints(settings.pcs_url), cache_dir=settings.data_dir / "pcs-cache")
        )
    return None


def install_attestation(
    app: FastAPI, *, responses: dict[int | str, dict[str, Any]] | None = None
) -> None:
    """Build the attestation runtime on ``app.state.attestation`` and include its routers.

    Args:
        app: The manager app (``app.state.runtime`` and ``app.state.metrics`` are set).
        responses: Documented error responses added to every route.

    Raises:
        SanctumError: The simulation PKI or a stored key cannot be loaded.
    """
    from sanctum.manager.routes import (  # noqa: PLC0415 (they import this module)
        apps,
        builds,
        ca,
        certificates,
        domains,
        nodes,
        wellknown,
    )

    runtime: Runtime = app.state.runtime
    settings = runtime.settings
    app.state.attestation = attestation.build_attestation_runtime(
        runtime,
        app.state.metrics.registry,
        simulated_root=_simulated_root(settings),
        collateral_source=_collateral_source(settings),
    )
    for module in (apps, builds, domains, nodes, certificates, ca, wellknown):
        app.include_router(module.router, responses=responses)
    app.include_router(router, responses=responses)
    # Innermost of the app's middlewares (Starlette builds the stack from this list, last
    # entry innermost), so request ids, the access log, metrics and the body limit apply.
    app.user_middleware.append(Middleware(AttestFastLane))
