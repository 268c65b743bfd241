"""``sanctum quote verify``: JSON fields, text output and exit codes 0, 1 and 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from _dcap_cases import CASES, VECTORS, parse_time
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sanctum.cli.main import cli
from sanctum.platforms.simulated.pki import SimulationPki
from sanctum.platforms.simulated.platform import SimulatedPlatform


def _run(*args: str):
    return CliRunner().invoke(cli, ["quote", "verify", *args])


def _files(name: str) -> list[str]:
    case = CASES[name]
    return [
        str(VECTORS / case["quote_file"]),
        "--collateral",
        str(VECTORS / case["collateral_file"]),
        "--at",
        str(case["verify_at_unix"]),
    ]


COMMON = ["tee", "version", "status", "advisory_ids", "debug", "report_data", "fmspc", "qe_status"]


def test_sgx_json_output():
    result = _run(*_files("sgx-v3-phala"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in [*COMMON, "mrenclave", "mrsigner", "isv_prod_id", "isv_svn"]:
        assert key in data
    assert data["tee"] == "sgx"
    assert data["version"] == 3
    assert data["status"] == "ConfigurationAndSWHardeningNeeded"
    assert data["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert data["qe_status"] == "UpToDate"
    assert data["fmspc"] == "00a067110000"
    assert data["debug"] is False
    assert data["simulated"] is False
    assert len(data["mrenclave"]) == 64
    assert data["mrenclave"] == data["mrenclave"].lower()


@pytest.mark.parametrize("name", ["tdx-v4-phala", "tdx-v5-alibaba-servicetd"])
def test_tdx_json_output(name):
    result = _run(*_files(name), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    keys = ["mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id", "mr_owner"]
    for key in [*COMMON, *keys, "mr_servicetd"]:
        assert key in data
    assert data["tee"] == "tdx"
    assert data["status"] == CASES[name]["intel_qvl_logic_expected"]["status"]
    assert len(data["mr_td"]) == 96


def test_rfc3339_time_and_text_output():
    case = CASES["sgx-v3-phala"]
    args = _files("sgx-v3-phala")
    args[-1] = case["verify_at"]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert "VERIFIED SGX quote v3" in result.output
    assert "ConfigurationAndSWHardeningNeeded" in result.output


def test_refused_quote_exits_1_with_error_json():
    result = _run(*_files("tdx-v5-phala-outdated"), "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "tcb.not_supported"


def test_expired_collateral_exits_1_unless_allowed():
    case = CASES["tdx-v4-phala"]
    late = str(int(parse_time(case["valid_until_exclusive"]).timestamp()) + 86400)
    args = _files("tdx-v4-phala")
    args[-1] = late
    refused = _run(*args, "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.output)["error"]["code"] == "collateral.expired"
    allowed = _run(*args, "--allow-expired-collateral", "--json")
    assert allowed.exit_code == 0
    assert json.loads(allowed.output)["collateral_expired"] is True


def test_tampered_quote_exits_1(tmp_path):
    case = CASES["sgx-v3-phala"]
    raw = bytearray((VECTORS / case["quote_file"]).read_bytes())
    raw[100] ^= 1
    path = tmp_path / "quote.bin"
    path.write_bytes(bytes(raw))
    args = _files("sgx-v3-phala")
    args[0] = str(path)
    result = _run(*args, "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "quote.signature_invalid"


def test_usage_errors_exit_2(tmp_path):
    args = _files("sgx-v3-phala")
    missing_quote = [str(tmp_path / "missing.bin"), *args[1:]]
    assert _run(*missing_quote).exit_code == 2
    missing_collateral = [*args[:2], str(tmp_path / "missing.json"), *args[3:]]
    assert _run(*missing_collateral, "--json").exit_code == 2
    bad_time = [*args[:-1], "yesterday"]
    assert _run(*bad_time).exit_code == 2
    assert _run(*args, "--no-such-flag").exit_code == 2
    assert _run(args[0]).exit_code == 2  # --collateral is required


def test_other_root_is_refused_for_intel_quotes_and_marked_simulated(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Test SGX Root CA")])
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(parse_time("2000-01-01T00:00:00Z"))
        .not_valid_after(parse_time("2100-01-01T00:00:00Z"))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "root.pem"
    path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    result = _run(*_files("sgx-v3-phala"), "--root-ca", str(path), "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "pck.chain_invalid"
    path.write_bytes(b"not a certificate")
    assert _run(*_files("sgx-v3-phala"), "--root-ca", str(path)).exit_code == 2


def test_simulated_platform_verifies_under_its_root_and_is_marked(tmp_path):
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    pki = SimulationPki.create(now=now - timedelta(days=1), seed=b"b2-cli")
    platform = SimulatedPlatform(pki, tee="tdx", now=now, seed=b"cli")
    (tmp_path / "quote.bin").write_bytes(platform.quote(b"cli"))
    (tmp_path / "collateral.json").write_bytes(platform.collateral_json(now=now))
    (tmp_path / "root.der").write_bytes(platform.root_ca_der())
    args = [
        str(tmp_path / "quote.bin"),
        "--collateral",
        str(tmp_path / "collateral.json"),
        "--at",
        (now + timedelta(hours=1)).isoformat(),
    ]
    result = _run(*args, "--root-ca", str(tmp_path / "root.der"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["simulated"] is True
    assert data["status"] == "UpToDate"
    assert data["report_data"].startswith(b"cli".hex())
    text = _run(*args, "--root-ca", str(tmp_path / "root.der"))
    assert "SIMULATED" in text.output
    # Under the default (Intel) root the simulated quote is refused.
    refused = _run(*args, "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.output)["error"]["code"] == "pck.chain_invalid"
