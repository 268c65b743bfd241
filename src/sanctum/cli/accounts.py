"""``sanctum accounts``: list, show, create and update accounts through the manager API."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "name", "role", "quorum", "allow_self_approval", "created_at")


@click.group(cls=SanctumGroup)
def group() -> None:
    """Accounts (tenants) you belong to."""


@group.command("list")
@json_option
@with_client
def list_accounts(*, as_json: bool, client: ManagerClient) -> None:
    """List your accounts and your role in each."""
    show(client.request("GET", "/v1/accounts"), as_json=as_json, columns=_COLUMNS)


@group.command("show")
@account_option
@json_option
@with_client
def show_account(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Show one account."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}")
    show(data, as_json=as_json)


@group.command("create")
@click.argument("name")
@click.option("--allow-self-approval", is_flag=True, help="Requesters may approve their tasks.")
@json_option
@with_client
def create_account(
    *, name: str, allow_self_approval: bool, as_json: bool, client: ManagerClient
) -> None:
    """Create an account (you become its administrator)."""
    body = {"name": name, "allow_self_approval": allow_self_approval}
    show(client.request("POST", "/v1/accounts", json_body=body), as_json=as_json)


@group.command("update")
@account_option
@click.option("--name", default=None)
@click.option("--quorum", type=int, default=None, help="Approvals needed (opens a task).")
@click.option("--allow-self-approval/--no-self-approval", default=None, help="Opens a task.")
@json_option
@with_client
def update_account(
    *,
    account: str | None,
    name: str | None,
    quorum: int | None,
    allow_self_approval: bool | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Rename an account, or request a quorum/self-approval change (an approval task)."""
    body = {"name": name, "quorum": quorum, "allow_self_approval": allow_self_approval}
    data = client.request(
        "PATCH",
        f"/v1/accounts/{client.account(account)}",
        json_body={k: v for k, v in body.items() if v is not None},
    )
    if as_json:
        show(data, as_json=True)
        return
    show(data["account"], as_json=False)
    if data.get("task"):
        click.echo(f"approval task opened: {data['task']['id']} ({data['task']['summary']})")
