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
file on the manager's host. The registries must be on the ``converter_registry_allowlist``
(checked when the job is requested, when it starts, and on every HTTP request the job sends,
redirects and token realms included: :mod:`~sanctum.manager.services.registry_allowlist`).

The manager fills in its own identity (:func:`manager_identity`): its public URL and the pin of
the CA that workloads must trust for its TLS endpoint go into every enclave manifest it builds.
A request may name another URL (the CA pin still authenticates whatever answers there) but no
other pin (``conversion.manager_ca_pin_mismatch``). See ADR 0076.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
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
from sanctum.converter.manifest import ca_pin_from_certificate
from sanctum.converter.manifest_errors import BuildOptionError, ManifestError, SigningKeyError
from sanctum.converter.oci.reference import RegistryReference, parse_image_reference
from sanctum.converter.oci.registry import (
    RegistryAuth,
    RegistryClient,
    RegistrySink,
    RegistrySource,
    default_transport,
)
from sanctum.converter.runtime_layer import LauncherAsset, load_launcher_asset
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
from sanctum.manager.services.registry_allowlist import AllowlistTransport, RegistryAllowlist
from sanctum.manager.settings import ManagerSettings

__all__ = [
    "CONVERSION",
    "ManagerIdentity",
    "account_signing_key",
    "delete_registry_credential",
    "list_registry_credentials",
    "manager_identity",
    "registry_allowlist",
    "run_conversion",
    "start_conversion",
]

_log = logging.getLogger(__name__)
CONVERSION: Final = "conversion"
_SECRET_FIELDS: Final = {"input_auth_config", "output_auth_config", "auth_config"}
#: Result flag of a build whose manifest has no manager CA pin (``dev`` profile only).
PIN_MISSING_FLAG: Final = "manager-ca-pin-missing"


@dataclass(frozen=True, slots=True)
class ManagerIdentity:
    """How workloads reach and authenticate this manager (filled into enclave manifests).

    Attributes:
        url: The manager's https URL as workloads reach it, or ``None`` when unknown (the
            launcher then needs ``SANCTUM_MANAGER_URL``).
        ca_pin: ``sha256:<hex>`` of the SubjectPublicKeyInfo of the CA that workloads must
            trust for the manager's TLS endpoint, or ``None`` when unknown.
    """

    url: str | None
    ca_pin: str | None


def _bound_url(settings: ManagerSettings) -> str | None:
    """Return the https URL of the bound address (``dev`` profile), or ``None``."""
    if settings.insecure_http or settings.port == 0:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        settings.host, settings.host
    )
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"https://{host}:{settings.port}"


def manager_identity(settings: ManagerSettings) -> ManagerIdentity:
    """Return this manager's URL and CA pin for enclave manifests.

    The URL is ``public_url``; in the ``dev`` profile without it, the bound address. The CA is
    ``public_ca_file``; without it, the manager's own TLS CA (``<data_dir>/tls/ca.pem``) when
    it serves its own certificate (neither ``tls_cert`` nor plain HTTP).

    Raises:
        UsageError: The CA file cannot be read or is not a certificate
            (``conversion.manager_ca_unreadable``).
    """
    url = settings.public_url
    if url is None and settings.profile == "dev":
        url = _bound_url(settings)
    ca_file = settings.public_ca_file
    if ca_file is None and settings.tls_cert is None and not settings.insecure_http:
        own = settings.data_dir / "tls" / "ca.pem"
        ca_file = own if own.is_file() else None
    if ca_file is None:
        return ManagerIdentity(url, None)
    try:
        pin = ca_pin_from_certificate(ca_file.read_bytes())
    except (OSError, ManifestError) as error:
        raise UsageError(
            f"the manager's public CA {ca_file} cannot be read as a certificate",
            code="conversion.manager_ca_unreadable",
            hint="point public_ca_file at the PEM of the CA of the manager's TLS endpoint",
        ) from error
    return ManagerIdentity(url, pin)


