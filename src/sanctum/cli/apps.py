"""``sanctum apps``: apps in the Enclave Manager (create, list, show, update, delete, secrets).

``dirs``, ``dir-rotate`` and ``dir-retire`` show and manage the keys of the app's encrypted
directories (administrators; ADR 0118).

An app's full configuration can be given as a JSON file (the API's ``AppCreate`` body) with
``--config``; the common fields also have options. Secret values are write-only: they are sent
to the manager and never printed or returned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.errors import UsageError
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "name", "isvprodid", "min_isvsvn", "policy_hash", "updated_at")


def _load_json(path: Path | None, what: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(
            f"cannot read the {what} {path}: {error}", code="usage.file_invalid"
        ) from error
    if not isinstance(data, dict):
        raise UsageError(f"the {what} {path} must hold a JSON object", code="usage.file_invalid")
    return data


def _public(app: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in app.items() if k not in {"domains", "secrets", "tasks"}}
    out["domains"] = [f"{d['name']} ({d['status']})" for d in app.get("domains", [])]
    out["secrets"] = [
        f"{s['name']} -> {s['delivery']}:{s['target']}" for s in app.get("secrets", [])
    ]
    return out


@click.group(cls=SanctumGroup)
def group() -> None:
    """Apps: what workloads are, what they receive, and what evidence is accepted."""


@group.command("list")
@account_option
@json_option
@with_client
def list_apps(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """List the account's apps."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/apps")
    show(data, as_json=as_json, columns=_COLUMNS)


@group.command("show")
@click.argument("app")
@account_option
@json_option
@with_client
def show_app(*, app: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Show an app (by name or id), its domains and secret names."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/apps/{app}")
    show(data if as_json else _public(data), as_json=as_json)


