"""``sanctum audit``: query, export and verify an account's audit log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sanctum.cli._base import SanctumGroup, json_option
from sanctum.errors import EvidenceError
from sanctum.manager.cli_output import account_option, show, with_client

if TYPE_CHECKING:
    from sanctum.manager.client import ManagerClient

__all__ = ["group"]

_COLUMNS = ("id", "time", "action", "outcome", "actor_name", "target_type", "target_id")


@click.group(cls=SanctumGroup)
def group() -> None:
    """The tamper-evident audit log."""


def _filters(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        [
            click.option("--since", default=None, help="RFC 3339 start time (inclusive)."),
            click.option("--until", default=None, help="RFC 3339 end time (exclusive)."),
            click.option("--family", default=None, help="Action family, e.g. auth or task."),
            click.option("--action", default=None, help="Exact action, e.g. auth.login_failed."),
            click.option("--actor", "actor_id", default=None, help="Actor id."),
            click.option(
                "--outcome", type=click.Choice(["success", "failure", "denied"]), default=None
            ),
        ]
    ):
        func = option(func)
    return func


@group.command("list")
@_filters
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue from a previous page.")
@account_option
@json_option
@with_client
def list_entries(
    *, account: str | None, as_json: bool, client: ManagerClient, **params: object
) -> None:
    """List entries, newest first."""
    data = client.request("GET", f"/v1/accounts/{client.account(account)}/audit", params=params)
    if as_json:
        show(data, as_json=True)
        return
    show(data["entries"], as_json=False, columns=_COLUMNS)
    if data.get("next_cursor"):
        click.echo(f"more: --cursor {data['next_cursor']}")


@group.command("export")
@_filters
@click.option("--format", "format_", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None)
@account_option
@with_client
def export_entries(
    *,
    format_: str,
    output: Path | None,
    account: str | None,
    client: ManagerClient,
    **params: object,
) -> None:
    """Export entries (oldest first) as JSON Lines or CSV, to a file or standard output."""
    path = f"/v1/accounts/{client.account(account)}/audit/export"
    with client.stream(path, {**params, "format": format_}) as chunks:
        if output is None:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        else:
            with output.open("wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)


@group.command("verify")
@account_option
@json_option
@with_client
def verify_chain(*, account: str | None, as_json: bool, client: ManagerClient) -> None:
    """Verify the account's audit chain; exit 1 and name the first broken link if any."""
    report = client.request("GET", f"/v1/accounts/{client.account(account)}/audit/verify")
    problem = report.get("problem")
    if problem:
        if not as_json:
            show(report, as_json=False)
        # With --json the report travels in the error document (one JSON document on stdout).
        raise EvidenceError(problem["message"], code=problem["code"], details={"report": report})
    show(report, as_json=as_json)
