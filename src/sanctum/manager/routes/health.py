"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sanctum.manager.deps import PrincipalDep, RuntimeDep
from sanctum.manager.schemas import Health

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz(_principal: PrincipalDep) -> Health:
    """Report that the process is alive (no dependency is checked)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"description": "Not ready"}})
def readyz(runtime: RuntimeDep, _principal: PrincipalDep) -> Health:
    """Report readiness: the database answers and its schema is current."""
    runtime.db.check_ready()
    return Health(status="ok", revision=runtime.db.current_revision())


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus metrics"}},
)
def metrics(request: Request, _principal: PrincipalDep) -> Response:
    """Return the manager's Prometheus metrics (this app's registry only)."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
