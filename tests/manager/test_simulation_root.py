"""The manager trusts the simulated platform through its root certificate only.

The simulation PKI's private keys belong to the platform side (the simulated quoting service);
a manager that trusts the simulated platform must never create, load or store them.
"""

import pytest
from attest_helpers import ACCOUNT, Kit, Workload

from conftest import START
from sanctum.platforms.simulated import SimulationPki, SimulationPkiError
from sanctum.platforms.simulated.pki import SIMULATION_PKI_FILENAME


def _settings(directory):
    return {
        "simulation_enabled": True,
        "simulation_accounts": (ACCOUNT,),
        "simulation_pki_dir": directory,
    }


def test_manager_refuses_to_start_without_the_platforms_pki(harness_factory, tmp_path):
    with pytest.raises(SimulationPkiError) as caught:
        harness_factory(**_settings(tmp_path / "absent"))
    assert caught.value.code == "simulation_pki.missing"
    assert "sim-qe serve" in (caught.value.hint or "")
    assert not (tmp_path / "absent").exists()


def test_manager_needs_no_simulation_key(harness_factory, tmp_path):
    # The keys are wrapped under a key the manager does not have: it can still trust the
    # platform, which shows it only ever reads the root certificate.
    platform_dir = tmp_path / "platform"
    platform_dir.mkdir(mode=0o700)
    pki = SimulationPki.create(now=START)
    (platform_dir / SIMULATION_PKI_FILENAME).write_bytes(
        pki.to_json(wrap=lambda key: b"\x00" + bytes(reversed(key)))
    )
    kit = Kit(harness_factory(**_settings(platform_dir)), pki)
    kit.create_app("bank", policy={"unsafe_allow_simulated": True})
    platform = kit.platform("bank")
    kit.register_build("bank", platform, approve=True)
    response = kit.attest(Workload.make(platform), "bank")
    assert response.status_code == 200, response.text
    data_dir = kit.harness.runtime.settings.data_dir
    assert not list(data_dir.rglob(SIMULATION_PKI_FILENAME))
