"""Conversions run by the manager: queue a job, convert, register the build, open its task.

:func:`start_conversion` checks the request, seals the per-request registry credentials into the
job (they are erased when the job ends; with ``saveCredentials`` they are also kept, sealed, per
account and registry) and queues a ``conversion`` job. :func:`run_conversion` (the job handler)
opens the registries, signs with the account's signing key (RSA-3072, e=3, created on first use
and sealed by the secret box; Sanctum's public debug key only for ``debug`` builds, flagged),
converts, and in one transaction registers the build as ``pending``, opens its allowlisting task,
audits ``build.converted`` and marks the job succeeded. Credentials appear in no log line, job
result, audit entry or error message.

Only registry references are accepted: an ``oci:`` or ``docker-archive:`` reference would name a
file on the manager's host.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sanctum.converter.convert import (
    AuthConfig,
    ConvertProgress,
    ConvertRequest,
    ConvertResponse,
    PemSigningKey,
    check_request,
    convert,
)
from sanctum.converter.keys import (
    generate_signing_key,
    load_signing_key,
    signing_key_mrsigner,
    signing_key_pem,
)
from sanctum.converter.manifest_errors import SigningKeyError
from sanctum.converter.oci import open_sink, open_source
from sanctum.converter.oci.reference import RegistryReference, parse_image_reference
from sanctum.converter.oci.registry import RegistryAuth
from sanctum.errors import ConflictError, NotFoundError, UsageError
from sanctum.manager.models_attestation import App, Build
from sanctum.manager.models_jobs import AccountSigningKey, Job, RegistryCredential
from sanctum.manager.runtime import Runtime
from sanctum.manager.schemas_attestation import BuildCreate
from sanctum.manager.schemas_jobs import ConversionIn
from sanctum.manager.services.apps import get_app
from sanctum.manager.services.audit import audit
from sanctum.manager.services.builds import create_build
from sanctum.manager.services.context import ServiceContext
from sanctum.manager.services.jobs import JobRun, actor_of, create_job

__all__ = [
    "CONVERSION",
    "account_signing_key",
    "delete_registry_credential",
    "list_registry_credentials",
    "run_conversion",
    "start_conversion",
]

_log = logging.getLogger(__name__)
CONVERSION: Final = "conversion"
_SECRET_FIELDS: Final = {"input_auth_config", "output_auth_config", "auth_config"}


def _registry_of(image: str, field: str) -> str:
    """Return the registry host of a registry reference.

    Raises:
        UsageError: Not a registry reference (``conversion.reference_not_registry``).
    """
    reference = parse_image_reference(image)
    if not isinstance(reference, RegistryReference):
        raise UsageError(
            f"{field} must name a registry image (registry/repository:tag); the manager does "
            "not read or write files on its host",
            code="conversion.reference_not_registry",
        )
    return reference.registry


def _secrets_context(job_id: str) -> str:
    return f"job:{job_id}:registry_credentials"


def _credentials_context(account_id: str, registry: str) -> str:
    return f"registry_credential:{account_id}:{registry}"


def _auth_json(auth: AuthConfig | None) -> dict[str, str] | None:
    if auth is None:
        return None
    return {"username": auth.username, "password": auth.password.get_secret_value()}


def _convert_request(
    body: ConversionIn | Mapping[str, Any], signing_pem: str | None
) -> ConvertRequest:
    """Return the converter's request (without credentials) for ``body``.

    Raises:
        pydantic.ValidationError: A field is invalid.
    """
    fields = (
        body.model_dump(exclude=_SECRET_FIELDS | {"save_credentials", "signing_key", "app"})
        if isinstance(body, ConversionIn)
        else {k: v for k, v in body.items() if k not in {"save_credentials", "signing_key", "app"}}
    )
    if fields.get("rw_dirs") is None:
        fields.pop("rw_dirs", None)
    fields["signing_key"] = (
        "default" if signing_pem is None else PemSigningKey(pem=SecretStr(signing_pem))
    )
    return ConvertRequest.model_validate(fields)


def _save_credentials(
    ctx: ServiceContext, account_id: str, registry: str, auth: AuthConfig
) -> None:
    sealed = ctx.runtime.box.seal(
        ctx.session,
        auth.password.get_secret_value().encode(),
        context=_credentials_context(account_id, registry),
        now=ctx.now,
    )
    row = ctx.session.scalars(
        select(RegistryCredential).where(
            RegistryCredential.account_id == account_id, RegistryCredential.host == registry
        )
    ).first()
    if row is None:
        ctx.session.add(
            RegistryCredential(
                account_id=account_id,
                host=registry,
                username=auth.username,
                password_sealed=sealed,
                created_at=ctx.now,
                updated_at=ctx.now,
            )
        )
    else:
        row.username = auth.username
        row.password_sealed = sealed
        row.updated_at = ctx.now
    audit(
        ctx,
        "settings.registry_credential_saved",
        account_id=account_id,
        target_type="registry_credential",
        target_id=registry,
        details={"registry": registry, "username": auth.username},
    )


def start_conversion(ctx: ServiceContext, account_id: str, app_ref: str, body: ConversionIn) -> Job:
    """Check a conversion request and queue its job.

    Raises:
        NotFoundError: No such app.
        UsageError: An image is not a registry reference, or an option is invalid.
        SigningKeyError: The public debug key without ``debug``.
    """
    app = get_app(ctx, account_id, app_ref)
    input_registry = _registry_of(body.input_image_name, "inputImageName")
    output_registry = _registry_of(body.output_image_name, "outputImageName")
    if body.signing_key == "default" and not body.debug:
        raise SigningKeyError(
            "the default signing key is public: it may sign debug builds only",
            code="signing_key.debug_key_requires_debug",
            hint='use "signingKey": "account" (the account\'s own key), or convert with debug',
        )
    # Everything but the key is checked now, with the debug key standing in for the account's.
    try:
        draft = _convert_request(body.model_copy(update={"debug": True}), None)
    except ValidationError as error:
        problems = "; ".join(str(e.get("msg")) for e in error.errors())
        raise UsageError(
            f"the conversion request is invalid: {problems}", code="conversion.request_invalid"
        ) from error
    check_request(draft)
    input_auth = body.input_auth_config or body.auth_config
    output_auth = body.output_auth_config or body.auth_config
    job_id = str(uuid.uuid4())
    secrets = {"input": _auth_json(input_auth), "output": _auth_json(output_auth)}
    sealed = None
    if input_auth is not None or output_auth is not None:
        sealed = ctx.runtime.box.seal(
            ctx.session,
            json.dumps(secrets).encode(),
            context=_secrets_context(job_id),
            now=ctx.now,
        )
    if body.save_credentials:
        if input_auth is not None:
            _save_credentials(ctx, account_id, input_registry, input_auth)
        if output_auth is not None and (output_registry != input_registry or input_auth is None):
            _save_credentials(ctx, account_id, output_registry, output_auth)
    request = body.model_dump(mode="json", exclude=_SECRET_FIELDS | {"save_credentials", "app"})
    job = create_job(
        ctx,
        account_id,
        kind=CONVERSION,
        app_id=app.id,
        request=request,
        secrets_sealed=sealed,
        job_id=job_id,
    )
    audit(
        ctx,
        "build.conversion_requested",
        account_id=account_id,
        target_type="job",
        target_id=job.id,
        details={
            "app_id": app.id,
            "input": body.input_image_name,
            "output": body.output_image_name,
            "credentials_given": sealed is not None,
            "credentials_saved": body.save_credentials and sealed is not None,
            "debug": body.debug,
        },
    )
    return job


def list_registry_credentials(ctx: ServiceContext, account_id: str) -> list[RegistryCredential]:
    """Return the account's saved registry credentials (sealed passwords stay sealed)."""
    return list(
        ctx.session.scalars(
            select(RegistryCredential)
            .where(RegistryCredential.account_id == account_id)
            .order_by(RegistryCredential.host)
        ).all()
    )


