"""``sanctum nodes``: machines that run workloads (register, list, show, deactivate, refresh)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "name", "status", "tcb_status", "fmspc", "simulated", "flag", "attested_at")


@click.group(cls=SanctumGroup)
def group() -> None:
    """Nodes: join with a single-use token and a verified quote of their platform."""


@group.command("list")
@account_option
@json_option
@with_client
def list_nodes(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """List nodes."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/nodes")
    show(data, as_json=as_json, columns=_COLUMNS)


@group.command("show")
@click.argument("node")
@account_option
@json_option
@with_client
def show_node(*, node: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Show a node (by name or id)."""
    show(
        client.request("GET", f"/v1/accounts/{client.account(account)}/nodes/{node}"),
        as_json=as_json,
    )


@group.command("create")
@click.argument("name")
@account_option
@json_option
@with_client
def create_node(*, name: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Register a node and print its single-use join token (shown once)."""
    data = client.request(
        "POST", f"/v1/accounts/{client.account(account)}/nodes", json_body={"name": name}
    )
    show(data if as_json else {**data["node"], "join_token": data["join_token"]}, as_json=as_json)


@group.command("join-token")
@click.argument("node")
@account_option
@json_option
@with_client
def join_token(*, node: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Give a node a new join token (to re-attest)."""
    data = client.request("POST", f"/v1/accounts/{client.account(account)}/nodes/{node}/join-token")
    show(
        data
        if as_json
        else {
            "node": node,
            "join_token": data["join_token"],
            "expires_at": data["join_token_expires_at"],
        },
        as_json=as_json,
    )


@group.command("deactivate")
@click.argument("node")
@account_option
@json_option
@with_client
def deactivate(*, node: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Deactivate a node; its certificate is revoked."""
    data = client.request("POST", f"/v1/accounts/{client.account(account)}/nodes/{node}/deactivate")
    show(data, as_json=as_json, columns=_COLUMNS)


@group.command("refresh")
@account_option
@json_option
@with_client
def refresh(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Re-appraise every active node with current collateral; list the nodes flagged."""
    data = client.request("POST", f"/v1/accounts/{client.account(account)}/nodes/refresh")
    if as_json:
        show(data, as_json=True)
        return
    click.echo(f"checked {data['checked']} node(s), flagged {len(data['flagged'])}")
    if data["flagged"]:
        show(data["flagged"], as_json=False, columns=_COLUMNS)