@group.command("create")
@click.argument("name")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file with the full app body (AppCreate).",
)
@click.option(
    "--domain",
    "domains",
    multiple=True,
    help="A certificate name (opens an approval task). Repeatable.",
)
@click.option("--description", default=None)
@click.option("--input-image", default=None)
@click.option("--isvprodid", type=int, default=None)
@click.option("--min-isvsvn", type=int, default=None)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file with the attestation policy.",
)
@click.option(
    "--unsafe-allow-simulated",
    is_flag=True,
    help="Accept simulated evidence (no hardware: demos only).",
)
@account_option
@json_option
@with_client
def create_app(
    *,
    name: str,
    config: Path | None,
    domains: tuple[str, ...],
    description: str | None,
    input_image: str | None,
    isvprodid: int | None,
    min_isvsvn: int | None,
    policy_file: Path | None,
    unsafe_allow_simulated: bool,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Create an app; each domain opens an approval task."""
    body = _load_json(config, "app configuration")
    body["name"] = name
    for key, value in (
        ("description", description),
        ("input_image", input_image),
        ("isvprodid", isvprodid),
        ("min_isvsvn", min_isvsvn),
    ):
        if value is not None:
            body[key] = value
    if domains:
        body["domains"] = [*body.get("domains", []), *domains]
    policy = _load_json(policy_file, "policy") or dict(body.get("policy") or {})
    if unsafe_allow_simulated:
        policy["unsafe_allow_simulated"] = True
    if policy:
        body["policy"] = policy
    data = client.request("POST", f"/v1/accounts/{client.account(account)}/apps", json_body=body)
    show(data if as_json else _public(data), as_json=as_json)


@group.command("update")
@click.argument("app")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file with the changes (AppUpdate).",
)
@click.option("--min-isvsvn", type=int, default=None)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file with the new attestation policy.",
)
@account_option
@json_option
@with_client
def update_app(
    *,
    app: str,
    config: Path | None,
    min_isvsvn: int | None,
    policy_file: Path | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Change an app's settings or attestation policy."""
    body = _load_json(config, "app changes")
    if min_isvsvn is not None:
        body["min_isvsvn"] = min_isvsvn
    if policy_file is not None:
        body["policy"] = _load_json(policy_file, "policy")
    if not body:
        raise UsageError(
            "nothing to change: give --config, --policy or --min-isvsvn", code="usage.nothing_to_do"
        )
    data = client.request(
        "PATCH", f"/v1/accounts/{client.account(account)}/apps/{app}", json_body=body
    )
    show(data if as_json else _public(data), as_json=as_json)


@group.command("delete")
@click.argument("app")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@account_option
@with_client
def delete_app(*, app: str, yes: bool, account: str | None, client: ManagerClient) -> None:
    """Delete an app with its secrets, domains and builds."""
    if not yes:
        click.confirm(f"Delete app {app} with its secrets, domains and builds?", abort=True)
    client.request("DELETE", f"/v1/accounts/{client.account(account)}/apps/{app}")


@group.command("secret-set")
@click.argument("app")
@click.argument("name")
@click.option(
    "--value-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the value from this file (sent as base64).",
)
@click.option(
    "--from-env", "from_env", default=None, help="Read the value from this environment variable."
)
@click.option("--file", "path", default=None, help="Deliver as a file at this absolute path.")
@click.option(
    "--env", "env_name", default=None, help="Deliver as this environment variable (default: NAME)."
)
@account_option
@json_option
@with_client
def set_secret(
    *,
    app: str,
    name: str,
    value_file: Path | None,
    from_env: str | None,
    path: str | None,
    env_name: str | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Set a secret of an app (the value is read from a file, a variable, or a prompt)."""
    import base64  # noqa: PLC0415 (only this command needs it)

    if value_file is not None:
        try:
            raw = value_file.read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read {value_file}", code="usage.file_unreadable") from error
        value, encoding = base64.b64encode(raw).decode(), "base64"
    elif from_env is not None:
        if from_env not in os.environ:
            raise UsageError(f"the variable {from_env} is not set", code="usage.env_missing")
        value, encoding = os.environ[from_env], "utf-8"
    else:
        value, encoding = click.prompt("Secret value", hide_input=True), "utf-8"
    body: dict[str, Any] = {"value": value, "encoding": encoding}
    if path is not None:
        body.update(delivery="file", path=path)
    else:
        body.update(delivery="env", env_name=env_name or name)
    data = client.request(
        "PUT", f"/v1/accounts/{client.account(account)}/apps/{app}/secrets/{name}", json_body=body
    )
    show(data, as_json=as_json)


@group.command("secret-delete")
@click.argument("app")
@click.argument("name")
@account_option
@with_client
def delete_secret(*, app: str, name: str, account: str | None, client: ManagerClient) -> None:
    """Delete a secret of an app."""
    client.request("DELETE", f"/v1/accounts/{client.account(account)}/apps/{app}/secrets/{name}")


@group.command("instances")
@click.argument("app")
@account_option
@json_option
@with_client
def instances(*, app: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """List an app's workload instances and when each last attested."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/apps/{app}/instances")
    show(data, as_json=as_json)


def _dir_name(directory: str) -> str:
    """Return the URL segment of an encrypted directory (``/var/lib/db`` -> ``var:lib:db``)."""
    return directory.strip("/").replace("/", ":")


@group.command("dirs")
@click.argument("app")
@account_option
@json_option
@with_client
def encrypted_dirs(*, app: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Show APP's encrypted directories, key policy, key versions and rollback floors."""
    data = client.request(
        "GET", f"/v1/accounts/{client.account(account)}/apps/{app}/encrypted-dirs"
    )
    if as_json:
        show(data, as_json=True)
        return
    click.echo(f"key policy: {data['key_policy']}")
    click.echo(f"directories: {', '.join(data['directories']) or '-'}")
    show(
        data["keys"],
        as_json=False,
        columns=("path", "scope", "version", "min_epoch", "created_at", "retired_at"),
    )


@group.command("dir-rotate")
@click.argument("app")
@click.argument("directory")
@click.option("--build", default=None, help="Build id or measurement (same_build policy).")
@account_option
@json_option
@with_client
def rotate_dir_key(
    *,
    app: str,
    directory: str,
    build: str | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Rotate the key of APP's encrypted DIRECTORY (administrators; audited).

    The next start of the workload receives the new key and the old one, re-encrypts the
    directory, and reports it; the manager then retires the old key.
    """
    data = client.request(
        "POST",
        f"/v1/accounts/{client.account(account)}/apps/{app}/encrypted-dirs/"
        f"{_dir_name(directory)}/rotate",
        params={"build": build},
    )
    show(data, as_json=as_json)


@group.command("dir-retire")
@click.argument("app")
@click.argument("directory")
@click.option("--build", default=None, help="Build id or measurement (same_build policy).")
@click.option(
    "--force",
    is_flag=True,
    help="Required: data still under the retired keys becomes unreadable to the workload.",
)
@account_option
@json_option
@with_client
def retire_dir_keys(
    *,
    app: str,
    directory: str,
    build: str | None,
    force: bool,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Retire the old keys of DIRECTORY before the workload reported its rotation (audited)."""
    data = client.request(
        "POST",
        f"/v1/accounts/{client.account(account)}/apps/{app}/encrypted-dirs/"
        f"{_dir_name(directory)}/retire",
        params={"build": build},
        json_body={"force": force},
    )
    show(data, as_json=as_json)
