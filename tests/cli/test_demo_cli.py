from __future__ import annotations

from click.testing import CliRunner

from sanctum.cli.main import cli


def test_demo_is_registered_and_documents_no_wait():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--no-wait" in result.output


def test_demo_without_launcher_says_how_to_build_it(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--no-wait", "--launcher", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "make launcher" in result.output
    assert not (tmp_path / ".sanctum").exists()
