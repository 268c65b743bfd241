from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_devices import SGX_QUOTE, TDX_QUOTE, FakeTsmKernel, make_gramine_tree

from sanctum.cli.main import cli
from sanctum.platforms.configfs_tsm import ConfigfsTsmEvidenceSource
from sanctum.platforms.detect import detect_platforms, open_hardware_source
from sanctum.platforms.errors import PlatformUnavailableError
from sanctum.platforms.gramine import GramineEvidenceSource


def _by_name(statuses):
    return {status.name: status for status in statuses}


def test_nothing_but_simulation_on_an_empty_machine(tmp_path: Path) -> None:
    statuses = _by_name(detect_platforms(dev_root=tmp_path, tsm_root=tmp_path / "tsm"))
    assert list(statuses) == ["gramine", "sgx-device", "configfs-tsm", "simulated"]
    assert not statuses["gramine"].available
    assert statuses["gramine"].code == "platform.unavailable"
    assert "attestation" in statuses["gramine"].reason
    assert not statuses["sgx-device"].available
    assert "sgx_enclave" in statuses["sgx-device"].reason
    assert not statuses["configfs-tsm"].available
    assert statuses["configfs-tsm"].code == "platform.unavailable"
    simulated = statuses["simulated"]
    assert simulated.available
    assert simulated.info is not None
    assert simulated.info.simulated


def test_gramine_with_dcap_is_available(tmp_path: Path) -> None:
    make_gramine_tree(tmp_path)
    (tmp_path / "dev" / "sgx_enclave").write_bytes(b"")
    statuses = _by_name(detect_platforms(dev_root=tmp_path, tsm_root=tmp_path / "tsm"))
    assert statuses["gramine"].available
    assert statuses["gramine"].info is not None
    assert statuses["gramine"].info.simulated is False
    assert not statuses["sgx-device"].available
    assert "through Gramine" in statuses["sgx-device"].reason


def test_gramine_without_dcap_says_why(tmp_path: Path) -> None:
    make_gramine_tree(tmp_path, "none")
    status = _by_name(detect_platforms(dev_root=tmp_path, tsm_root=tmp_path / "tsm"))["gramine"]
    assert not status.available
    assert status.code == "platform.attestation_type_unsupported"
    assert "'none'" in status.reason


def test_sgx_device_without_gramine_says_an_enclave_is_needed(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "sgx_enclave").write_bytes(b"")
    status = _by_name(detect_platforms(dev_root=tmp_path, tsm_root=tmp_path / "tsm"))["sgx-device"]
    assert not status.available
    assert status.code == "platform.enclave_required"
    assert "Gramine" in status.reason


def test_configfs_tsm_provider_is_reported(tmp_path: Path) -> None:
    tsm = tmp_path / "tsm"
    tsm.mkdir()
    kernel = FakeTsmKernel()
    status = _by_name(detect_platforms(dev_root=tmp_path, tsm_root=tsm, io=kernel))["configfs-tsm"]
    assert status.available
    assert status.info is not None
    assert status.info.tee == "tdx"
    assert "tdx_guest" in status.reason
    assert list(tsm.iterdir()) == []


def test_configfs_tsm_unknown_provider_is_reported(tmp_path: Path) -> None:
    tsm = tmp_path / "tsm"
    tsm.mkdir()
    kernel = FakeTsmKernel(provider="cca_guest")
    status = _by_name(detect_platforms(dev_root=tmp_path, tsm_root=tsm, io=kernel))["configfs-tsm"]
    assert not status.available
    assert status.code == "platform.provider_unsupported"


def test_open_hardware_source_prefers_gramine(tmp_path: Path) -> None:
    make_gramine_tree(tmp_path)
    tsm = tmp_path / "tsm"
    tsm.mkdir()
    source = open_hardware_source(dev_root=tmp_path, tsm_root=tsm, io=FakeTsmKernel())
    assert isinstance(source, GramineEvidenceSource)


