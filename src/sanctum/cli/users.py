"""``sanctum users``: members of an account (list, show, invite, update, remove)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "email", "name", "role", "status", "created_at")
_ROLES = click.Choice(["viewer", "editor", "administrator"])


@click.group(cls=SanctumGroup)
def group() -> None:
    """Users and their roles in an account."""


@group.command("list")
@account_option
@json_option
@with_client
def list_users(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """List the account's members."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/users")
    show(data, as_json=as_json, columns=_COLUMNS)


@group.command("show")
@click.argument("user_id")
@account_option
@json_option
@with_client
def show_user(*, user_id: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Show one member."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/users/{user_id}")
    show(data, as_json=as_json)


@group.command("invite")
@click.argument("email")
@click.option("--name", required=True)
@click.option("--role", type=_ROLES, default="viewer", show_default=True)
@account_option
@json_option
@with_client
def invite_user(
    *, email: str, name: str, role: str, account: str | None, as_json: bool, client: ManagerClient
) -> None:
    """Invite a user (a new user gets a one-time invitation token)."""
    data = client.request(
        "POST",
        f"/v1/accounts/{client.account(account)}/users",
        json_body={"email": email, "name": name, "role": role},
    )
    if as_json:
        show(data, as_json=True)
        return
    show(data["member"], as_json=False)
    if data.get("invitation_token"):
        click.echo(
            f"invitation token (shown once, valid until {data['invitation_expires_at']}): "
            f"{data['invitation_token']}"
        )


@group.command("update")
@click.argument("user_id")
@click.option("--role", type=_ROLES, default=None, help="Administrator opens an approval task.")
@click.option("--status", type=click.Choice(["active", "disabled"]), default=None)
@click.option("--name", default=None)
@account_option
@json_option
@with_client
def update_user(
    *,
    user_id: str,
    role: str | None,
    status: str | None,
    name: str | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Change a member's role, status (disable/enable) or name."""
    body = {k: v for k, v in {"role": role, "status": status, "name": name}.items() if v}
    data = client.request(
        "PATCH", f"/v1/accounts/{client.account(account)}/users/{user_id}", json_body=body
    )
    if as_json:
        show(data, as_json=True)
        return
    show(data["member"], as_json=False)
    if data.get("task"):
        click.echo(f"approval task opened: {data['task']['id']} ({data['task']['summary']})")


@group.command("remove")
@click.argument("user_id")
@account_option
@json_option
@with_client
def remove_user(*, user_id: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Remove a member from the account."""
    client.request("DELETE", f"/v1/accounts/{client.account(account)}/users/{user_id}")
    show({"removed": user_id}, as_json=as_json)