def _with_manager_identity(settings: ManagerSettings, body: ConversionIn) -> ConversionIn:
    """Return ``body`` with the manager's URL and CA pin filled in (a request may not differ).

    Outside the ``dev`` profile a request's pin is only accepted when it is the manager's own:
    when the manager knows no CA (an operator ``tls_cert`` or plain HTTP behind a proxy, and no
    ``public_ca_file``), any editor could otherwise put the pin of a CA they control into a
    production manifest, and the workloads would attest to whoever holds that CA's keys.

    Raises:
        UsageError: The request names another CA pin than the manager's
            (``conversion.manager_ca_pin_mismatch``), or, outside the ``dev`` profile, the
            manager knows no CA of its own, whether the request names a pin or not
            (``conversion.manager_ca_unknown``).
    """
    identity = manager_identity(settings)
    pin = body.manager_ca_pin
    if identity.ca_pin is None and pin is not None and settings.profile != "dev":
        raise UsageError(
            f"managerCaPin {pin} cannot be checked: the manager does not know the CA of its own "
            "TLS endpoint, and a pin it cannot check is not put into a production manifest",
            code="conversion.manager_ca_unknown",
            hint="set public_ca_file in the manager's settings to the CA workloads must pin",
        )
    if pin is not None and identity.ca_pin is not None and pin != identity.ca_pin:
        raise UsageError(
            f"managerCaPin {pin} is not the pin of this manager's CA ({identity.ca_pin}): "
            "workloads would refuse to attest to it",
            code="conversion.manager_ca_pin_mismatch",
            hint="leave managerCaPin out: the manager fills in its own",
        )
    pin = identity.ca_pin or pin
    if pin is None and settings.profile != "dev":
        raise UsageError(
            "the manager does not know the CA its workloads must pin, so the image could "
            "never attest",
            code="conversion.manager_ca_unknown",
            hint="set public_ca_file in the manager's settings",
        )
    return body.model_copy(
        update={"manager_url": body.manager_url or identity.url, "manager_ca_pin": pin}
    )


def registry_allowlist(settings: ManagerSettings) -> RegistryAllowlist:
    """Return the registry allowlist of ``settings`` (the profile's default when unset)."""
    return RegistryAllowlist.parse(settings.registry_allowlist())


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


def _api_host(image: str) -> str:
    """Return the host (and port) a registry reference's API is served on."""
    reference = parse_image_reference(image)
    if not isinstance(reference, RegistryReference):  # pragma: no cover (checked before)
        raise UsageError("not a registry reference", code="conversion.reference_not_registry")
    return reference.api_host


def _secrets_context(job_id: str) -> str:
    return f"job:{job_id}:registry_credentials"


def _credentials_context(account_id: str, registry: str) -> str:
    return f"registry_credential:{account_id}:{registry}"


def _auth_json(auth: AuthConfig | None) -> dict[str, str] | None:
    if auth is None:
        return None
    return {"username": auth.username, "password": auth.password.get_secret_value()}


def _convert_request(
    body: ConversionIn | Mapping[str, Any], signing_pem: str | None, *, app_id: str | None
) -> ConvertRequest:
    """Return the converter's request (without credentials) for ``body``.

    The manifest names the app by its id, which (unlike a name) no other account can share.

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
    fields["app"] = app_id
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
        UsageError: An image is not a registry reference, or an option is invalid, or the
            request names another manager CA pin (``conversion.manager_ca_pin_mismatch``).
        RegistryNotAllowedError: A registry is not on the allowlist
            (``conversion.registry_not_allowed``).
        SigningKeyError: The public debug key without ``debug``.
    """
    app = get_app(ctx, account_id, app_ref)
    input_registry = _registry_of(body.input_image_name, "inputImageName")
    output_registry = _registry_of(body.output_image_name, "outputImageName")
    allowlist = registry_allowlist(ctx.runtime.settings)
    allowlist.check_registry(_api_host(body.input_image_name), field="inputImageName")
    allowlist.check_registry(_api_host(body.output_image_name), field="outputImageName")
    body = _with_manager_identity(ctx.runtime.settings, body)
    if body.signing_key == "default" and not body.debug:
        raise SigningKeyError(
            "the default signing key is public: it may sign debug builds only",
            code="signing_key.debug_key_requires_debug",
            hint='use "signingKey": "account" (the account\'s own key), or convert with debug',
        )
    # Everything but the key is checked now, with the debug key standing in for the account's.
    try:
        draft = _convert_request(body.model_copy(update={"debug": True}), None, app_id=app.id)
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
            "manager_url": body.manager_url,
            "manager_ca_pin": body.manager_ca_pin,
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


