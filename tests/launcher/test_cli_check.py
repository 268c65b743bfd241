from __future__ import annotations

import json

from click.testing import CliRunner
from launcher_fixtures import build_shielded_root

from sanctum.cli.main import cli


def test_check_reports_the_identity_of_a_valid_rootfs(tmp_path):
    shielded = build_shielded_root(tmp_path / "root", pin=None)
    result = CliRunner().invoke(cli, ["launcher", "check", str(shielded.root), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["mrenclave"] == shielded.mrenclave.hex()
    assert doc["app"] == "bank"
    assert doc["trusted_entries_checked"] == 5
    assert doc["entrypoint"] == ["/app/run.sh", "default-arg"]


def test_check_refuses_a_tampered_rootfs_with_exit_code_1(tmp_path):
    shielded = build_shielded_root(tmp_path / "root", pin=None)
    (shielded.root / "etc/passwd").write_text("root::0:0::/:/bin/sh\n")
    result = CliRunner().invoke(cli, ["launcher", "check", str(shielded.root)])
    assert result.exit_code == 1
    assert "launcher.trusted_file_mismatch" in result.output
