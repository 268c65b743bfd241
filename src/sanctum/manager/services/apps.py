"""Apps: what an app's workloads are, what they receive, and what evidence the app accepts.

An app names its images and enclave size, its certificate configuration, the secrets its
workloads receive (sealed at rest; write-only through the API), its environment and argument
policy, and its attestation policy (:class:`sanctum.manager.policy.AttestationPolicy`). The
certificate names it asks for are domains, each approved through a task
(:mod:`sanctum.manager.services.domains`).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Table, Text, bindparam, delete, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sanctum.errors import ConflictError, NotFoundError, UsageError
from sanctum.manager.db import Prepared
from sanctum.manager.models import Account, Task
from sanctum.manager.models_attestation import App, AppSecret, Domain
from sanctum.manager.policy import AttestationPolicy, loosening_changes
from sanctum.manager.schemas_attestation import (
    AppCreate,
    AppPolicy,
    AppPublic,
    AppSecretIn,
    AppSecretPublic,
    AppUpdate,
    ArgsPolicy,
    CertificateConfig,
    DomainPublic,
    EnvPolicy,
)
from sanctum.manager.services.audit import audit
from sanctum.manager.services.context import ServiceContext
from sanctum.manager.services.tasks import APP_POLICY_CHANGE, TaskType, create_task

__all__ = [
    "APP_POLICY_CHANGE_TYPE",
    "DEFAULT_ENCLAVE_SIZE_MIB",
    "DEFAULT_THREADS",
    "AppPolicyChange",
    "AppRow",
    "SecretRow",
    "app_policy",
    "app_public",
    "create_app",
    "delete_app",
    "delete_secret",
    "get_app",
    "list_apps",
    "open_sealed_secret",
    "open_secret",
    "resolve_app",
    "resolve_app_row",
    "secret_rows",
    "set_secret",
    "update_app",
    "update_app_request",
]

DEFAULT_ENCLAVE_SIZE_MIB = 1024
DEFAULT_THREADS = 16


def _secret_context(app_id: str, name: str) -> str:
    return f"app_secret:{app_id}:{name}"


def app_policy(app: App) -> AttestationPolicy:
    """Return the full attestation policy of ``app`` (its policy plus the ISV floor).

    Raises:
        UsageError: The stored policy is invalid (``policy.invalid``).
    """
    return AttestationPolicy.from_dict(
        {**app.policy, "isvprodid": app.isvprodid, "min_isvsvn": app.min_isvsvn}
    )


def _policy_dict(policy: AppPolicy) -> dict[str, Any]:
    data = policy.model_dump()
    # Validate now (unknown statuses, Revoked) so a bad policy is refused at the API.
    checked = AttestationPolicy.from_dict(data).to_dict()
    checked.pop("isvprodid", None)
    checked.pop("min_isvsvn", None)
    return checked


def get_app(ctx: ServiceContext, account_id: str, ref: str) -> App:
    """Return the account's app by id or name.

    Raises:
        NotFoundError: No such app in this account (``app.not_found``).
    """
    condition = App.name == ref
    if _is_uuid(ref):
        condition = (App.id == ref) | (App.name == ref)
    app = ctx.session.scalars(select(App).where(App.account_id == account_id, condition)).first()
    if app is None:
        raise NotFoundError(f"no app {ref!r} in this account", code="app.not_found")
    return app


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def resolve_app(session: Session, ref: str) -> App:
    """Return the app a workload names: its id, ``account/app``, or a name unique overall.

    Raises:
        NotFoundError: No such app (``attest.app_unknown``).
        ConflictError: The bare name exists in several accounts (``attest.app_ambiguous``).
    """
    if _is_uuid(ref):
        app = session.get(App, ref)
        if app is not None:
            return app
    statement = select(App)
    if "/" in ref:
        account_name, _, name = ref.partition("/")
        statement = statement.join(Account, Account.id == App.account_id).where(
            Account.name == account_name, App.name == name
        )
    else:
        statement = statement.where(App.name == ref)
    found = session.scalars(statement.limit(2)).all()
    if not found:
        raise NotFoundError(f"no app {ref!r}", code="attest.app_unknown")
    if len(found) > 1:
        raise ConflictError(
            f"the app name {ref!r} exists in several accounts",
            code="attest.app_ambiguous",
            hint="name the app by its id or as <account>/<app>",
        )
    return found[0]


@dataclass(frozen=True, slots=True)
class AppRow:
    """What an attestation reads of an app, in one statement (no ORM object).

    Attributes:
        id: The app id.
        account_id: Its account.
        account_name: The account's name.
        name: The app name.
        policy_text: The stored policy as JSON text (a cache key for its parsed form).
        isvprodid: The app's ISVPRODID, if it sets one.
        min_isvsvn: The app's ISVSVN floor.
        certificate: The certificate configuration.
        encrypted_dirs: The app's encrypted directories.
    """

    id: str
    account_id: str
    account_name: str
    name: str
    policy_text: str
    isvprodid: int | None
    min_isvsvn: int
    certificate: dict[str, Any]
    encrypted_dirs: list[str]


_APPS: Final = cast("Table", App.__table__)
_ACCOUNTS: Final = cast("Table", Account.__table__)
_APP_ROW: Final = select(
    _APPS.c.id,
    _APPS.c.account_id,
    _ACCOUNTS.c.name,
    _APPS.c.name,
    # The JSON text as stored (a CAST, so that no driver decodes it): parsed only on a miss of
    # the policy cache that it keys.
    sql_cast(_APPS.c.policy, Text),
    _APPS.c.isvprodid,
    _APPS.c.min_isvsvn,
    _APPS.c.certificate,
    _APPS.c.encrypted_dirs,
).join(_ACCOUNTS, _ACCOUNTS.c.id == _APPS.c.account_id)
_APP_BY_ID: Final = Prepared(_APP_ROW.where(_APPS.c.id == bindparam("ref")))
_APP_BY_NAME: Final = Prepared(_APP_ROW.where(_APPS.c.name == bindparam("ref")).limit(2))
_APP_BY_ACCOUNT_AND_NAME: Final = Prepared(
    _APP_ROW.where(
        _ACCOUNTS.c.name == bindparam("account"), _APPS.c.name == bindparam("ref")
    ).limit(2)
)


def resolve_app_row(connection: Connection, ref: str) -> AppRow:
    """Return what :func:`resolve_app` finds, as an :class:`AppRow` (the attestation hot path).

    The same resolution: an id, ``account/app``, or a name unique over all accounts.

    Raises:
        NotFoundError: No such app (``attest.app_unknown``).
        ConflictError: The bare name exists in several accounts (``attest.app_ambiguous``).
    """
    if _is_uuid(ref):
        rows = _APP_BY_ID.rows(connection, {"ref": ref})
        if rows:
            return AppRow(*rows[0])
    if "/" in ref:
        account_name, _, name = ref.partition("/")
        found = _APP_BY_ACCOUNT_AND_NAME.rows(connection, {"account": account_name, "ref": name})
    else:
        found = _APP_BY_NAME.rows(connection, {"ref": ref})
    if not found:
        raise NotFoundError(f"no app {ref!r}", code="attest.app_unknown")
    if len(found) > 1:
        raise ConflictError(
            f"the app name {ref!r} exists in several accounts",
            code="attest.app_ambiguous",
            hint="name the app by its id or as <account>/<app>",
        )
    return AppRow(*found[0])


@dataclass(frozen=True, slots=True)
class SecretRow:
    """A stored secret of an app, as the attestation reads it (the value still sealed)."""

    name: str
    delivery: str
    target: str
    sealed_value: bytes


_SECRETS: Final = cast("Table", AppSecret.__table__)
_SECRET_ROWS: Final = Prepared(
    select(_SECRETS.c.name, _SECRETS.c.delivery, _SECRETS.c.target, _SECRETS.c.sealed_value)
    .where(_SECRETS.c.app_id == bindparam("app_id"))
    .order_by(_SECRETS.c.name)
)


def secret_rows(connection: Connection, app_id: str) -> list[SecretRow]:
    """Return the app's secrets by name, values sealed (one Core statement)."""
    return [
        SecretRow(name, delivery, target, bytes(sealed))
        for name, delivery, target, sealed in _SECRET_ROWS.rows(connection, {"app_id": app_id})
    ]


