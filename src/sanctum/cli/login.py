"""``sanctum login``: exchange an API key or email+password for a token and remember it.

Secrets never go on the command line: the password is prompted for (or read from standard
input with ``--password-stdin``), and an API key comes from ``SANCTUM_API_KEY`` or standard input
(``--api-key-stdin``). The token, the manager's URL, the chosen account and a copy of the
manager's CA certificate are stored in ``$XDG_CONFIG_HOME/sanctum``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from sanctum.cli._base import SanctumCommand, emit_json, json_option
from sanctum.errors import UsageError

__all__ = ["command"]


@click.command(cls=SanctumCommand, name="login")
@click.option("--url", required=True, help="Manager URL, e.g. https://127.0.0.1:8443.")
@click.option(
    "--ca-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The manager's TLS CA (data-dir/tls/ca.pem); default: the system roots.",
)
@click.option("--email", default=None, help="Sign in as this user (password prompted).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--api-key-stdin", is_flag=True, help="Read an API key from standard input.")
@click.option("--account", default=None, help="Default account id (default: the first one).")
@json_option
def command(
    *,
    url: str,
    ca_file: Path | None,
    email: str | None,
    password_stdin: bool,
    api_key_stdin: bool,
    account: str | None,
    as_json: bool,
) -> None:
    """Sign in to a manager and store the token for later commands."""
    from sanctum.manager.client import ClientConfig, ManagerClient, save_login  # noqa: PLC0415

    api_key = sys.stdin.readline().strip() if api_key_stdin else None
    api_key = api_key or (os.environ.get("SANCTUM_API_KEY") if not email else None)
    password = None
    if email:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = click.prompt("Password", hide_input=True)
    elif not api_key:
        raise UsageError(
            "give --email, or an API key on stdin (--api-key-stdin) or in SANCTUM_API_KEY",
            code="login.credentials_missing",
        )
    client = ManagerClient(url, token=None, ca_file=str(ca_file) if ca_file else None)
    try:
        issued = client.exchange(api_key=api_key, email=email, password=password)
        accounts = client.request("GET", "/v1/accounts")
    finally:
        client.close()
    chosen = account or (accounts[0]["id"] if accounts else None)
    path = save_login(
        ClientConfig(
            url=url,
            token=issued["access_token"],
            expires_at=issued["expires_at"],
            account_id=chosen,
        ),
        ca_file,
    )
    result = {
        "url": url,
        "account_id": chosen,
        "expires_at": issued["expires_at"],
        "config": str(path),
    }
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"logged in to {url} (account {chosen}); token valid until {issued['expires_at']}"
        )
