"""The tamper-evident audit log: typed entries in per-account hash chains, signed checkpoints.

Every entry stores the SHA-256 of the previous entry of its chain (one chain per account, plus
the ``system`` chain for events outside any account). Appending locks the chain's head row
(``SELECT ... FOR UPDATE``; SQLite serialises writers) and updates it in the same transaction,
so concurrent appends from several replicas keep each chain linear. The manager periodically
signs each chain head with its Ed25519 key (:func:`sign_chain_heads`), so rewriting a chain and
its head together is caught at the last checkpoint. :func:`verify_chain` recomputes everything
and reports the first broken or missing link.

Entries are never updated or deleted by the application. Each committed entry is also written
to the ``sanctum.audit`` logger as one JSON object (for log collectors).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import enum
import hashlib
import io
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Select, Table, bindparam, event, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sanctum.errors import UsageError
from sanctum.manager.db import Prepared
from sanctum.manager.models import AuditChainHead, AuditCheckpoint, AuditEntry
from sanctum.manager.services.context import ServiceContext

__all__ = [
    "ACTION_FAMILIES",
    "GENESIS_HASH",
    "SYSTEM_CHAIN",
    "AuditQuery",
    "AuditSigner",
    "ChainProblem",
    "ChainReport",
    "Outcome",
    "Severity",
    "append",
    "audit",
    "audit_failure",
    "entry_hash",
    "export_csv",
    "export_jsonl",
    "install_audit_log_emitter",
    "log_committed",
    "query_entries",
    "record",
    "record_failures",
    "sign_chain_heads",
    "verify_chain",
]

GENESIS_HASH: Final = "0" * 64
SYSTEM_CHAIN: Final = "system"
#: The typed action families; an action is ``family.verb``.
ACTION_FAMILIES: Final = frozenset(
    {
        "account",
        "apikey",
        "app",
        "attestation",
        "audit",
        "auth",
        "backup",
        "build",
        "certificate",
        "domain",
        "node",
        "settings",
        "system",
        "task",
        "user",
    }
)
_audit_log = logging.getLogger("sanctum.audit")
_PENDING_KEY: Final = "sanctum.audit.pending"


class Outcome(enum.StrEnum):
    """How the audited action ended."""

    success = "success"
    failure = "failure"
    denied = "denied"


class Severity(enum.StrEnum):
    """How much attention the entry deserves."""

    info = "info"
    warning = "warning"
    error = "error"
    critical = "critical"


def _canonical(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_HASHED: Final = (
    "chain",
    "seq",
    "prev_hash",
    "time",
    "account_id",
    "actor_type",
    "actor_id",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "severity",
    "request_id",
    "source_address",
    "details",
)


def _hashed_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the hashed fields of an entry given as column values (the one canonical form)."""
    out = {name: values[name] for name in _HASHED}
    out["time"] = values["time"].astimezone(dt.UTC).isoformat(timespec="microseconds")
    return out


def _hashed_fields(entry: AuditEntry) -> dict[str, Any]:
    return _hashed_values({name: getattr(entry, name) for name in _HASHED})


