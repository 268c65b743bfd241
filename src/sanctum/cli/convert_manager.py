"""How ``sanctum convert`` talks to the Enclave Manager the user is logged in to.

Without ``--offline``, a local conversion registers its build (``pending``, with its allowlisting
task) in the manager named by ``sanctum login`` (or ``SANCTUM_MANAGER_URL``/``SANCTUM_API_KEY``);
with ``--remote`` the manager runs the conversion itself as a job (registry images only, signed
with the account's key) and the CLI follows the job until it ends. When no manager is known, a
local conversion stays offline and says so.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sanctum.cli._base import stderr_console
from sanctum.converter.convert import ConvertRequest, ConvertResponse
from sanctum.errors import SanctumError, UnavailableError, UsageError
from sanctum.manager.client import ManagerClient, load_client

__all__ = ["manager_for_convert", "register_build", "run_remote"]

#: How long ``--remote`` follows a job before giving up (the job itself goes on).
REMOTE_TIMEOUT_SECONDS: Final = 3600.0
_POLL_SECONDS: Final = 0.5


def manager_for_convert(app: str | None, *, remote: bool, quiet: bool) -> ManagerClient | None:
    """Return a client of the logged-in manager, or ``None`` to convert offline.

    Raises:
        UsageError: ``--remote`` without a manager (``client.not_logged_in``), or a manager
            without ``--app`` (``convert.app_missing``).
    """
    try:
        client = load_client()
    except UsageError as error:
        if error.code != "client.not_logged_in":
            raise
        if remote:
            raise UsageError(
                "--remote needs an Enclave Manager: run `sanctum login` first",
                code="client.not_logged_in",
            ) from error
        if not quiet:
            stderr_console().print(
                "[dim]note: not logged in to an Enclave Manager, so the build is not "
                "registered; converting offline (--offline silences this)[/]"
            )
        return None
    if not app:
        client.close()
        raise UsageError(
            "name the app the build belongs to with --app (or convert with --offline)",
            code="convert.app_missing",
        )
    return client


def register_build(client: ManagerClient, app: str, response: ConvertResponse) -> dict[str, Any]:
    """Register the converted image's build (pending) and return the ids to print.

    Raises:
        SanctumError: The manager refused the build (for example ``build.duplicate``).
    """
    account = client.account(None)
    created = client.request(
        "POST",
        f"/v1/accounts/{account}/builds",
        json_body={
            "app": app,
            "image_name": response.new_image[:500],
            "image_digest": response.image_digest,
            "tee": "sgx",
            "measurement": response.mrenclave,
            "signer": response.mrsigner,
            "isvprodid": response.isvprodid,
            "isvsvn": response.isvsvn,
            "debug": response.debug,
            "simulated": response.target == "simulated",
        },
    )
    task = created.get("task") or {}
    return {
        "buildId": created["build"]["id"],
        "buildStatus": created["build"]["status"],
        "taskId": task.get("id"),
    }


def _job_error(error: dict[str, Any]) -> SanctumError:
    code = str(error.get("code") or "job.failed")
    message = str(error.get("message") or "the conversion failed")
    cls: type[SanctumError] = (
        UnavailableError if code.startswith(("registry.", "job.", "database.")) else UsageError
    )
    try:
        return cls(message, code=code)
    except ValueError:
        return cls(message)


def run_remote(
    client: ManagerClient, app: str, request: ConvertRequest, *, quiet: bool
) -> dict[str, Any]:
    """Run the conversion on the manager and return the finished job's result.

    Raises:
        UsageError: A local-only option was given, or the manager refused the request.
        SanctumError: The job failed (with its code).
        UnavailableError: The job did not end in time (``convert.remote_timeout``).
    """
    if request.signing_key != "default":
        raise UsageError(
            "--remote signs with the account's key on the manager: drop --signing-key",
            code="usage.invalid",
        )
    body = request.model_dump(
        by_alias=True,
        mode="json",
        exclude={"signing_key", "app", "input_auth_config", "output_auth_config", "auth_config"},
    )
    body["signingKey"] = "account"
    account = client.account(None)
    job = client.request("POST", f"/v1/accounts/{account}/apps/{app}/convert", json_body=body)
    console = stderr_console()
    if not quiet:
        console.print(f"[cyan]•[/] conversion job {job['id']} queued on {client.url}")
    deadline = time.monotonic() + REMOTE_TIMEOUT_SECONDS
    last_step = None
    while job["status"] in {"queued", "running"}:
        if time.monotonic() > deadline:
            raise UnavailableError(
                f"job {job['id']} did not finish in time; follow it with the API",
                code="convert.remote_timeout",
            )
        time.sleep(_POLL_SECONDS)
        job = client.request("GET", f"/v1/accounts/{account}/jobs/{job['id']}")
        step = (job.get("progress") or {}).get("step")
        if step and step != last_step and not quiet:
            console.print(f"[cyan]•[/] {step}")
        last_step = step
    if job["status"] != "succeeded":
        raise _job_error(job.get("error") or {})
    result: dict[str, Any] = dict(job["result"])
    if not quiet:
        # The manager fills in its own URL and CA pin (ADR 0076): show what workloads will use.
        url = result.get("managerUrl") or "(SANCTUM_MANAGER_URL at start)"
        pin = result.get("managerCaPin") or "[yellow]none: the image cannot attest[/]"
        console.print(f"[cyan]•[/] the manifest names the manager {url}, CA pin {pin}")
    return result