def test_open_hardware_source_falls_back_to_configfs_tsm(tmp_path: Path) -> None:
    tsm = tmp_path / "tsm"
    tsm.mkdir()
    source = open_hardware_source(dev_root=tmp_path, tsm_root=tsm, io=FakeTsmKernel())
    assert isinstance(source, ConfigfsTsmEvidenceSource)


def test_open_hardware_source_never_picks_simulation(tmp_path: Path) -> None:
    with pytest.raises(PlatformUnavailableError) as caught:
        open_hardware_source(dev_root=tmp_path, tsm_root=tmp_path / "tsm")
    error = caught.value
    assert error.code == "platform.none_available"
    assert set(error.details) == {"gramine", "sgx-device", "configfs-tsm"}
    assert "--simulated" in (error.hint or "")


def test_cli_info_json_lists_everything_and_exits_0(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["platform", "info", "--json", "--dev-root", str(tmp_path), "--tsm-root", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [p["name"] for p in data["platforms"]] == [
        "gramine",
        "sgx-device",
        "configfs-tsm",
        "simulated",
    ]
    assert data["hardware_available"] == []
    simulated = data["platforms"][-1]
    assert simulated["available"] is True
    assert simulated["simulated"] is True


def test_cli_info_text_explains_each_backend(tmp_path: Path) -> None:
    make_gramine_tree(tmp_path, "epid")
    result = CliRunner().invoke(
        cli, ["platform", "info", "--dev-root", str(tmp_path), "--tsm-root", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    assert "gramine: unavailable" in result.output
    assert "'epid'" in result.output
    assert "simulated (simulated): available" in result.output
    assert "needs --simulated" in result.output


def test_cli_quote_from_gramine(tmp_path: Path) -> None:
    root = make_gramine_tree(tmp_path / "root")
    recorded_report_data = SGX_QUOTE[368:432]
    (root / "dev/attestation/quote").write_bytes(SGX_QUOTE)
    out = tmp_path / "quote.bin"
    result = CliRunner().invoke(
        cli,
        [
            "platform",
            "quote",
            "--json",
            "--report-data",
            recorded_report_data.hex(),
            "--out",
            str(out),
            "--dev-root",
            str(root),
            "--tsm-root",
            str(tmp_path / "tsm"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == SGX_QUOTE
    summary = json.loads(result.output)
    assert summary["platform"] == "gramine"
    assert summary["simulated"] is False


def test_cli_quote_without_hardware_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "platform",
            "quote",
            "--json",
            "--report-data",
            "00",
            "--out",
            str(tmp_path / "q"),
            "--dev-root",
            str(tmp_path),
            "--tsm-root",
            str(tmp_path / "tsm"),
        ],
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "platform.none_available"
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("value", ["zz", "00" * 65])
def test_cli_quote_rejects_bad_report_data(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(
        cli, ["platform", "quote", "--report-data", value, "--out", str(tmp_path / "q")]
    )
    assert result.exit_code == 2


def test_tdx_quote_vector_is_a_tdx_quote() -> None:
    # Guards the fake devices' assumption about the recorded vectors.
    assert TDX_QUOTE[4:8] == b"\x81\0\0\0"
    assert SGX_QUOTE[4:8] == b"\0\0\0\0"


def test_cli_info_require_hardware_fails_without_hardware(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["platform", "info", "--json", "--require-hardware", "--dev-root", str(tmp_path),
         "--tsm-root", str(tmp_path / "tsm")],
    )  # fmt: skip
    assert result.exit_code == 1
    error = json.loads(result.output)["error"]  # One JSON document only.
    assert error["code"] == "platform.none_available"
    assert set(error["details"]) == {"gramine", "sgx-device", "configfs-tsm"}


def test_cli_info_require_hardware_passes_inside_gramine(tmp_path: Path) -> None:
    make_gramine_tree(tmp_path)
    result = CliRunner().invoke(
        cli,
        ["platform", "info", "--require-hardware", "--dev-root", str(tmp_path),
         "--tsm-root", str(tmp_path / "tsm")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "gramine: available" in result.output
