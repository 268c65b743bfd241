import json
import subprocess
import sys

import click
from click.testing import CliRunner

from sanctum import __version__
from sanctum.cli._base import SanctumGroup, json_option
from sanctum.cli.main import _GROUPS, cli
from sanctum.errors import EvidenceError, UsageError


def test_help_lists_version():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "version" in result.output


def test_version_text_and_json():
    runner = CliRunner()
    assert __version__ in runner.invoke(cli, ["version"]).output
    data = json.loads(runner.invoke(cli, ["version", "--json"]).output)
    assert data["version"] == __version__


def test_unknown_command_is_usage_exit_2():
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == 2


def _demo_group() -> click.Group:
    @click.group(cls=SanctumGroup)
    def root() -> None:
        pass

    @root.group()
    def noun() -> None:
        pass

    @noun.command()
    @json_option
    @click.option("--usage", is_flag=True)
    def verb(as_json: bool, usage: bool) -> None:
        if usage:
            raise UsageError("no such file", code="usage.file_missing")
        raise EvidenceError("quote refused", code="quote.signature_invalid")

    return root


def test_refusal_exit_1_with_json_error_object():
    result = CliRunner().invoke(_demo_group(), ["noun", "verb", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "error": {"code": "quote.signature_invalid", "message": "quote refused"}
    }


def test_refusal_text_goes_to_stderr():
    result = CliRunner().invoke(_demo_group(), ["noun", "verb"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "quote.signature_invalid" in result.stderr


def test_usage_error_exit_2():
    result = CliRunner().invoke(_demo_group(), ["noun", "verb", "--usage", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "usage.file_missing"


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "sanctum", "version", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["version"] == __version__


def test_every_registered_group_imports_and_has_help():
    runner = CliRunner()
    for name in _GROUPS:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