def _hash_of(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(b"sanctum-audit-v1\x00" + _canonical(fields)).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """Return the SHA-256 (hex) that links ``entry`` into its chain."""
    return _hash_of(_hashed_fields(entry))


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    """Return the public JSON form of an entry (also its log line and export record)."""
    out = _hashed_fields(entry)
    out["id"] = entry.id
    out["entry_hash"] = entry.entry_hash
    return out


_HEADS: Final = cast("Table", AuditChainHead.__table__)
_ENTRIES: Final = cast("Table", AuditEntry.__table__)
# Statements compiled once per dialect and run on the driver (ADR 0085).
_LOCK_HEAD: Final = Prepared(
    select(_HEADS.c.seq, _HEADS.c.entry_hash)
    .where(_HEADS.c.chain == bindparam("chain"))
    .with_for_update()
)
_INSERT_ENTRY: Final = Prepared(
    insert(_ENTRIES).returning(_ENTRIES.c.id),
    column_keys=[column.key for column in _ENTRIES.c if column.key != "id"],
)
_MOVE_HEAD: Final = Prepared(
    update(_HEADS)
    .where(_HEADS.c.chain == bindparam("head_chain"))
    .values(
        seq=bindparam("head_seq"),
        entry_hash=bindparam("head_hash"),
        updated_at=bindparam("head_updated_at"),
    )
)


def _ensure_head(connection: Connection, chain: str, now: dt.datetime) -> None:
    values = {"chain": chain, "seq": 0, "entry_hash": GENESIS_HASH, "updated_at": now}
    if connection.dialect.name == "postgresql":
        connection.execute(postgresql.insert(_HEADS).values(values).on_conflict_do_nothing())
    else:
        connection.execute(sqlite.insert(_HEADS).values(values).on_conflict_do_nothing())


def _check_action(action: str) -> None:
    """Refuse an action that is not ``family.verb`` with a known family.

    Raises:
        ValueError: ``action`` is malformed (a programming error).
    """
    family, _, verb = action.partition(".")
    if family not in ACTION_FAMILIES or not verb:
        msg = f"audit action {action!r} is not family.verb with a known family"
        raise ValueError(msg)


def _append_on(connection: Connection, values: dict[str, Any]) -> dict[str, Any]:
    """Append an entry given as column values (without ``seq``, ``prev_hash``, hash, id).

    Three Core statements on ``connection``, without the ORM's unit of work: lock the chain
    head, insert the entry, move the head. Returns the public form of the entry (what
    :func:`entry_to_dict` returns).
    """
    chain = values["chain"]
    heads = _LOCK_HEAD.rows(connection, {"chain": chain})
    if not heads:
        # The first entry of a chain: create its head (or find a concurrent creator's), lock it.
        _ensure_head(connection, chain, values["time"])
        heads = _LOCK_HEAD.rows(connection, {"chain": chain})
    head = heads[0]
    values["seq"] = int(head[0]) + 1
    values["prev_hash"] = str(head[1])
    public = _hashed_values(values)
    values["entry_hash"] = _hash_of(public)
    entry_id = _INSERT_ENTRY.rows(connection, values)[0][0]
    _MOVE_HEAD.execute(
        connection,
        {
            "head_chain": chain,
            "head_seq": values["seq"],
            "head_hash": values["entry_hash"],
            "head_updated_at": values["time"],
        },
    )
    public["id"] = entry_id
    public["entry_hash"] = values["entry_hash"]
    values["id"] = entry_id
    return public


def _append(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    """Append an entry on ``session``'s connection; queue its log line for the session's commit.

    Raises:
        ValueError: ``action`` is not ``family.verb`` with a known family (a programming error).
    """
    _check_action(values["action"])
    # Flush pending objects first (the entry may name an account created in this transaction).
    if session.new or session.dirty or session.deleted:
        session.flush()
    public = _append_on(session.connection(), values)
    session.info.setdefault(_PENDING_KEY, []).append(public)
    return public


def _append_in(ctx: ServiceContext, values: dict[str, Any]) -> dict[str, Any]:
    """Append an entry in ``ctx``'s unit of work (its Core connection, if it has one).

    On a Core connection (ADR 0120) the log line is queued in ``ctx.audit_lines``: whoever
    commits the connection logs them (:func:`log_committed`).

    Raises:
        ValueError: ``action`` is not ``family.verb`` with a known family (a programming error).
    """
    connection = ctx.connection
    if connection is None:
        return _append(ctx.session, values)
    _check_action(values["action"])
    session = ctx.session
    if session.in_transaction() and (session.new or session.dirty or session.deleted):
        session.flush()  # The bound session's pending objects go first, as above.
    public = _append_on(connection, values)
    ctx.audit_lines.append(public)
    return public


def log_committed(lines: list[dict[str, Any]]) -> None:
    """Write committed entries (public forms) to the ``sanctum.audit`` log stream."""
    for line in lines:
        _audit_log.info("audit %s", line["action"], extra={"audit": line})


def _values(
    *,
    now: dt.datetime,
    action: str,
    account_id: str | None,
    actor_type: str,
    actor_id: str | None,
    actor_name: str | None,
    target_type: str | None,
    target_id: str | None,
    outcome: Outcome,
    severity: Severity,
    request_id: str | None,
    source_address: str | None,
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "chain": account_id or SYSTEM_CHAIN,
        "time": now,
        "account_id": account_id,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "actor_name": actor_name,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "outcome": str(outcome),
        "severity": str(severity),
        "request_id": request_id,
        "source_address": source_address,
        "details": dict(details or {}),
    }


def record(
    session: Session,
    *,
    now: dt.datetime,
    action: str,
    account_id: str | None,
    actor_type: str,
    actor_id: str | None = None,
    actor_name: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: Outcome = Outcome.success,
    severity: Severity = Severity.info,
    request_id: str | None = None,
    source_address: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the chain of ``account_id`` (or the system chain) in this transaction.

    Returns:
        The entry as written (a detached object: it is not added to the session).

    Raises:
        ValueError: ``action`` is not ``family.verb`` with a known family (a programming error).
    """
    values = _values(
        now=now,
        action=action,
        account_id=account_id,
        actor_type=actor_type,
        actor_id=actor_id,
        actor_name=actor_name,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        severity=severity,
        request_id=request_id,
        source_address=source_address,
        details=details,
    )
    _append(session, values)
    return AuditEntry(**values)


def _context_values(
    ctx: ServiceContext,
    action: str,
    *,
    account_id: str | None,
    target_type: str | None,
    target_id: str | None,
    outcome: Outcome,
    severity: Severity,
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Return an entry's column values for the context's actor, time, request and source.

    Raises:
        ValueError: ``action`` is not ``family.verb`` with a known family (a programming error).
    """
    return _values(
        now=ctx.now,
        action=action,
        account_id=account_id,
        actor_type=ctx.actor.type,
        actor_id=ctx.actor.id,
        actor_name=ctx.actor.name,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        severity=severity,
        request_id=ctx.request_id,
        source_address=ctx.source_address,
        details=details,
    )


def append(
    ctx: ServiceContext,
    action: str,
    *,
    account_id: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: Outcome = Outcome.success,
    severity: Severity = Severity.info,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Like :func:`audit`, for hot paths: return the entry's public form, make no ORM object.

    Raises:
        ValueError: ``action`` is not ``family.verb`` with a known family (a programming error).
    """
    return _append_in(
        ctx,
        _context_values(
            ctx,
            action,
            account_id=account_id,
            target_type=target_type,
            target_id=target_id,
            outcome=outcome,
            severity=severity,
            details=details,
        ),
    )


def audit(
    ctx: ServiceContext,
    action: str,
    *,
    account_id: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: Outcome = Outcome.success,
    severity: Severity = Severity.info,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry for the context's actor, request and source address.

    Raises:
        ValueError: ``action`` is not ``family.verb`` with a known family (a programming error).
    """
    values = _context_values(
        ctx,
        action,
        account_id=account_id,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        severity=severity,
        details=details,
    )
    _append_in(ctx, values)
    return AuditEntry(**values)


def audit_failure(
    ctx: ServiceContext,
    action: str,
    *,
    account_id: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    severity: Severity = Severity.warning,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Queue an entry that is written in its own transaction if the unit of work fails.

    Use it just before raising a refusal: the request's transaction rolls back, and the request
    layer then records the queued entries (``audit.failure`` outcome is ``failure``).
    """
    ctx.failure_audits.append(
        {
            "now": ctx.now,
            "action": action,
            "account_id": account_id,
            "actor_type": ctx.actor.type,
            "actor_id": ctx.actor.id,
            "actor_name": ctx.actor.name,
            "target_type": target_type,
            "target_id": target_id,
            "outcome": Outcome.failure,
            "severity": severity,
            "request_id": ctx.request_id,
            "source_address": ctx.source_address,
            "details": dict(details or {}),
        }
    )


def record_failures(session: Session, pending: list[dict[str, Any]]) -> None:
    """Write queued failure entries (see :func:`audit_failure`)."""
    for kwargs in pending:
        record(session, **kwargs)


def _emit_after_commit(session: Session) -> None:
    log_committed(session.info.pop(_PENDING_KEY, []))


def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def install_audit_log_emitter(session_factory: Any) -> None:
    """Log committed entries (never rolled-back ones) from sessions made by ``session_factory``."""
    event.listen(session_factory, "after_commit", _emit_after_commit)
    event.listen(session_factory, "after_rollback", _drop_after_rollback)
    event.listen(session_factory, "after_soft_rollback", lambda s, _t: _drop_after_rollback(s))


# --- Signed checkpoints -------------------------------------------------------------------------


class AuditSigner:
    """The manager's Ed25519 key that signs chain heads."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        """Sign with ``private_key``."""
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Return the Ed25519 signature of ``message``."""
        return self._key.sign(message)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Return the short fingerprint of an audit signing key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _checkpoint_message(chain: str, seq: int, head_hash: str, signed_at: dt.datetime) -> bytes:
    stamp = signed_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return f"sanctum-audit-checkpoint-v1\x00{chain}\x00{seq}\x00{head_hash}\x00{stamp}".encode()


def sign_chain_heads(session: Session, signer: AuditSigner, now: dt.datetime) -> int:
    """Sign every chain head that moved since its last checkpoint; return how many were signed."""
    signed = 0
    heads = session.scalars(select(AuditChainHead).where(AuditChainHead.seq > 0)).all()
    for head in heads:
        exists = session.scalar(
            select(AuditCheckpoint.id).where(
                AuditCheckpoint.chain == head.chain, AuditCheckpoint.seq == head.seq
            )
        )
        if exists is not None:
            continue
        session.add(
            AuditCheckpoint(
                chain=head.chain,
                seq=head.seq,
                entry_hash=head.entry_hash,
                signed_at=now,
                key_id=signer.key_id,
                signature=signer.sign(
                    _checkpoint_message(head.chain, head.seq, head.entry_hash, now)
                ),
            )
        )
        signed += 1
    session.flush()
    return signed


# --- Verification -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first thing wrong with a chain."""

    code: str
    message: str
    seq: int | None
    entry_id: int | None


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of checking one chain end to end."""

    chain: str
    entries_checked: int
    checkpoints_checked: int
    head_seq: int
    problem: ChainProblem | None

    @property
    def intact(self) -> bool:
        """Return whether no problem was found."""
        return self.problem is None


def verify_chain(
    session: Session, chain: str, public_keys: Mapping[str, Ed25519PublicKey]
) -> ChainReport:
    """Recompute chain ``chain`` and check its head and signed checkpoints.

    Reports (does not raise) the first problem: ``audit.entry_modified`` (an entry's content no
    longer matches its hash), ``audit.link_broken`` (prev_hash is not the previous entry's hash),
    ``audit.link_missing`` (a sequence number is skipped: an entry was deleted),
    ``audit.head_mismatch`` (entries were removed from or added after the head),
    ``audit.checkpoint_invalid`` / ``audit.checkpoint_mismatch`` (a signed checkpoint fails or
    no longer matches the chain).
    """
    checked = 0
    expected_seq = 1
    previous = GENESIS_HASH
    hashes: dict[int, str] = {}
    problem: ChainProblem | None = None
    rows = session.scalars(
        select(AuditEntry).where(AuditEntry.chain == chain).order_by(AuditEntry.seq)
    )
    for entry in rows:
        checked += 1
        if entry.seq != expected_seq:
            problem = ChainProblem(
                "audit.link_missing",
                f"entry {expected_seq} is missing (next present is {entry.seq})",
                expected_seq,
                entry.id,
            )
            break
        if entry.prev_hash != previous:
            problem = ChainProblem(
                "audit.link_broken",
                f"entry {entry.seq} does not link to entry {entry.seq - 1}",
                entry.seq,
                entry.id,
            )
            break
        if entry_hash(entry) != entry.entry_hash:
            problem = ChainProblem(
                "audit.entry_modified",
                f"entry {entry.seq} was modified after it was written",
                entry.seq,
                entry.id,
            )
            break
        hashes[entry.seq] = entry.entry_hash
        previous = entry.entry_hash
        expected_seq += 1
    last_seq = expected_seq - 1
    head = session.get(AuditChainHead, chain)
    head_seq = head.seq if head is not None else 0
    if problem is None and head is not None and (head.seq, head.entry_hash) != (last_seq, previous):
        problem = ChainProblem(
            "audit.head_mismatch",
            f"the chain head says entry {head.seq} but the chain ends at entry {last_seq}",
            last_seq + 1 if head.seq > last_seq else head.seq,
            None,
        )
    checkpoints = session.scalars(
        select(AuditCheckpoint).where(AuditCheckpoint.chain == chain).order_by(AuditCheckpoint.seq)
    ).all()
    for checkpoint in checkpoints:
        if problem is not None:
            break
        key = public_keys.get(checkpoint.key_id)
        try:
            _require_key(key).verify(
                checkpoint.signature,
                _checkpoint_message(
                    chain, checkpoint.seq, checkpoint.entry_hash, checkpoint.signed_at
                ),
            )
        except InvalidSignature:
            problem = ChainProblem(
                "audit.checkpoint_invalid",
                f"the signed checkpoint at entry {checkpoint.seq} does not verify",
                checkpoint.seq,
                None,
            )
            break
        if hashes.get(checkpoint.seq) != checkpoint.entry_hash:
            problem = ChainProblem(
                "audit.checkpoint_mismatch",
                f"entry {checkpoint.seq} differs from what was signed at {checkpoint.signed_at}",
                checkpoint.seq,
                None,
            )
    return ChainReport(
        chain=chain,
        entries_checked=checked,
        checkpoints_checked=len(checkpoints),
        head_seq=head_seq,
        problem=problem,
    )


def _require_key(key: Ed25519PublicKey | None) -> Ed25519PublicKey:
    if key is None:
        raise InvalidSignature
    return key


# --- Query and export ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for listing entries of one account (all optional)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    family: str | None = None
    action: str | None = None
    actor_id: str | None = None
    outcome: str | None = None


def encode_cursor(entry_id: int) -> str:
    """Return the opaque cursor that continues after ``entry_id``."""
    return base64.urlsafe_b64encode(f"a:{entry_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Return the entry id inside a cursor.

    Raises:
        UsageError: Not a cursor from this API (``audit.cursor_invalid``).
    """
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, number = text.partition(":")
        value = int(number)
    except ValueError as error:
        raise UsageError("the cursor is not valid", code="audit.cursor_invalid") from error
    if tag != "a":
        raise UsageError("the cursor is not valid", code="audit.cursor_invalid")
    return value


def _filtered(account_id: str, query: AuditQuery) -> Select[AuditEntry]:
    statement = select(AuditEntry).where(AuditEntry.account_id == account_id)
    if query.since is not None:
        statement = statement.where(AuditEntry.time >= query.since)
    if query.until is not None:
        statement = statement.where(AuditEntry.time < query.until)
    if query.family:
        statement = statement.where(
            AuditEntry.action.startswith(query.family + ".", autoescape=True)
        )
    if query.action:
        statement = statement.where(AuditEntry.action == query.action)
    if query.actor_id:
        statement = statement.where(AuditEntry.actor_id == query.actor_id)
    if query.outcome:
        statement = statement.where(AuditEntry.outcome == query.outcome)
    return statement


def query_entries(
    session: Session, account_id: str, query: AuditQuery, *, cursor: str | None, limit: int
) -> tuple[list[AuditEntry], str | None]:
    """Return one page of entries, newest first, and the cursor of the next page (if any).

    Raises:
        UsageError: The cursor is malformed (``audit.cursor_invalid``).
    """
    statement = _filtered(account_id, query)
    if cursor:
        statement = statement.where(AuditEntry.id < decode_cursor(cursor))
    rows = list(session.scalars(statement.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _all(session: Session, account_id: str, query: AuditQuery) -> Iterator[AuditEntry]:
    statement = _filtered(account_id, query).order_by(AuditEntry.id)
    yield from session.scalars(statement.execution_options(yield_per=500))


def export_jsonl(session: Session, account_id: str, query: AuditQuery) -> Iterator[str]:
    """Yield the matching entries, oldest first, as JSON Lines."""
    for entry in _all(session, account_id, query):
        yield json.dumps(entry_to_dict(entry), sort_keys=True, separators=(",", ":")) + "\n"


CSV_COLUMNS: Final = (
    "id",
    "time",
    "chain",
    "seq",
    "action",
    "outcome",
    "severity",
    "actor_type",
    "actor_id",
    "actor_name",
    "target_type",
    "target_id",
    "request_id",
    "source_address",
    "details",
    "prev_hash",
    "entry_hash",
)


def export_csv(session: Session, account_id: str, query: AuditQuery) -> Iterator[str]:
    """Yield the matching entries, oldest first, as CSV (header first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in _all(session, account_id, query):
        data = entry_to_dict(entry)
        data["details"] = json.dumps(data["details"], sort_keys=True, separators=(",", ":"))
        writer.writerow([_csv_safe(data[column]) for column in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def _csv_safe(value: object) -> object:
    # Neutralise spreadsheet formulas (CSV injection) in free-text fields.
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@"}:
        return "'" + value
    return value


ExportFormat = Literal["jsonl", "csv"]
