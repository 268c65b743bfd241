"""Output helpers shared by the manager's CLI groups: JSON for scripts, rich tables for people."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from rich.table import Table

from sanctum.cli._base import emit_json, stdout_console
from sanctum.manager.client import ManagerClient, load_client

__all__ = ["account_option", "show", "with_client"]

P = ParamSpec("P")
R = TypeVar("R")


def show(
    data: Any,
    *,
    as_json: bool,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Print ``data`` as JSON, a table (a list of objects) or key/value lines (one object)."""
    if as_json:
        emit_json(data)
        return
    console = stdout_console()
    if isinstance(data, list):
        cols = list(columns or (data[0].keys() if data else []))
        table = Table(title=title, show_lines=False)
        for column in cols:
            table.add_column(column)
        for row in data:
            table.add_row(*(_cell(row.get(column)) for column in cols))
        console.print(table)
        return
    if isinstance(data, Mapping):
        for key, value in data.items():
            if columns and key not in columns:
                continue
            console.print(f"[bold]{key}[/]: {_cell(value)}")
        return
    console.print(str(data))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def account_option(func: Callable[P, R]) -> Callable[P, R]:
    """Add ``--account`` (default: the account chosen at ``sanctum login``)."""
    return click.option(
        "--account", "account", default=None, help="Account id (default: from login)."
    )(func)


def with_client(func: Callable[..., R]) -> Callable[..., R]:
    """Pass a logged-in :class:`ManagerClient` as ``client`` and close it afterwards."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        client: ManagerClient = load_client()
        try:
            return func(*args, client=client, **kwargs)
        finally:
            client.close()

    return wrapper
