"""``sanctum ca``: the account's certificate authority (its chain, its CRL)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.errors import UsageError
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as error:
        raise UsageError(
            f"cannot write {path}: {error.strerror}", code="usage.file_unwritable"
        ) from error


@click.group(cls=SanctumGroup)
def group() -> None:
    """The account's CA: pin its root to trust attested workloads."""


@group.command("show")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the root certificate (PEM) here.",
)
@click.option(
    "--chain-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the issuing intermediate (PEM) here.",
)
@account_option
@json_option
@with_client
def show_ca(
    *,
    out: Path | None,
    chain_out: Path | None,
    account: str | None,
    as_json: bool,
    client: ManagerClient,
) -> None:
    """Show the account's root and issuing CA certificates."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/ca")
    if out is not None:
        _write(out, data["root"])
    if chain_out is not None:
        _write(chain_out, "".join(data["chain"]))
    if as_json:
        show(data, as_json=True)
        return
    click.echo(data["root"], nl=False)
    for pem in data["chain"]:
        click.echo(pem, nl=False)


@group.command("crl")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the CRL (PEM) here.",
)
@account_option
@with_client
def crl(*, out: Path | None, account: str | None, client: ManagerClient) -> None:
    """Print (or save) the account's current CRL as PEM."""
    account_id = client.account(account)
    with client.stream(f"/v1/accounts/{account_id}/ca/crl", {"format": "pem"}) as chunks:
        text = b"".join(chunks).decode("ascii")
    if out is not None:
        _write(out, text)
        return
    click.echo(text, nl=False)
