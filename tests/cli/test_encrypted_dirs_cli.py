"""``sanctum apps dirs|dir-rotate|dir-retire`` against a manager served over HTTPS."""

from __future__ import annotations

import json

import pytest
from manager_cli_helpers import Served, served_manager


@pytest.fixture
def served(tmp_path, monkeypatch):
    with served_manager(tmp_path, monkeypatch) as manager:
        yield manager


def test_rotate_and_retire_directory_keys(served: Served, tmp_path):
    config = tmp_path / "app.json"
    config.write_text(json.dumps({"encrypted_dirs": ["/data", "/var/lib/db"]}))
    served.cli_json("apps", "create", "bank", "--config", str(config), "--unsafe-allow-simulated")
    identity = served.platform.identity
    created = served.cli_json(
        "builds", "register", "bank", "--measurement", identity.mr_enclave.hex(),
        "--signer", identity.mr_signer.hex(), "--isvsvn", "3", "--simulated",
    )  # fmt: skip
    served.approve(created["task"]["id"])
    build = created["build"]["id"]
    assert served.attest("bank").status_code == 200

    listed = served.cli_json("apps", "dirs", "bank")
    assert listed["key_policy"] == "same_build"
    assert sorted(k["path"] for k in listed["keys"]) == ["/data", "/var/lib/db"]
    # Under same_build the build must be named.
    refused = served.cli("apps", "dir-rotate", "bank", "/var/lib/db")
    assert refused.exit_code != 0
    assert "encrypted_dir.build_invalid" in refused.output
    rotated = served.cli_json("apps", "dir-rotate", "bank", "/var/lib/db", "--build", build)
    assert (rotated["path"], rotated["version"]) == ("/var/lib/db", 2)
    shown = served.cli("apps", "dirs", "bank")
    assert shown.exit_code == 0, shown.output
    assert "min_epoch" in shown.output

    unforced = served.cli("apps", "dir-retire", "bank", "/var/lib/db", "--build", build)
    assert unforced.exit_code != 0
    assert "encrypted_dir.force_required" in unforced.output
    retired = served.cli_json(
        "apps", "dir-retire", "bank", "/var/lib/db", "--build", build, "--force"
    )
    assert retired == {"path": "/var/lib/db", "retired": [1]}
    keys = {(k["path"], k["version"]): k for k in served.cli_json("apps", "dirs", "bank")["keys"]}
    assert keys[("/var/lib/db", 1)]["retired_at"] is not None
    assert keys[("/data", 1)]["retired_at"] is None
