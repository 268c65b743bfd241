"""Background jobs: a queue in the database, worked by a thread in every manager process.

A job is one row of ``jobs``. Workers claim it with a *lease*: a conditional ``UPDATE`` that
succeeds only while the job is ``queued`` (or ``running`` with an expired lease), so exactly one
worker of all replicas wins, whatever the database. The winner renews the lease from a heartbeat
thread while the job runs. If its process dies, the lease expires and the next worker to look
runs the job again (jobs are idempotent: a conversion is reproducible and skips blobs the
registry already has); after ``job_max_attempts`` runs the job fails with
``job.attempts_exhausted`` instead. Nothing waits forever: registry I/O has timeouts, leases
expire, and a stopping worker does not wait for its job (the lease takes care of it).

A job ends ``succeeded`` (its handler calls :meth:`JobRun.complete` inside the transaction that
records the outcome, so "build registered" and "job succeeded" commit together) or ``failed``
with the error's stable code and message. The job's sealed secrets are erased when it ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from sanctum.errors import ConflictError, NotFoundError, SanctumError
from sanctum.manager.models_jobs import Job, JobStatus
from sanctum.manager.runtime import Runtime
from sanctum.manager.services.context import Actor, ActorType, ServiceContext

__all__ = [
    "JobHandler",
    "JobRun",
    "JobWorker",
    "actor_of",
    "create_job",
    "get_job",
    "list_jobs",
]

_log = logging.getLogger(__name__)
#: Progress reports of a running job are written at most this often (seconds).
_PROGRESS_INTERVAL: Final = 0.5
_CLAIM_BATCH: Final = 8
_MESSAGE_LIMIT: Final = 2000


def _actor_json(actor: Actor) -> dict[str, Any]:
    return {"type": actor.type, "id": actor.id, "name": actor.name, "user_id": actor.user_id}


def actor_of(job: Job | JobRun) -> Actor:
    """Return the actor a job acts as (whoever asked for it)."""
    data = job.actor
    kind = data.get("type")
    actor_type: ActorType = "system"
    for known in ("user", "apikey", "workload"):
        if kind == known:
            actor_type = known
    return Actor(
        type=actor_type,
        id=data.get("id"),
        name=data.get("name"),
        user_id=data.get("user_id"),
    )


def create_job(
    ctx: ServiceContext,
    account_id: str,
    *,
    kind: str,
    app_id: str | None,
    request: Mapping[str, Any],
    secrets_sealed: bytes | None = None,
    job_id: str | None = None,
) -> Job:
    """Queue a job; a worker picks it up once the caller's transaction commits."""
    job = Job(
        id=job_id or str(uuid.uuid4()),
        account_id=account_id,
        app_id=app_id,
        kind=kind,
        status=JobStatus.queued,
        request=dict(request),
        secrets_sealed=secrets_sealed,
        progress={"step": "queued"},
        actor=_actor_json(ctx.actor),
        created_by=ctx.actor.user_id or ctx.actor.id,
        attempts=0,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(job)
    ctx.session.flush()
    return job


def get_job(ctx: ServiceContext, account_id: str, job_id: str) -> Job:
    """Return one job of the account.

    Raises:
        NotFoundError: No such job (``job.not_found``).
    """
    job = ctx.session.get(Job, job_id)
    if job is None or job.account_id != account_id:
        raise NotFoundError("no such job", code="job.not_found")
    return job


def list_jobs(
    ctx: ServiceContext, account_id: str, *, status: JobStatus | None = None, limit: int = 100
) -> Sequence[Job]:
    """Return the account's jobs, newest first."""
    statement = select(Job).where(Job.account_id == account_id)
    if status is not None:
        statement = statement.where(Job.status == status)
    statement = statement.order_by(Job.created_at.desc(), Job.id).limit(limit)
    return ctx.session.scalars(statement).all()


@dataclass
class JobRun:
    """A claimed job, handed to its handler (a snapshot: the row may change meanwhile)."""

    runtime: Runtime
    owner: str
    id: str
    kind: str
    account_id: str
    app_id: str | None
    request: dict[str, Any]
    secrets_sealed: bytes | None
    actor: dict[str, Any]
    attempts: int
    _last_progress: float = field(default=0.0, repr=False)

    def progress(self, report: Mapping[str, Any], *, force: bool = False) -> None:
        """Record progress (throttled unless ``force``) and renew the lease."""
        now_mono = time.monotonic()
        if not force and now_mono - self._last_progress < _PROGRESS_INTERVAL:
            return
        self._last_progress = now_mono
        _renew(self.runtime, self.id, self.owner, progress=dict(report))

    def complete(
        self,
        session: Session,
        *,
        result: Mapping[str, Any],
        build_id: str | None = None,
        task_id: str | None = None,
    ) -> None:
        """Mark the job succeeded inside ``session``'s transaction.

        Raises:
            ConflictError: This worker no longer holds the job (``job.lease_lost``): another
                worker took it over, so this outcome must not commit.
        """
        now = self.runtime.clock.now()
        done = session.execute(
            update(Job)
            .where(
                Job.id == self.id, Job.lease_owner == self.owner, Job.status == JobStatus.running
            )
            .values(
                status=JobStatus.succeeded,
                result=dict(result),
                build_id=build_id,
                task_id=task_id,
                progress={"step": "done"},
                secrets_sealed=None,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
                finished_at=now,
            )
        )
        if getattr(done, "rowcount", 0) != 1:
            raise ConflictError("another worker took this job over", code="job.lease_lost")


#: Runs one job; raises a :class:`SanctumError` (its code becomes the job's) to fail it.
JobHandler = Callable[[JobRun], None]


def _renew(
    runtime: Runtime, job_id: str, owner: str, *, progress: dict[str, Any] | None = None
) -> bool:
    now = runtime.clock.now()
    values: dict[str, Any] = {
        "lease_expires_at": now + dt.timedelta(seconds=runtime.settings.job_lease_seconds),
        "updated_at": now,
    }
    if progress is not None:
        values["progress"] = progress
    with runtime.db.transaction() as session:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.running)
            .values(**values)
        )
        return getattr(done, "rowcount", 0) == 1


