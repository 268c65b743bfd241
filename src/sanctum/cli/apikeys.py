"""``sanctum apikeys``: API keys for automation (list, create, revoke)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "name", "prefix", "role", "user_id", "expires_at", "last_used_at", "revoked_at")


@click.group(cls=SanctumGroup)
def group() -> None:
    """API keys (shown once at creation, stored only as a hash)."""


@group.command("list")
@account_option
@json_option
@with_client
def list_keys(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """List keys (all for administrators, your own otherwise)."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/apikeys")
    show(data, as_json=as_json, columns=_COLUMNS)


@group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "editor", "administrator"]), default="viewer")
@click.option("--expires-at", default=None, help="RFC 3339 expiry time (default: none).")
@click.option("--service-account", is_flag=True, help="Not tied to you (administrators only).")
@account_option
@json_option
@with_client
def create_key(
    *,
    name: str,
    role: str,
    expires_at: str | None,
    service_account: bool,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Create a key; its secret is printed once."""
    body = {"name": name, "role": role, "service_account": service_account}
    if expires_at:
        body["expires_at"] = expires_at
    data = client.request("POST", f"/v1/accounts/{client.account(account)}/apikeys", json_body=body)
    if as_json:
        show(data, as_json=True)
        return
    show(data["key"], as_json=False, columns=_COLUMNS)
    click.echo(f"secret (shown once): {data['secret']}")


@group.command("revoke")
@click.argument("key_id")
@account_option
@json_option
@with_client
def revoke_key(*, key_id: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Revoke a key; it stops working at once."""
    data = client.request("DELETE", f"/v1/accounts/{client.account(account)}/apikeys/{key_id}")
    show(data, as_json=as_json, columns=_COLUMNS)
