"""``sanctum tasks``: approval tasks (list, show, approve, deny, cancel)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "type", "status", "summary", "quorum", "requested_by", "expires_at")


@click.group(cls=SanctumGroup)
def group() -> None:
    """Approval tasks (M-of-N governance)."""


@group.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "approved", "denied", "cancelled", "expired", "failed"]),
    default=None,
)
@click.option("--type", "type_", default=None, help="Task type, e.g. build_allowlist.")
@account_option
@json_option
@with_client
def list_tasks(
    *,
    status: str | None,
    type_: str | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """List tasks, newest first."""
    data = client.request(
        "GET",
        f"/v1/accounts/{client.account(account)}/tasks",
        params={"status": status, "type": type_},
    )
    show(data, as_json=as_json, columns=_COLUMNS)


@group.command("show")
@click.argument("task_id")
@account_option
@json_option
@with_client
def show_task(*, task_id: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Show a task with its votes."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/tasks/{task_id}")
    if as_json:
        show(data, as_json=True)
        return
    show({k: v for k, v in data.items() if k not in {"votes", "voters"}}, as_json=False)
    show(data["votes"], as_json=False, columns=("voter_id", "decision", "comment", "created_at"))
    show(
        data.get("voters", []),
        as_json=False,
        columns=("email", "role", "decision", "is_requester"),
        title="Eligible voters",
    )


def _vote(
    client: ManagerClient, account: str | None, task_id: str, verb: str, comment: str | None
) -> object:
    body = {"comment": comment} if comment else None
    return client.request(
        "POST", f"/v1/accounts/{client.account(account)}/tasks/{task_id}/{verb}", json_body=body
    )


@group.command("approve")
@click.argument("task_id")
@click.option("--comment", default=None)
@account_option
@json_option
@with_client
def approve_task(
    *,
    task_id: str,
    comment: str | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Approve a task."""
    show(_vote(client, account, task_id, "approve", comment), as_json=as_json, columns=_COLUMNS)


@group.command("deny")
@click.argument("task_id")
@click.option("--comment", default=None)
@account_option
@json_option
@with_client
def deny_task(
    *,
    task_id: str,
    comment: str | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Deny a task (one denial closes it)."""
    show(_vote(client, account, task_id, "deny", comment), as_json=as_json, columns=_COLUMNS)


@group.command("cancel")
@click.argument("task_id")
@account_option
@json_option
@with_client
def cancel_task(*, task_id: str, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Cancel a pending task you requested (administrators: any task)."""
    show(_vote(client, account, task_id, "cancel", None), as_json=as_json, columns=_COLUMNS)
