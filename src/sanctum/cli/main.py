"""Entry point of the ``sanctum`` command: the root group and ``sanctum version``.

Each noun group lives in its own module and is registered here, in one visible list.
"""

from __future__ import annotations

import importlib
import platform
import sys

import click

from sanctum import __version__
from sanctum.cli._base import SanctumGroup, emit_json, json_option
from sanctum.log import configure_logging

__all__ = ["cli", "main"]

# Noun groups, one module each: command name -> "module:attribute". Keep the list sorted.
# Modules are imported only when their command runs, so `sanctum --help` and the launcher's
# start-up stay fast and one part's dependencies never load for another part's command.
_GROUPS: dict[str, str] = {
    "accounts": "sanctum.cli.accounts:group",
    "apikeys": "sanctum.cli.apikeys:group",
    "apps": "sanctum.cli.apps:group",
    "audit": "sanctum.cli.audit:group",
    "builds": "sanctum.cli.builds:group",
    "ca": "sanctum.cli.ca:group",
    "certs": "sanctum.cli.certs:group",
    "collateral": "sanctum.cli.collateral:group",
    "convert": "sanctum.cli.convert:command",
    "demo": "sanctum.cli.demo:command",
    "domains": "sanctum.cli.domains:group",
    "files": "sanctum.cli.files:group",
    "inspect": "sanctum.cli.inspect:group",
    "launcher": "sanctum.cli.launcher:group",
    "login": "sanctum.cli.login:command",
    "manager": "sanctum.cli.manager:group",
    "nodes": "sanctum.cli.nodes:group",
    "platform": "sanctum.cli.platform:group",
    "quote": "sanctum.cli.quote:group",
    "tasks": "sanctum.cli.tasks:group",
    "users": "sanctum.cli.users:group",
}


class _RootGroup(SanctumGroup):
    """The root group: built-in commands plus the lazily imported noun groups."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return every command name, built-in and lazy, sorted."""
        return sorted({*super().list_commands(ctx), *_GROUPS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return the command, importing its module on first use."""
        if cmd_name in _GROUPS:
            module_name, _, attribute = _GROUPS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                msg = f"{_GROUPS[cmd_name]} is not a click command"
                raise TypeError(msg)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging threshold (logs go to standard error).",
)
@click.option("--log-json", is_flag=True, help="Write logs as JSON lines.")
def cli(log_level: str, log_json: bool) -> None:
    """Sanctum: shield container images and provision only attested enclaves.

    Commands are grouped by noun; every command that prints data takes --json.
    Exit codes: 0 ok, 1 refused or failed, 2 usage error.
    """
    configure_logging(log_level, json_lines=log_json)


@cli.command()
@json_option
def version(as_json: bool) -> None:
    """Print the Sanctum version."""
    info = {
        "version": __version__,
        "python": platform.python_version(),
        "platform": sys.platform,
    }
    if as_json:
        emit_json(info)
    else:
        click.echo(f"sanctum {__version__} (Python {info['python']}, {info['platform']})")


def main() -> None:
    """Run the ``sanctum`` command line."""
    cli(prog_name="sanctum")
