"""Builds: the measurements of an app's converted images, allowlisted through a task.

A build is registered ``pending`` and opens a ``build_allowlist`` task; at quorum it becomes
``allowlisted`` and workloads with its measurement may attest as the app. A measurement is
registered once per account (a duplicate is refused). An administrator may revoke an
allowlisted build: its workloads can no longer attest or renew, and every certificate issued to
it is revoked at once (it appears in the next CRL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, cast

from pydantic import BaseModel
from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.exc import IntegrityError

from sanctum.errors import ConflictError, NotFoundError, UsageError
from sanctum.manager.db import Prepared
from sanctum.manager.models import Task, TaskStatus
from sanctum.manager.models_attestation import App, Build, BuildStatus
from sanctum.manager.policy import BuildRef
from sanctum.manager.schemas_attestation import BuildCreate
from sanctum.manager.services.apps import get_app
from sanctum.manager.services.audit import Severity, audit
from sanctum.manager.services.certificates import revoke_where
from sanctum.manager.services.context import ServiceContext
from sanctum.manager.services.tasks import BUILD_ALLOWLIST, TaskType, create_task

__all__ = [
    "BUILD_ALLOWLIST_TYPE",
    "BuildAllowlist",
    "build_ref",
    "builds_for_appraisal",
    "builds_matching",
    "create_build",
    "get_build",
    "list_builds",
    "revoke_build",
]


class BuildAllowlist(BaseModel):
    """Payload of a ``build_allowlist`` task."""

    build_id: str
    app_id: str
    measurement: str


def build_ref(build: Build) -> BuildRef:
    """Return what appraisal needs of ``build``."""
    tee: Literal["sgx", "tdx"] = "tdx" if build.tee == "tdx" else "sgx"
    return BuildRef(
        id=build.id,
        tee=tee,
        measurement=bytes.fromhex(build.measurement),
        signer=None if build.signer is None else bytes.fromhex(build.signer),
        rtmrs=tuple(None if r is None else bytes.fromhex(r) for r in build.rtmrs),
    )


def builds_for_appraisal(
    ctx: ServiceContext, app_id: str, *, simulated: bool | None = None
) -> tuple[list[BuildRef], list[BuildRef]]:
    """Return the app's allowlisted and revoked builds.

    Args:
        ctx: The service context.
        app_id: The app.
        simulated: Whether the evidence is simulated: if given, only builds registered as
            simulated (or only hardware builds) count as allowlisted, so simulated evidence
            never matches a production build's measurement. Revoked builds are all returned.
    """
    rows = ctx.session.scalars(
        select(Build).where(
            Build.app_id == app_id,
            Build.status.in_([BuildStatus.allowlisted, BuildStatus.revoked]),
        )
    ).all()
    allowlisted = [
        build_ref(b)
        for b in rows
        if b.status == BuildStatus.allowlisted and (simulated is None or b.simulated == simulated)
    ]
    revoked = [build_ref(b) for b in rows if b.status == BuildStatus.revoked]
    return allowlisted, revoked


_BUILDS: Final = cast("Table", Build.__table__)
# Pending and rejected builds are skipped below (a measurement has a few rows at most).
_MATCHING: Final = Prepared(
    select(
        _BUILDS.c.id,
        _BUILDS.c.tee,
        _BUILDS.c.measurement,
        _BUILDS.c.signer,
        _BUILDS.c.rtmrs,
        _BUILDS.c.status,
        _BUILDS.c.simulated,
    ).where(
        _BUILDS.c.app_id == bindparam("app_id"),
        _BUILDS.c.measurement == bindparam("measurement"),
    )
)


def builds_matching(
    connection: Connection, app_id: str, measurement: bytes, *, simulated: bool
) -> tuple[list[BuildRef], list[BuildRef]]:
    """Return the app's allowlisted and revoked builds whose measurement is ``measurement``.

    The attestation hot path's form of :func:`builds_for_appraisal`: builds match a quote only
    through their measurement (MRENCLAVE or MRTD, stored lowercase hex), so reading only those
    rows, with one Core statement, gives the appraisal the same answer. Like
    :func:`builds_for_appraisal`, only builds whose simulated flag is ``simulated`` count as
    allowlisted, and every revoked build is returned.
    """
    rows = _MATCHING.rows(connection, {"app_id": app_id, "measurement": measurement.hex()})
    allowlisted: list[BuildRef] = []
    revoked: list[BuildRef] = []
    for build_id, tee, hex_measurement, signer, rtmrs, status, is_simulated in rows:
        ref = BuildRef(
            id=build_id,
            tee="tdx" if tee == "tdx" else "sgx",
            measurement=bytes.fromhex(hex_measurement),
            signer=None if signer is None else bytes.fromhex(signer),
            rtmrs=tuple(None if r is None else bytes.fromhex(r) for r in rtmrs),
        )
        if status == BuildStatus.revoked:
            revoked.append(ref)
        elif status == BuildStatus.allowlisted and bool(is_simulated) == simulated:
            allowlisted.append(ref)
    return allowlisted, revoked


def create_build(ctx: ServiceContext, account_id: str, body: BuildCreate) -> tuple[Build, Task]:
    """Register a build of an app and open its allowlisting task.

    Raises:
        NotFoundError: No such app.
        ConflictError: The measurement is already registered in the account
            (``build.duplicate``).
    """
    app = get_app(ctx, account_id, body.app)
    build = Build(
        account_id=account_id,
        app_id=app.id,
        image_name=body.image_name,
        image_digest=body.image_digest,
        tee=body.tee,
        measurement=body.measurement,
        signer=body.signer,
        rtmrs=list(body.rtmrs),
        isvprodid=body.isvprodid,
        isvsvn=body.isvsvn,
        debug=body.debug,
        simulated=body.simulated,
        status=BuildStatus.pending,
        created_by=ctx.actor.user_id or ctx.actor.id,
        created_at=ctx.now,
    )
    try:
        with ctx.session.begin_nested():
            ctx.session.add(build)
            ctx.session.flush()
    except IntegrityError as error:
        raise ConflictError(
            f"the measurement {body.measurement} is already registered in this account",
            code="build.duplicate",
        ) from error
    task = create_task(
        ctx,
        account_id,
        BUILD_ALLOWLIST,
        BuildAllowlist(build_id=build.id, app_id=app.id, measurement=build.measurement),
        f"Allowlist build {build.measurement[:16]}… of app {app.name}"
        + (" (debug)" if build.debug else "")
        + (" (simulated)" if build.simulated else ""),
    )
    build.task_id = task.id
    audit(
        ctx,
        "build.registered",
        account_id=account_id,
        target_type="build",
        target_id=build.id,
        details={
            "app_id": app.id,
            "tee": build.tee,
            "measurement": build.measurement,
            "image": build.image_name,
            "digest": build.image_digest,
            "task_id": task.id,
        },
    )
    return build, task


def list_builds(
    ctx: ServiceContext,
    account_id: str,
    *,
    app: App | None = None,
    status: BuildStatus | None = None,
) -> Sequence[Build]:
    """Return the account's builds, newest first, optionally filtered."""
    statement = select(Build).where(Build.account_id == account_id)
    if app is not None:
        statement = statement.where(Build.app_id == app.id)
    if status is not None:
        statement = statement.where(Build.status == status)
    return ctx.session.scalars(statement.order_by(Build.created_at.desc(), Build.id)).all()