def _fail(runtime: Runtime, job_id: str, owner: str | None, code: str, message: str) -> None:
    now = runtime.clock.now()
    conditions = [Job.id == job_id, Job.status.in_([JobStatus.queued, JobStatus.running])]
    if owner is not None:
        conditions.append(Job.lease_owner == owner)
    with runtime.db.transaction() as session:
        session.execute(
            update(Job)
            .where(*conditions)
            .values(
                status=JobStatus.failed,
                error_code=code[:100],
                error_message=message[:_MESSAGE_LIMIT],
                secrets_sealed=None,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
                finished_at=now,
            )
        )


def _claimable(now: dt.datetime) -> Any:
    return or_(
        Job.status == JobStatus.queued,
        and_(Job.status == JobStatus.running, Job.lease_expires_at < now),
    )


def _claim(runtime: Runtime, owner: str, kinds: Sequence[str]) -> JobRun | None:
    """Claim the oldest claimable job of ``kinds`` (``None`` when there is none)."""
    now = runtime.clock.now()
    lease_until = now + dt.timedelta(seconds=runtime.settings.job_lease_seconds)
    with runtime.db.transaction() as session:
        candidates = session.scalars(
            select(Job.id)
            .where(_claimable(now), Job.kind.in_(list(kinds)))
            .order_by(Job.created_at, Job.id)
            .limit(_CLAIM_BATCH)
        ).all()
    for job_id in candidates:
        with runtime.db.transaction() as session:
            won = session.execute(
                update(Job)
                .where(Job.id == job_id, _claimable(now))
                .values(
                    status=JobStatus.running,
                    lease_owner=owner,
                    lease_expires_at=lease_until,
                    attempts=Job.attempts + 1,
                    started_at=now,
                    updated_at=now,
                )
            )
            if getattr(won, "rowcount", 0) != 1:
                continue  # Another worker was faster.
            job = session.get(Job, job_id)
            if job is None:  # pragma: no cover (deleted between the two statements)
                continue
            run = JobRun(
                runtime=runtime,
                owner=owner,
                id=job.id,
                kind=job.kind,
                account_id=job.account_id,
                app_id=job.app_id,
                request=dict(job.request),
                secrets_sealed=job.secrets_sealed,
                actor=dict(job.actor),
                attempts=job.attempts,
            )
        if run.attempts > runtime.settings.job_max_attempts:
            _log.warning("job %s abandoned after %d attempts", run.id, run.attempts - 1)
            _fail(
                runtime,
                run.id,
                owner,
                "job.attempts_exhausted",
                f"the job was interrupted {run.attempts - 1} times (its worker stopped or "
                "lost its lease); it was not run again",
            )
            continue
        return run
    return None


class JobWorker:
    """Claims and runs jobs in a background thread (one per manager process)."""

    def __init__(self, runtime: Runtime, handlers: Mapping[str, JobHandler]) -> None:
        """Prepare a worker for the job kinds of ``handlers`` (nothing runs until started)."""
        self.runtime = runtime
        self.handlers = dict(handlers)
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="job-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait at most ``timeout`` seconds.

        A job still running is not awaited: its lease expires and a worker runs it again.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # noqa: BLE001 (a background loop must survive; it is logged)
                _log.warning("the job worker could not poll the job queue", exc_info=True)
                ran = None
            if ran is None:
                self._stop.wait(self.runtime.settings.job_poll_seconds)

    def run_once(self) -> str | None:
        """Claim and run one job; return its id, or ``None`` when none was waiting."""
        run = _claim(self.runtime, self.owner, list(self.handlers))
        if run is None:
            return None
        beat_stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(run, beat_stop), name=f"job-lease-{run.id}", daemon=True
        )
        beat.start()
        try:
            self.handlers[run.kind](run)
        except SanctumError as error:
            _log.info("job %s failed: %s (%s)", run.id, error.code, type(error).__name__)
            _fail(self.runtime, run.id, self.owner, error.code, error.message)
        except Exception as error:  # noqa: BLE001 (the job fails cleanly; the cause is logged)
            _log.exception("job %s failed unexpectedly", run.id)
            _fail(
                self.runtime,
                run.id,
                self.owner,
                "job.internal_error",
                f"the job failed unexpectedly ({type(error).__name__}); see the manager's log",
            )
        finally:
            beat_stop.set()
            beat.join(timeout=5)
        return run.id

    def _heartbeat(self, run: JobRun, stop: threading.Event) -> None:
        interval = max(1.0, self.runtime.settings.job_lease_seconds / 3)
        while not stop.wait(interval):
            try:
                if not _renew(self.runtime, run.id, self.owner):
                    return
            except Exception:  # noqa: BLE001 (the next beat retries; the lease bounds the risk)
                _log.warning("could not renew the lease of job %s", run.id, exc_info=True)