@contextmanager
def _registry_stores(
    request: ConvertRequest,
    *,
    input_auth: RegistryAuth | None,
    output_auth: RegistryAuth | None,
    settings: ManagerSettings,
    transport: httpx.BaseTransport | None,
) -> Iterator[tuple[RegistrySource, RegistrySink]]:
    """Open the source and sink registries behind the allowlist transport.

    Raises:
        UsageError: The registry CA bundle cannot be loaded (``registry.bad_ca_bundle``).
    """
    allowlist = registry_allowlist(settings)
    verify: bool | str = (
        str(settings.converter_registry_ca) if settings.converter_registry_ca else True
    )

    def client(image: str, auth: RegistryAuth | None, *, push: bool) -> RegistryClient:
        reference = parse_image_reference(image)
        if not isinstance(reference, RegistryReference):  # pragma: no cover (checked before)
            raise UsageError("not a registry reference", code="conversion.reference_not_registry")
        inner = transport
        if inner is None:
            try:
                tls: ssl.SSLContext | bool = (
                    ssl.create_default_context(cafile=verify) if isinstance(verify, str) else True
                )
            except (OSError, ssl.SSLError) as error:
                raise UsageError(
                    f"cannot load the registry CA bundle {verify}: {error}",
                    code="registry.bad_ca_bundle",
                ) from None
            # The converter's own transport (blob bodies without copies; ADR 0125), guarded.
            inner = default_transport(tls)
        return RegistryClient(
            reference,
            auth=auth,
            push=push,
            verify=verify,
            transport=AllowlistTransport(inner, allowlist),
        )

    source_client = client(request.input_image_name, input_auth, push=False)
    with RegistrySource(source_client.reference, source_client) as source:
        sink_client = client(request.output_image_name, output_auth, push=True)
        with RegistrySink(sink_client.reference, sink_client) as sink:
            yield source, sink


def run_conversion(run: JobRun, *, transport: httpx.BaseTransport | None = None) -> None:
    """Run one conversion job (the ``conversion`` job handler).

    Args:
        run: The claimed job.
        transport: The httpx transport under the allowlist guard (tests pass a fake one);
            default: a real one.

    Raises:
        RegistryNotAllowedError: A registry, redirect or token realm is off the allowlist.
        SanctumError: The conversion failed; the error's code becomes the job's.
    """
    runtime = run.runtime
    settings = runtime.settings
    request = run.request
    input_registry = _registry_of(request["input_image_name"], "inputImageName")
    output_registry = _registry_of(request["output_image_name"], "outputImageName")
    # The settings may have changed since the job was queued: check again before any I/O.
    allowlist = registry_allowlist(settings)
    allowlist.check_registry(_api_host(request["input_image_name"]), field="inputImageName")
    allowlist.check_registry(_api_host(request["output_image_name"]), field="outputImageName")
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
    convert_request = _convert_request(request, signing_pem, app_id=run.app_id)
    launcher: LauncherAsset | None = None
    if settings.launcher_path is not None:
        # The executable, with its directory form when PATH.d exists (Gramine builds ship it),
        # or the launcher directory itself (ADR 0135).
        try:
            launcher = load_launcher_asset(settings.launcher_path)
        except BuildOptionError as error:
            raise UsageError(
                f"the launcher {settings.launcher_path} cannot be used: {error.message}",
                code="conversion.launcher_unreadable",
            ) from error
    state: dict[str, Any] = {"step": "starting", "attempt": run.attempts}
    run.progress(state, force=True)

    def on_progress(event: ConvertProgress) -> None:
        report = _progress_report(event, state)
        run.progress(report, force=event.event in {"step", "layer-done"})

    with _registry_stores(
        convert_request,
        input_auth=input_auth,
        output_auth=output_auth,
        settings=settings,
        transport=transport,
    ) as (source, sink):
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
            "managerUrl": run.request.get("manager_url"),
            "managerCaPin": run.request.get("manager_ca_pin"),
            "buildId": build.id,
            "taskId": task_id,
            "buildStatus": str(build.status),
            "buildExisting": reused,
        }
        if result["managerCaPin"] is None:
            # Only the dev profile gets here: the launcher will refuse to attest without a pin.
            result["flags"] = [*result.get("flags", []), PIN_MISSING_FLAG]
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