def get_build(ctx: ServiceContext, account_id: str, build_id: str) -> Build:
    """Return one build of the account by id or measurement.

    Raises:
        NotFoundError: No such build (``build.not_found``).
    """
    build = ctx.session.scalars(
        select(Build).where(
            Build.account_id == account_id,
            (Build.id == build_id) | (Build.measurement == build_id.lower()),
        )
    ).first()
    if build is None:
        raise NotFoundError("no such build", code="build.not_found")
    return build


def revoke_build(ctx: ServiceContext, account_id: str, build_id: str) -> tuple[Build, int]:
    """Revoke an allowlisted build and every certificate issued to it.

    Returns:
        The build and how many certificates were revoked.

    Raises:
        NotFoundError: No such build.
        ConflictError: The build is not allowlisted (``build.not_allowlisted``).
    """
    build = get_build(ctx, account_id, build_id)
    if build.status != BuildStatus.allowlisted:
        raise ConflictError(
            f"only an allowlisted build can be revoked; this one is {build.status}",
            code="build.not_allowlisted",
        )
    build.status = BuildStatus.revoked
    build.revoked_at = ctx.now
    build.revoked_by = ctx.actor.user_id or ctx.actor.id
    audit(
        ctx,
        "build.revoked",
        account_id=account_id,
        target_type="build",
        target_id=build.id,
        severity=Severity.warning,
        details={"app_id": build.app_id, "measurement": build.measurement},
    )
    count = revoke_where(ctx, account_id, reason="cessationOfOperation", build_id=build.id)
    return build, count


def _build_of(ctx: ServiceContext, task: Task, payload: BaseModel) -> Build:
    if not isinstance(payload, BuildAllowlist):  # pragma: no cover (the registry validates)
        raise UsageError("wrong payload", code="task.payload_invalid")
    build = ctx.session.get(Build, payload.build_id)
    if build is None or build.account_id != task.account_id:
        raise NotFoundError("the build of this task no longer exists", code="build.not_found")
    return build


def _approve(ctx: ServiceContext, task: Task, payload: BaseModel) -> None:
    build = _build_of(ctx, task, payload)
    if build.status != BuildStatus.pending:
        raise ConflictError(f"the build is {build.status}", code="build.not_pending")
    build.status = BuildStatus.allowlisted
    build.decided_at = ctx.now
    audit(
        ctx,
        "build.allowlisted",
        account_id=build.account_id,
        target_type="build",
        target_id=build.id,
        details={"app_id": build.app_id, "measurement": build.measurement, "task_id": task.id},
    )


def _closed(ctx: ServiceContext, task: Task, payload: BaseModel, status: TaskStatus) -> None:
    if not isinstance(payload, BuildAllowlist):  # pragma: no cover
        return
    build = ctx.session.get(Build, payload.build_id)
    if build is None or build.status != BuildStatus.pending:
        return
    build.status = BuildStatus.rejected
    build.decided_at = ctx.now
    audit(
        ctx,
        "build.rejected",
        account_id=build.account_id,
        target_type="build",
        target_id=build.id,
        details={"measurement": build.measurement, "task_id": task.id, "task_status": str(status)},
    )


BUILD_ALLOWLIST_TYPE = TaskType(
    name=BUILD_ALLOWLIST,
    payload_model=BuildAllowlist,
    on_approved=_approve,
    on_closed=_closed,
    description="Allowlist a build (a measurement) of an app.",
)
