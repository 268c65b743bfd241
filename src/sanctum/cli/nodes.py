"""``sanctum nodes``: machines that run workloads (register, list, show, deactivate, recheck)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sanctum.cli._base import EXIT_FAILED, SanctumGroup, json_option
from sanctum.errors import UnavailableError
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "name", "status", "tcb_status", "fmspc", "simulated", "flag", "attested_at")
_CHANGE_COLUMNS = ("name", "old_tcb_status", "new_tcb_status", "flagged", "code", "reason")
_FAILURE_COLUMNS = ("tee", "fmspc", "node_ids", "code", "retry", "message")


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


def _recheck(account: str | None, as_json: bool, client: ManagerClient) -> None:
    data = client.request("POST", f"/v1/accounts/{client.account(account)}/nodes/recheck")
    failures = data["failures"]
    if as_json:
        show(data, as_json=True)
        if failures:
            raise click.exceptions.Exit(EXIT_FAILED)
        return
    flagged = sum(1 for change in data["changes"] if change["flagged"])
    click.echo(
        f"re-checked {data['checked']} of {data['claimed']} active node(s): "
        f"{flagged} flagged, {len(data['changes']) - flagged} changed"
    )
    if data["changes"]:
        show(data["changes"], as_json=False, columns=_CHANGE_COLUMNS)
    if failures:
        show(failures, as_json=False, columns=_FAILURE_COLUMNS)
        nodes = sum(len(failure["node_ids"]) for failure in failures)
        raise UnavailableError(
            f"{nodes} node(s) could not be re-checked (left as they were)",
            code="node.recheck_incomplete",
            hint="retry = true: the collateral source was unreachable, the next run retries; "
            "otherwise check the manager's collateral configuration",
        )


@group.command("recheck")
@account_option
@json_option
@with_client
def recheck(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Re-appraise every active node with fresh collateral now; print what changed.

    Nodes whose TCB is no longer acceptable are flagged (status failed). Exits 1 when some
    nodes could not be judged (for example the collateral source is unreachable).
    """
    _recheck(account, as_json, client)


@group.command("refresh", hidden=True)
@account_option
@json_option
@with_client
def refresh(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Former name of ``recheck``."""
    _recheck(account, as_json, client)
