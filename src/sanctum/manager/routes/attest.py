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

import logging
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import NotFoundError, SanctumError
from sanctum.manager.deps import PrincipalDep, RuntimeDep, SessionDep, client_address
from sanctum.manager.errors import http_status_for
from sanctum.manager.models import Role
from sanctum.manager.models_attestation import App
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
) -> ChallengeResponse | JSONResponse:
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
    return issued


@router.post("", response_model=AttestResponse)
def attest(
    *,
    body: AttestRequest,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    att: AttestationDep,
    _principal: PrincipalDep,
) -> AttestResponse | JSONResponse:
    """Attest a workload: verify its quote and issue its certificate, secrets and token."""
    ctx = workload_context(request, runtime, session, instance=body.instance, app=body.app)
    try:
        issued = attestation.attest(ctx, att, body)
    except SanctumError as error:
        attestation.record_refusal(ctx, att, endpoint="attest", app_ref=body.app, error=error)
        # A refusal commits too: the nonce stays used and the refusal stays audited.
        runtime.db.commit(session)
        return refusal_response(request, error)
    runtime.db.commit(session)
    return issued


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
