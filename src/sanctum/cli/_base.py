"""Shared machinery for every CLI command: error handling, exit codes and JSON output."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar

import click
from rich.console import Console

from sanctum.errors import SanctumError, UsageError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "SanctumCommand",
    "SanctumGroup",
    "emit_json",
    "json_option",
    "stderr_console",
    "stdout_console",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

_JSON_META_KEY: Final = "sanctum.json"
_log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def stdout_console() -> Console:
    """Return a console for human-readable output (colour only on a terminal)."""
    return Console(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    """Return a console on standard error for progress and error messages."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: object) -> None:
    """Print ``data`` as one indented JSON document on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """Record ``--json`` in the context so the error handler formats failures as JSON."""
    if value:
        ctx.meta[_JSON_META_KEY] = True
    return value


def json_option(func: F) -> F:
    """Add the standard ``--json`` flag (passed to the command as ``as_json``)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,
        callback=_remember_json,
        help="Print machine-readable JSON on stdout.",
    )(func)


def _report(ctx: click.Context, error: SanctumError) -> None:
    """Print ``error`` the way the invoking command asked for (JSON or text)."""
    if ctx.meta.get(_JSON_META_KEY):
        emit_json({"error": error.to_dict()})
    else:
        console = stderr_console()
        console.print(f"[bold red]error:[/] {error.message} [dim]\\[{error.code}][/]")
        if error.hint:
            console.print(f"[yellow]hint:[/] {error.hint}")


class SanctumCommand(click.Command):
    """A click command that turns :class:`SanctumError` into the documented exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; map Sanctum errors to output and exit codes 1 or 2."""
        try:
            return super().invoke(ctx)
        except UsageError as error:
            _report(ctx, error)
            ctx.exit(EXIT_USAGE)
        except SanctumError as error:
            _log.debug("command failed", exc_info=True)
            _report(ctx, error)
            ctx.exit(EXIT_FAILED)


class SanctumGroup(click.Group):
    """A click group whose commands and sub-groups follow Sanctum's conventions."""

    command_class = SanctumCommand
    group_class = type  # Sub-groups are SanctumGroup too.
