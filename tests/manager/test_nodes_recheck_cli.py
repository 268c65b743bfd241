"""``sanctum nodes recheck`` against a manager served over HTTPS: the changes it prints, and
the exit status when some nodes could not be judged."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from attest_helpers import Kit, Workload, https_server, simulation_pki, simulation_settings
from click.testing import CliRunner

from sanctum.attestation.collateral import Collateral
from sanctum.attestation.quote import Quote
from sanctum.cli.main import cli
from sanctum.manager.client import ClientConfig, save_login
from sanctum.platforms.collateral_source import SimulatedCollateralSource
from sanctum.platforms.errors import CollateralUnavailableError
from sanctum.platforms.simulated import TcbDial


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    return Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))


class _Unreachable:
    def for_quote(self, quote: Quote, *, now: dt.datetime) -> Collateral:
        del quote, now
        raise CollateralUnavailableError("the PCCS does not answer", code="pcs.unreachable")


def test_cli_recheck_prints_the_changes(kit, tmp_path, monkeypatch):
    created = kit.client.post(
        kit.harness.url("/nodes"), json={"name": "host-1"}, headers=kit.harness.headers()
    ).json()
    platform = kit.platform("host-1")
    request = Workload.make(platform).request("node", kit.challenge())
    body = {key: request[key] for key in ("quote", "csr", "nonce", "collateral")}
    joined = kit.client.post("/v1/nodes/join", json={"token": created["join_token"], **body})
    assert joined.status_code == 200, joined.text
    rechecker = kit.harness.app.state.node_recheck
    with https_server(kit.harness.app, tmp_path / "served") as http:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        for name in ("SANCTUM_MANAGER_URL", "SANCTUM_MANAGER_CA", "SANCTUM_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        save_login(
            ClientConfig(
                url=str(http.base_url),
                token=kit.harness.admin_token,
                account_id=kit.harness.account_id,
            ),
            tmp_path / "served" / "tls" / "ca.pem",
        )
        runner = CliRunner(env={"COLUMNS": "300"})

        # Unreachable collateral: reported, nothing changed, exit status 1.
        rechecker.source = _Unreachable()
        failed = runner.invoke(cli, ["nodes", "recheck"], catch_exceptions=False)
        assert failed.exit_code == 1, failed.output
        assert "pcs.unreachable" in failed.output
        assert "node.recheck_incomplete" in failed.output
        as_json = runner.invoke(cli, ["nodes", "recheck", "--json"], catch_exceptions=False)
        assert as_json.exit_code == 1
        assert json.loads(as_json.stdout)["failures"][0]["retry"] is True

        rechecker.source = SimulatedCollateralSource(kit.platform("host-1", tcb=TcbDial.REVOKED))
        result = runner.invoke(cli, ["nodes", "recheck", "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        [change] = report["changes"]
        assert (change["name"], change["old_tcb_status"], change["new_tcb_status"]) == (
            "host-1",
            "UpToDate",
            "Revoked",
        )
        assert change["flagged"] is True
        # The node is now failed: nothing left to re-check.
        text = runner.invoke(cli, ["nodes", "refresh"], catch_exceptions=False)
        assert text.exit_code == 0, text.output
        assert "re-checked 0 of 0 active node(s): 0 flagged, 0 changed" in text.output
        shown = runner.invoke(cli, ["nodes", "show", "host-1", "--json"], catch_exceptions=False)
        assert json.loads(shown.stdout)["status"] == "failed"
