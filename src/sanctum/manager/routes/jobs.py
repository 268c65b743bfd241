"""Background jobs of an account: list and show (status, progress, result or error)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sanctum.manager.deps import ContextDep
from sanctum.manager.models_jobs import Job, JobStatus
from sanctum.manager.schemas_jobs import JobError, JobPublic
from sanctum.manager.services import jobs

__all__ = ["job_public", "router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/jobs", tags=["jobs"])


def job_public(job: Job) -> JobPublic:
    """Return the API form of ``job`` (never its sealed secrets or its lease)."""
    error = None
    if job.error_code is not None:
        error = JobError(code=job.error_code, message=job.error_message or "")
    return JobPublic(
        id=job.id,
        account_id=job.account_id,
        app_id=job.app_id,
        kind=job.kind,
        status=job.status,
        progress=job.progress,
        result=job.result,
        error=error,
        build_id=job.build_id,
        task_id=job.task_id,
        attempts=job.attempts,
        created_by=job.created_by,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.get("", response_model=list[JobPublic])
def list_jobs(
    account_id: str,
    ctx: ContextDep,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[JobPublic]:
    """List the account's jobs, newest first."""
    return [job_public(j) for j in jobs.list_jobs(ctx, account_id, status=status, limit=limit)]


@router.get("/{job_id}", response_model=JobPublic)
def get_job(account_id: str, job_id: str, ctx: ContextDep) -> JobPublic:
    """Show a job: queued, running (with progress), succeeded (with result) or failed."""
    return job_public(jobs.get_job(ctx, account_id, job_id))
