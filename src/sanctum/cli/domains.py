"""``sanctum domains``: certificate names of apps (request, list, delete)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "app_id", "name", "status", "task_id", "decided_at")


@click.group(cls=SanctumGroup)
def group() -> None:
    """Domains: certificate names an app may carry, approved through tasks."""


@group.command("list")
@click.option("--app", default=None, help="Only this app's domains.")
@account_option
@json_option
@with_client
def list_domains(
    *, app: str | None, account: str | None, as_json: bool, client: ManagerClient
) -> None:
    """List domains and their approval status."""
    data = client.request(
        "GET", f"/v1/accounts/{client.account(account)}/domains", params={"app": app}
    )
    show(data, as_json=as_json, columns=_COLUMNS)


@group.command("request")
@click.argument("app")
@click.argument("name")
@account_option
@json_option
@with_client
def request_domain(
    *, app: str, name: str, account: str | None, as_json: bool, client: ManagerClient
) -> None:
    """Ask for a certificate name (DNS name or IP) for an app; opens an approval task."""
    data = client.request(
        "POST",
        f"/v1/accounts/{client.account(account)}/domains",
        json_body={"app": app, "name": name},
    )
    show(data if as_json else {**data["domain"], "task": data["task"]["id"]}, as_json=as_json)


@group.command("delete")
@click.argument("domain_id")
@account_option
@with_client
def delete_domain(*, domain_id: str, account: str | None, client: ManagerClient) -> None:
    """Remove a domain from its app."""
    client.request("DELETE", f"/v1/accounts/{client.account(account)}/domains/{domain_id}")
