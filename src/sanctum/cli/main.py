"""Entry point of the ``sanctum`` command: the root group and ``sanctum version``.

Each noun group lives in its own module and is registered here, in one visible list.
"""

from __future__ import annotations

import platform
import sys

import click

from sanctum import __version__
from sanctum.cli._base import SanctumGroup, emit_json, json_option
from sanctum.log import configure_logging

__all__ = ["cli", "main"]


@click.group(cls=SanctumGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


# Noun groups: one module each, registered in this one visible list (keep it sorted).
# Example: ``from sanctum.cli import quote`` at the top, then ``cli.add_command(quote.group)``.


def main() -> None:
    """Run the ``sanctum`` command line."""
    cli(prog_name="sanctum")
