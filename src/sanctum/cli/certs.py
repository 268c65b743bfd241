"""``sanctum certs``: certificates issued by the account's CA (list, show, revoke)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("serial", "subject", "sans", "app_id", "build_id", "status", "not_after")
_REASONS = (
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)


@click.group(cls=SanctumGroup)
def group() -> None:
    """Certificates issued to attested workloads and nodes."""


@group.command("list")
@click.option("--app", default=None)
@click.option("--build", default=None)
@click.option("--status", type=click.Choice(["active", "revoked"]), default=None)
@click.option("--limit", type=int, default=100, show_default=True)
@account_option
@json_option
@with_client
def list_certs(
    *,
    app: str | None,
    build: str | None,
    status: str | None,
    limit: int,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """List certificates, newest first."""
    data = client.request(
        "GET",
        f"/v1/accounts/{client.account(account)}/certificates",
        params={"app": app, "build": build, "status": status, "limit": limit},
    )
    show(data, as_json=as_json, columns=_COLUMNS)


@group.command("show")
@click.argument("serial")
@click.option("--pem", is_flag=True, help="Print only the PEM certificate.")
@account_option
@json_option
@with_client
def show_cert(
    *, serial: str, pem: bool, account: str | None, as_json: bool, client: ManagerClient
) -> None:
    """Show a certificate (by serial in hex)."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/certificates/{serial}")
    if pem:
        click.echo(data["pem"], nl=False)
        return
    show(data if as_json else {k: v for k, v in data.items() if k != "pem"}, as_json=as_json)


@group.command("revoke")
@click.argument("serial")
@click.option("--reason", type=click.Choice(_REASONS), default="unspecified", show_default=True)
@account_option
@json_option
@with_client
def revoke(
    *, serial: str, reason: str, account: str | None, as_json: bool, client: ManagerClient
) -> None:
    """Revoke a certificate; it is listed in the account's CRL from now on."""
    data = client.request(
        "POST",
        f"/v1/accounts/{client.account(account)}/certificates/{serial}/revoke",
        json_body={"reason": reason},
    )
    show(data if as_json else {k: v for k, v in data.items() if k != "pem"}, as_json=as_json)