def delete_registry_credential(ctx: ServiceContext, account_id: str, registry: str) -> None:
    """Forget the saved credentials of one registry.

    Raises:
        NotFoundError: None are saved (``registry_credential.not_found``).
    """
    row = ctx.session.scalars(
        select(RegistryCredential).where(
            RegistryCredential.account_id == account_id, RegistryCredential.host == registry
        )
    ).first()
    if row is None:
        raise NotFoundError(
            "no credentials are saved for this registry", code="registry_credential.not_found"
        )
    ctx.session.delete(row)
    audit(
        ctx,
        "settings.registry_credential_deleted",
        account_id=account_id,
        target_type="registry_credential",
        target_id=registry,
    )


def account_signing_key(session: Session, runtime: Runtime, account_id: str) -> rsa.RSAPrivateKey:
    """Return the account's enclave signing key, creating (and sealing) it on first use.

    Concurrent first uses are safe: the loser of the insert race reads the winner's key.
    """
    context = f"account_signing_key:{account_id}"
    row = session.get(AccountSigningKey, account_id)
    if row is None:
        key = generate_signing_key()
        now = runtime.clock.now()
        candidate = AccountSigningKey(
            account_id=account_id,
            key_sealed=runtime.box.seal(session, signing_key_pem(key), context=context, now=now),
            mrsigner=signing_key_mrsigner(key).hex(),
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(candidate)
                session.flush()
        except IntegrityError:
            row = session.get(AccountSigningKey, account_id)
        else:
            return key
        if row is None:  # pragma: no cover (the winner's row is there after a conflict)
            raise ConflictError("the signing key is being created; retry", code="job.retry")
    return load_signing_key(runtime.box.open(session, row.key_sealed, context=context))


def _auth(
    session: Session,
    runtime: Runtime,
    account_id: str,
    registry: str,
    given: Mapping[str, str] | None,
) -> RegistryAuth | None:
    if given is not None:
        return RegistryAuth(given["username"], given["password"])
    row = session.scalars(
        select(RegistryCredential).where(
            RegistryCredential.account_id == account_id, RegistryCredential.host == registry
        )
    ).first()
    if row is None:
        return None
    password = runtime.box.open(
        session, row.password_sealed, context=_credentials_context(account_id, registry)
    )
    return RegistryAuth(row.username, password.decode())


def _progress_report(event: ConvertProgress, state: dict[str, Any]) -> dict[str, Any]:
    """Fold one converter progress event into the job's progress document."""
    if event.event == "step":
        state["step"] = event.message
    elif event.layer is not None:
        state["layerCount"] = event.layer_count
        state.setdefault("layers", {})
        entry: dict[str, Any] = {"done": event.done}
        if event.descriptor is not None:
            entry["size"] = event.descriptor.size
        if event.outcome is not None:
            entry["outcome"] = event.outcome
        state["layers"][str(event.layer)] = entry
        state["layersDone"] = sum(1 for v in state["layers"].values() if "outcome" in v)
    return state


def result_fields(response: ConvertResponse) -> dict[str, Any]:
    """Return a job's result: Data Shield's response fields plus Sanctum's."""
    fields = response.model_dump(by_alias=True, mode="json")
    fields["imageSHA"] = response.image_digest
    return fields


def run_conversion(run: JobRun) -> None:
    """Run one conversion job (the ``conversion`` job handler).

    Raises:
        SanctumError: The conversion failed; the error's code becomes the job's.
    """
    runtime = run.runtime
    settings = runtime.settings
    request = run.request
    input_registry = _registry_of(request["input_image_name"], "inputImageName")
    output_registry = _registry_of(request["output_image_name"], "outputImageName")
    with runtime.db.transaction() as session:
        given: dict[str, Any] = {"input": None, "output": None}
        if run.secrets_sealed is not None:
            given = json.loads(
                runtime.box.open(session, run.secrets_sealed, context=_secrets_context(run.id))
            )
        input_auth = _auth(session, runtime, run.account_id, input_registry, given.get("input"))
        output_auth = _auth(session, runtime, run.account_id, output_registry, given.get("output"))
        signing_pem: str | None = None
        if request.get("signing_key", "account") == "account":
            key = account_signing_key(session, runtime, run.account_id)
            signing_pem = signing_key_pem(key).decode()
    convert_request = _convert_request(request, signing_pem)
    launcher: bytes | None = None
    if settings.launcher_path is not None:
        try:
            launcher = settings.launcher_path.read_bytes()
        except OSError as error:
            raise UsageError(
                f"the launcher {settings.launcher_path} cannot be read: {error.strerror}",
                code="conversion.launcher_unreadable",
            ) from error
    verify: bool | str = (
        str(settings.converter_registry_ca) if settings.converter_registry_ca else True
    )
    state: dict[str, Any] = {"step": "starting", "attempt": run.attempts}
    run.progress(state, force=True)

    def on_progress(event: ConvertProgress) -> None:
        report = _progress_report(event, state)
        run.progress(report, force=event.event in {"step", "layer-done"})

    with (
        open_source(convert_request.input_image_name, auth=input_auth, verify=verify) as source,
        open_sink(convert_request.output_image_name, auth=output_auth, verify=verify) as sink,
    ):
        response = convert(
            convert_request,
            source=source,
            sink=sink,
            launcher_asset=launcher,
            progress=on_progress,
        )
    _register(run, response)


def _register(run: JobRun, response: ConvertResponse) -> None:
    """Register the build (pending), open its task, audit, and complete the job, atomically.

    Raises:
        NotFoundError: The app was deleted meanwhile (``conversion.app_deleted``).
        ConflictError: The measurement belongs to another app (``build.duplicate``).
    """
    runtime = run.runtime
    with runtime.db.transaction() as session:
        ctx = ServiceContext(
            session=session, now=runtime.clock.now(), actor=actor_of(run), runtime=runtime
        )
        app = session.get(App, run.app_id) if run.app_id else None
        if app is None or app.account_id != run.account_id:
            raise NotFoundError(
                "the app of this conversion was deleted", code="conversion.app_deleted"
            )
        existing = session.scalars(
            select(Build).where(
                Build.account_id == run.account_id, Build.measurement == response.mrenclave
            )
        ).first()
        if existing is not None and existing.app_id != app.id:
            raise ConflictError(
                f"the measurement {response.mrenclave} is already registered for another app",
                code="build.duplicate",
            )
        if existing is not None:
            build, task_id, reused = existing, existing.task_id, True
        else:
            build, task = create_build(
                ctx,
                run.account_id,
                BuildCreate(
                    app=app.id,
                    image_name=response.new_image,
                    image_digest=response.image_digest,
                    tee="sgx",
                    measurement=response.mrenclave,
                    signer=response.mrsigner,
                    isvprodid=response.isvprodid,
                    isvsvn=response.isvsvn,
                    debug=response.debug,
                    simulated=response.target == "simulated",
                ),
            )
            task_id, reused = task.id, False
        result = result_fields(response) | {
            "buildId": build.id,
            "taskId": task_id,
            "buildStatus": str(build.status),
            "buildExisting": reused,
        }
        audit(
            ctx,
            "build.converted",
            account_id=run.account_id,
            target_type="build",
            target_id=build.id,
            details={
                "job_id": run.id,
                "app_id": app.id,
                "image": response.new_image,
                "digest": response.image_digest,
                "mrenclave": response.mrenclave,
                "mrsigner": response.mrsigner,
                "target": response.target,
                "flags": list(response.flags),
                "existing_build": reused,
            },
        )
        run.complete(session, result=result, build_id=build.id, task_id=task_id)
    if reused:
        _log.info("conversion job %s matched the existing build %s", run.id, build.id)
