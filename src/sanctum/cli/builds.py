"""``sanctum builds``: inspect enclave signatures and manage local signing keys.

- ``sanctum builds inspect-sigstruct FILE`` parses and verifies a SIGSTRUCT (Sanctum's
  ``manifest.sigstruct``, Gramine's ``.sig``, or the Intel SDK's) and prints its identity.
- ``sanctum builds keygen --out key.pem`` creates an RSA-3072, exponent-3 enclave signing key.

- ``sanctum builds list|show|register|revoke`` manage the builds registered in the Enclave
  Manager (``register --sigstruct`` takes the identity from a signed SIGSTRUCT).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, emit_json, json_option, stdout_console
from sanctum.converter.keys import generate_signing_key, signing_key_mrsigner, signing_key_pem
from sanctum.converter.sigstruct import SIGSTRUCT_SIZE, parse_sigstruct
from sanctum.errors import ConflictError, UsageError
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]


@click.group(cls=SanctumGroup, name="builds")
def group() -> None:
    """Enclave builds: SIGSTRUCTs, signing keys, and builds registered in the manager."""


@group.command("inspect-sigstruct")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def inspect_sigstruct(file: Path, as_json: bool) -> None:
    """Parse and verify a SIGSTRUCT (.sig / manifest.sigstruct) and print its identity.

    Exit code 1 when the file is not a valid, correctly signed SIGSTRUCT.
    """
    try:
        data = file.read_bytes()
    except OSError as error:
        raise UsageError(
            f"cannot read {file}: {error.strerror}", code="usage.file_unreadable"
        ) from error
    sigstruct = parse_sigstruct(data)
    described = sigstruct.to_dict()
    described["file"] = str(file)
    described["verified"] = True
    if as_json:
        emit_json(described)
        return
    console = stdout_console()
    console.print(f"[bold]SIGSTRUCT[/] {file} ({SIGSTRUCT_SIZE} bytes, signature and q1/q2 OK)")
    for label, key in (
        ("mrenclave", "mrenclave"),
        ("mrsigner", "mrsigner"),
        ("isvprodid", "isvprodid"),
        ("isvsvn", "isvsvn"),
        ("debug", "debug"),
        ("date", "date"),
        ("vendor", "vendor"),
        ("miscselect", "miscselect"),
        ("attributes", "attributes"),
        ("attributemask", "attributemask"),
    ):
        value = described[key]
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        console.print(f"  {label:<14}{value}")
    if sigstruct.debug:
        console.print("[yellow]debug enclave: its memory is readable by a debugger[/]")


@group.command("keygen")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the PEM private key (created with mode 0600).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@json_option
def keygen(out: Path, force: bool, as_json: bool) -> None:
    """Create an RSA-3072 enclave signing key with public exponent 3 (what SGX requires).

    The key's MRSIGNER is printed: it is the publisher identity of every build it signs.
    """
    key = generate_signing_key()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)
    except FileExistsError as error:
        raise ConflictError(
            f"{out} exists; pass --force to overwrite it", code="usage.file_exists"
        ) from error
    except OSError as error:
        raise UsageError(
            f"cannot write {out}: {error.strerror}", code="usage.file_unwritable"
        ) from error
    with os.fdopen(fd, "wb") as handle:
        handle.write(signing_key_pem(key))
    os.chmod(out, 0o600)  # noqa: PTH101 (also when --force reused an existing file)
    mrsigner = signing_key_mrsigner(key).hex()
    if as_json:
        emit_json({"path": str(out), "mrsigner": mrsigner, "bits": 3072, "exponent": 3})
        return
    console = stdout_console()
    console.print(f"wrote {out} (RSA-3072, exponent 3, mode 0600)")
    console.print(f"  mrsigner  {mrsigner}")


# --- Builds registered in the Enclave Manager --------------------------------------------------

_BUILD_COLUMNS = ("id", "app_id", "tee", "measurement", "isvsvn", "status", "created_at")


@group.command("list")
@click.option("--app", default=None, help="Only this app's builds.")
@click.option(
    "--status",
    type=click.Choice(["pending", "allowlisted", "rejected", "revoked"]),
    default=None,
)
@account_option
@json_option
@with_client
def list_builds(
    *,
    app: str | None,
    status: str | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """List the builds registered in the manager, newest first."""
    data = client.request(
        "GET",
        f"/v1/accounts/{client.account(account)}/builds",
        params={"app": app, "status": status},
    )
    show(data, as_json=as_json, columns=_BUILD_COLUMNS)


@group.command("show")
@click.argument("build")
@account_option
@json_option
@with_client
def show_build(*, build: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Show a registered build (by id or measurement)."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/builds/{build}")
    show(data, as_json=as_json)


@group.command("register")
@click.argument("app")
@click.option(
    "--sigstruct",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Take measurement, signer, ISV product id and SVN from this signed SIGSTRUCT.",
)
@click.option("--measurement", default=None, help="MRENCLAVE (SGX) or MRTD (TDX), hex.")
@click.option("--signer", default=None, help="MRSIGNER (SGX), hex.")
@click.option("--tee", type=click.Choice(["sgx", "tdx"]), default="sgx", show_default=True)
@click.option("--isvprodid", type=int, default=None)
@click.option("--isvsvn", type=int, default=None)
@click.option("--image", "image_name", default=None, help="The shielded image's name.")
@click.option("--digest", "image_digest", default=None, help="The shielded image's digest.")
@click.option("--simulated", is_flag=True, help="The build runs on the simulated platform.")
@account_option
@json_option
@with_client
def register_build(
    *,
    app: str,
    sigstruct: Path | None,
    measurement: str | None,
    signer: str | None,
    tee: str,
    isvprodid: int | None,
    isvsvn: int | None,
    image_name: str | None,
    image_digest: str | None,
    simulated: bool,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Register a build of APP; it is allowlisted when its approval task is approved."""
    body: dict[str, object] = {"app": app, "tee": tee, "simulated": simulated}
    if sigstruct is not None:
        try:
            parsed = parse_sigstruct(sigstruct.read_bytes())
        except OSError as error:
            raise UsageError(
                f"cannot read {sigstruct}: {error.strerror}", code="usage.file_unreadable"
            ) from error
        body.update(
            measurement=parsed.enclavehash.hex(),
            signer=parsed.mrsigner.hex(),
            isvprodid=parsed.isvprodid,
            isvsvn=parsed.isvsvn,
            debug=parsed.debug,
        )
    options = {
        "measurement": measurement,
        "signer": signer,
        "isvprodid": isvprodid,
        "isvsvn": isvsvn,
        "image_name": image_name,
        "image_digest": image_digest,
    }
    body.update({key: value for key, value in options.items() if value is not None})
    if "measurement" not in body:
        raise UsageError("give --sigstruct or --measurement", code="usage.measurement_missing")
    data = client.request("POST", f"/v1/accounts/{client.account(account)}/builds", json_body=body)
    show(data if as_json else {**data["build"], "task": data["task"]["id"]}, as_json=as_json)


@group.command("revoke")
@click.argument("build")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@account_option
@json_option
@with_client
def revoke_build(
    *, build: str, yes: bool, account: str | None, as_json: bool, client: ManagerClient
) -> None:
    """Revoke an allowlisted build and every certificate issued to it (administrators)."""
    if not yes:
        click.confirm(f"Revoke build {build} and all its certificates?", abort=True)
    data = client.request("POST", f"/v1/accounts/{client.account(account)}/builds/{build}/revoke")
    show(data, as_json=as_json)
