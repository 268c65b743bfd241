"""``sanctum apps``, ``sanctum domains`` and ``sanctum builds list|show|register|revoke``
against a manager served over HTTPS."""

from __future__ import annotations

import json

import pytest
from manager_cli_helpers import Served, served_manager


@pytest.fixture
def served(tmp_path, monkeypatch):
    with served_manager(tmp_path, monkeypatch) as manager:
        yield manager


def test_app_domain_build_lifecycle(served: Served, tmp_path, monkeypatch):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rejected_advisory_ids": ["INTEL-SA-00615"]}))
    app = served.cli_json(
        "apps",
        "create",
        "bank",
        "--domain",
        "bank.demo.local",
        "--isvprodid",
        "7",
        "--policy",
        str(policy),
        "--unsafe-allow-simulated",
    )
    assert app["policy"]["unsafe_allow_simulated"] is True
    assert app["policy"]["rejected_advisory_ids"] == ["INTEL-SA-00615"]
    assert [d["status"] for d in app["domains"]] == ["pending"]
    monkeypatch.setenv("BANK_DB_PASSWORD", "hunter2-from-env")
    secret = served.cli_json(
        "apps", "secret-set", "bank", "DB_PASSWORD", "--from-env", "BANK_DB_PASSWORD"
    )
    assert secret == {**secret, "name": "DB_PASSWORD", "delivery": "env", "target": "DB_PASSWORD"}
    shown = served.cli("apps", "show", "bank")
    assert shown.exit_code == 0, shown.output
    assert "DB_PASSWORD" in shown.output
    assert "hunter2" not in shown.output
    assert served.cli_json("apps", "list")[0]["name"] == "bank"

    domains = served.cli_json("domains", "list", "--app", "bank")
    served.approve(domains[0]["task_id"])
    extra = served.cli_json("domains", "request", "bank", "api.bank.demo.local")
    assert extra["domain"]["status"] == "pending"
    listed = served.cli("domains", "list")
    assert "api.bank.demo.local" in listed.output

    identity = served.platform.identity
    created = served.cli_json(
        "builds",
        "register",
        "bank",
        "--measurement",
        identity.mr_enclave.hex(),
        "--signer",
        identity.mr_signer.hex(),
        "--isvsvn",
        "3",
        "--simulated",
    )
    assert created["build"]["status"] == "pending"
    served.approve(created["task"]["id"])
    builds = served.cli_json("builds", "list", "--app", "bank", "--status", "allowlisted")
    assert [b["id"] for b in builds] == [created["build"]["id"]]
    assert served.cli_json("builds", "show", identity.mr_enclave.hex())["status"] == "allowlisted"

    attested = served.attest("bank", sans=("bank.demo.local",))
    assert attested.status_code == 200, attested.text
    instances = served.cli_json("apps", "instances", "bank")
    assert instances == []

    revoked = served.cli_json("builds", "revoke", created["build"]["id"], "--yes")
    assert revoked["certificates_revoked"] == 1
    assert served.attest("bank").json()["code"] == "attest.build_revoked"

    updated = served.cli_json("apps", "update", "bank", "--min-isvsvn", "4")
    assert updated["min_isvsvn"] == 4
    deleted = served.cli("apps", "delete", "bank", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert served.cli_json("apps", "list") == []


def test_cli_reports_refusals_with_their_code(served: Served):
    missing = served.cli("apps", "show", "nope")
    assert missing.exit_code != 0
    assert "app.not_found" in missing.output
    bad = served.cli("builds", "register", "nope")
    assert bad.exit_code == 2
    served.cli_json("apps", "create", "bank")
    duplicate = served.cli("apps", "create", "bank")
    assert duplicate.exit_code == 2  # A conflict is a usage error.
    assert "app.name_taken" in duplicate.output