def list_apps(ctx: ServiceContext, account_id: str) -> Sequence[App]:
    """Return the account's apps by name."""
    return ctx.session.scalars(
        select(App).where(App.account_id == account_id).order_by(App.name)
    ).all()


def _secret_bytes(secret: AppSecretIn) -> bytes:
    if secret.encoding == "utf-8":
        return secret.value.encode("utf-8")
    try:
        return base64.b64decode(secret.value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UsageError(
            "the secret value is not valid base64", code="app.secret_invalid"
        ) from error


def set_secret(ctx: ServiceContext, app: App, name: str, secret: AppSecretIn) -> AppSecret:
    """Create or replace a secret of ``app`` (sealed at rest; audited without its value).

    Raises:
        UsageError: The name or the value is invalid (``app.secret_invalid``).
    """
    if not 1 <= len(name) <= 200 or "/" in name:
        raise UsageError("secret names are 1 to 200 characters, no '/'", code="app.secret_invalid")
    target = secret.path if secret.delivery == "file" else (secret.env_name or name)
    if target is None:  # pragma: no cover (the schema requires a path for file delivery)
        raise UsageError("file delivery needs a path", code="app.secret_invalid")
    if secret.delivery == "env":
        EnvPolicy(passthrough=[target])  # Validates the variable name.
    sealed = ctx.runtime.box.seal(
        ctx.session, _secret_bytes(secret), context=_secret_context(app.id, name), now=ctx.now
    )
    existing = ctx.session.scalars(
        select(AppSecret).where(AppSecret.app_id == app.id, AppSecret.name == name)
    ).first()
    if existing is None:
        existing = AppSecret(
            app_id=app.id,
            name=name,
            delivery=secret.delivery,
            target=target,
            sealed_value=sealed,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        ctx.session.add(existing)
    else:
        existing.delivery = secret.delivery
        existing.target = target
        existing.sealed_value = sealed
        existing.updated_at = ctx.now
    ctx.session.flush()
    audit(
        ctx,
        "app.secret_set",
        account_id=app.account_id,
        target_type="app",
        target_id=app.id,
        details={"secret": name, "delivery": secret.delivery, "target": target},
    )
    return existing


def open_secret(ctx: ServiceContext, secret: AppSecret) -> bytes:
    """Return the clear value of a stored secret (only for sealing it to an attested key).

    Raises:
        EvidenceError: The sealed value does not open (``secret.*``).
    """
    return open_sealed_secret(ctx, secret.app_id, secret.name, secret.sealed_value)


def open_sealed_secret(ctx: ServiceContext, app_id: str, name: str, sealed: bytes) -> bytes:
    """Return the clear value of the sealed secret ``name`` of ``app_id``.

    Raises:
        EvidenceError: The sealed value does not open (``secret.*``).
    """
    return ctx.runtime.box.open(ctx.session, sealed, context=_secret_context(app_id, name))


def delete_secret(ctx: ServiceContext, app: App, name: str) -> None:
    """Delete a secret of ``app``.

    Raises:
        NotFoundError: No such secret (``app.secret_not_found``).
    """
    result = ctx.session.execute(
        delete(AppSecret).where(AppSecret.app_id == app.id, AppSecret.name == name)
    )
    if not getattr(result, "rowcount", 0):
        raise NotFoundError(f"no secret {name!r}", code="app.secret_not_found")
    audit(
        ctx,
        "app.secret_deleted",
        account_id=app.account_id,
        target_type="app",
        target_id=app.id,
        details={"secret": name},
    )


def create_app(ctx: ServiceContext, account_id: str, body: AppCreate) -> App:
    """Create an app with its secrets; its domains open approval tasks.

    Raises:
        ConflictError: The name is taken in this account (``app.name_taken``).
        UsageError: The policy or a secret is invalid.
    """
    from sanctum.manager.services.domains import request_domain  # noqa: PLC0415 (cycle)

    account = ctx.session.get(Account, account_id)
    if account is None:
        raise NotFoundError("no such account", code="account.not_found")
    app = App(
        account_id=account_id,
        name=body.name,
        description=body.description or "",
        input_image=body.input_image,
        output_image=body.output_image,
        isvprodid=body.isvprodid,
        min_isvsvn=body.min_isvsvn or 0,
        enclave_size_mib=body.enclave_size_mib or DEFAULT_ENCLAVE_SIZE_MIB,
        threads=body.threads or DEFAULT_THREADS,
        certificate=(body.certificate or CertificateConfig()).model_dump(),
        install_ca_trust=bool(body.install_ca_trust),
        encrypted_dirs=list(body.encrypted_dirs or []),
        env=(body.env or EnvPolicy()).model_dump(),
        args=(body.args or ArgsPolicy()).model_dump(),
        policy=_policy_dict(body.policy or AppPolicy()),
        created_by=ctx.actor.user_id or ctx.actor.id,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    try:
        with ctx.session.begin_nested():
            ctx.session.add(app)
            ctx.session.flush()
    except IntegrityError as error:
        raise ConflictError(
            f"an app named {body.name!r} exists in this account", code="app.name_taken"
        ) from error
    audit(
        ctx,
        "app.created",
        account_id=account_id,
        target_type="app",
        target_id=app.id,
        details={"name": app.name, "policy_hash": app_policy(app).policy_hash()},
    )
    for name, secret in body.secrets.items():
        set_secret(ctx, app, name, secret)
    for domain in body.domains:
        request_domain(ctx, app, domain)
    return app


class AppPolicyChange(BaseModel):
    """Payload of an ``app_policy_change`` task: a loosening of an app's attestation policy.

    Attributes:
        app_id: The app.
        policy: The full new policy (:meth:`AttestationPolicy.to_dict` form, with the ISV
            fields).
        base_policy_hash: The policy hash the change was requested against; the change fails
            if the app's policy changed meanwhile.
        loosened: The fields the change loosens (for the voters).
    """

    app_id: str
    policy: dict[str, Any]
    base_policy_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    loosened: list[str]


def _store_policy(app: App, policy: AttestationPolicy) -> None:
    stored = policy.to_dict()
    app.isvprodid = stored.pop("isvprodid")
    app.min_isvsvn = stored.pop("min_isvsvn")
    app.policy = stored


def _apply_policy_change(ctx: ServiceContext, task: Task, payload: BaseModel) -> None:
    if not isinstance(payload, AppPolicyChange):  # pragma: no cover (the registry validates)
        raise UsageError("wrong payload", code="task.payload_invalid")
    app = ctx.session.get(App, payload.app_id)
    if app is None or app.account_id != task.account_id:
        raise NotFoundError("the app no longer exists", code="app.not_found")
    before = app_policy(app).policy_hash()
    if before != payload.base_policy_hash:
        raise ConflictError(
            "the app's policy changed since this task was opened; request the change again",
            code="app.policy_changed",
        )
    _store_policy(app, AttestationPolicy.from_dict(payload.policy))
    app.updated_at = ctx.now
    audit(
        ctx,
        "app.policy_changed",
        account_id=app.account_id,
        target_type="app",
        target_id=app.id,
        details={
            "task": task.id,
            "loosened": payload.loosened,
            "policy_hash_before": before,
            "policy_hash": app_policy(app).policy_hash(),
        },
    )


#: Loosening an app's attestation policy needs approval (ADR 0056).
APP_POLICY_CHANGE_TYPE = TaskType(
    name=APP_POLICY_CHANGE,
    payload_model=AppPolicyChange,
    on_approved=_apply_policy_change,
    description="Loosen an app's attestation policy.",
)


def update_app(ctx: ServiceContext, account_id: str, ref: str, body: AppUpdate) -> App:
    """Change an app's settings; see :func:`update_app_request` (this drops the task).

    Raises:
        NotFoundError: No such app.
        UsageError: The policy is invalid.
    """
    app, _ = update_app_request(ctx, account_id, ref, body)
    return app


def update_app_request(
    ctx: ServiceContext, account_id: str, ref: str, body: AppUpdate
) -> tuple[App, Task | None]:
    """Change an app's settings; a policy change that loosens the policy opens a task.

    Settings other than the attestation policy (``policy``, ``isvprodid``, ``min_isvsvn``)
    apply at once. A policy change that only tightens applies at once too; one that loosens
    anything (:func:`sanctum.manager.policy.loosening_changes`) opens an ``app_policy_change``
    task and applies, whole, when approved. Changes are audited with the old and new hashes.

    Returns:
        The app and the task opened for a loosening policy change (``None`` if none).

    Raises:
        NotFoundError: No such app.
        UsageError: The policy is invalid.
    """
    app = get_app(ctx, account_id, ref)
    current = app_policy(app)
    before = current.policy_hash()
    changes: dict[str, Any] = body.model_dump(exclude_none=True)
    for field in ("description", "input_image", "output_image"):
        if field in changes:
            setattr(app, field, changes[field])
    for field in ("enclave_size_mib", "threads", "install_ca_trust", "encrypted_dirs"):
        if field in changes:
            setattr(app, field, changes[field])
    if body.certificate is not None:
        app.certificate = body.certificate.model_dump()
    if body.env is not None:
        app.env = body.env.model_dump()
    if body.args is not None:
        app.args = body.args.model_dump()
    wanted = {**current.to_dict()}
    if body.policy is not None:
        wanted = {
            **_policy_dict(body.policy),
            "isvprodid": current.isvprodid,
            "min_isvsvn": current.min_isvsvn,
        }
    for field in ("isvprodid", "min_isvsvn"):
        if field in changes:
            wanted[field] = changes[field]
    proposed = AttestationPolicy.from_dict(wanted)
    loosened = loosening_changes(current, proposed)
    task = None
    if loosened:
        task = create_task(
            ctx,
            account_id,
            APP_POLICY_CHANGE,
            AppPolicyChange(
                app_id=app.id,
                policy=proposed.to_dict(),
                base_policy_hash=before,
                loosened=list(loosened),
            ),
            f"Loosen the attestation policy of app {app.name} ({', '.join(loosened)})",
        )
    else:
        _store_policy(app, proposed)
    app.updated_at = ctx.now
    after = app_policy(app).policy_hash()
    details: dict[str, Any] = {
        "fields": sorted(changes),
        "policy_hash_before": before,
        "policy_hash": after,
    }
    if task is not None:
        details["policy_change_task"] = task.id
    audit(
        ctx,
        "app.updated",
        account_id=account_id,
        target_type="app",
        target_id=app.id,
        details=details,
    )
    return app, task


def delete_app(ctx: ServiceContext, account_id: str, ref: str) -> None:
    """Delete an app with its secrets, domains and builds (its certificates stay recorded).

    Raises:
        NotFoundError: No such app.
    """
    app = get_app(ctx, account_id, ref)
    ctx.session.delete(app)
    ctx.session.flush()
    audit(
        ctx,
        "app.deleted",
        account_id=account_id,
        target_type="app",
        target_id=app.id,
        details={"name": app.name},
    )


def app_public(ctx: ServiceContext, app: App, *, tasks: Sequence[Any] = ()) -> AppPublic:
    """Return the API view of ``app`` (its secrets by name only)."""
    from sanctum.manager.schemas import TaskPublic  # noqa: PLC0415 (keep the import list short)

    domains = ctx.session.scalars(
        select(Domain).where(Domain.app_id == app.id).order_by(Domain.name)
    ).all()
    secrets = ctx.session.scalars(
        select(AppSecret).where(AppSecret.app_id == app.id).order_by(AppSecret.name)
    ).all()
    policy: Mapping[str, Any] = {
        k: v for k, v in app.policy.items() if k not in {"version", "isvprodid", "min_isvsvn"}
    }
    return AppPublic(
        id=app.id,
        account_id=app.account_id,
        name=app.name,
        description=app.description,
        input_image=app.input_image,
        output_image=app.output_image,
        isvprodid=app.isvprodid,
        min_isvsvn=app.min_isvsvn,
        enclave_size_mib=app.enclave_size_mib,
        threads=app.threads,
        certificate=CertificateConfig.model_validate(app.certificate),
        install_ca_trust=app.install_ca_trust,
        encrypted_dirs=list(app.encrypted_dirs),
        env=EnvPolicy.model_validate(app.env),
        args=ArgsPolicy.model_validate(app.args),
        policy=AppPolicy.model_validate(policy),
        policy_hash=app_policy(app).policy_hash(),
        domains=[DomainPublic.model_validate(d) for d in domains],
        secrets=[AppSecretPublic.model_validate(s) for s in secrets],
        tasks=[TaskPublic.model_validate(t) for t in tasks],
        created_at=app.created_at,
        updated_at=app.updated_at,
    )
