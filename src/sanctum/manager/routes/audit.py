"""The audit log of an account: query with cursor paging, export, verify the chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from sanctum.manager.deps import ContextDep, RuntimeDep
from sanctum.manager.schemas import (
    AuditEntryPublic,
    AuditPage,
    ChainProblemPublic,
    ChainReportPublic,
)
from sanctum.manager.services import audit

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts/{account_id}/audit", tags=["audit"])


class AuditFilters(BaseModel):
    """Filters shared by listing and export (all optional)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    family: str | None = Field(None, max_length=32, pattern=r"^[a-z_]+$")
    action: str | None = Field(None, max_length=64)
    actor_id: str | None = Field(None, max_length=64)
    outcome: Literal["success", "failure", "denied"] | None = None

    def to_query(self) -> audit.AuditQuery:
        """Return the service query (naive times are taken as UTC)."""

        def utc(value: dt.datetime | None) -> dt.datetime | None:
            if value is None or value.tzinfo is not None:
                return value
            return value.replace(tzinfo=dt.UTC)

        return audit.AuditQuery(
            since=utc(self.since),
            until=utc(self.until),
            family=self.family,
            action=self.action,
            actor_id=self.actor_id,
            outcome=self.outcome,
        )


class AuditListParams(AuditFilters):
    """Filters plus paging."""

    cursor: str | None = Field(None, max_length=100)
    limit: int = Field(100, ge=1, le=1000)


class AuditExportParams(AuditFilters):
    """Filters plus the export format."""

    format: Literal["jsonl", "csv"] = "jsonl"


@router.get("", response_model=AuditPage)
def list_entries(
    account_id: str, ctx: ContextDep, params: Annotated[AuditListParams, Query()]
) -> AuditPage:
    """List entries, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    entries, next_cursor = audit.query_entries(
        ctx.session, account_id, params.to_query(), cursor=params.cursor, limit=params.limit
    )
    return AuditPage(
        entries=[AuditEntryPublic.model_validate(e) for e in entries], next_cursor=next_cursor
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}, "text/csv": {}},
            "description": "Entries, oldest first",
        }
    },
)
def export_entries(
    account_id: str,
    runtime: RuntimeDep,
    _ctx: ContextDep,
    params: Annotated[AuditExportParams, Query()],
) -> StreamingResponse:
    """Export matching entries as JSON Lines or CSV (streamed, oldest first)."""
    query = params.to_query()
    format = params.format  # noqa: A001 (the API's word)

    def lines() -> Iterator[str]:
        # The request's session is closed before streaming starts: use a read transaction.
        with runtime.db.transaction() as session:
            if format == "csv":
                yield from audit.export_csv(session, account_id, query)
            else:
                yield from audit.export_jsonl(session, account_id, query)

    media = "text/csv" if format == "csv" else "application/x-ndjson"
    filename = f"audit-{account_id}.{'csv' if format == 'csv' else 'jsonl'}"
    return StreamingResponse(
        lines(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/verify", response_model=ChainReportPublic)
def verify(account_id: str, ctx: ContextDep) -> ChainReportPublic:
    """Verify the account's audit chain and signed checkpoints; report the first problem."""
    report = audit.verify_chain(ctx.session, account_id, ctx.runtime.audit_public_keys)
    problem = report.problem
    return ChainReportPublic(
        chain=report.chain,
        intact=report.intact,
        entries_checked=report.entries_checked,
        checkpoints_checked=report.checkpoints_checked,
        head_seq=report.head_seq,
        problem=ChainProblemPublic(
            code=problem.code, message=problem.message, seq=problem.seq, entry_id=problem.entry_id
        )
        if problem
        else None,
    )
