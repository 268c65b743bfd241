"""`sanctum quote show`: the parsed structure of a quote, never a verdict."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sanctum.cli.main import cli

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
SGX = VECTORS / "cases" / "sgx-v3-debug-enclave.quote.bin"
TDX = VECTORS / "cases" / "tdx-v5-alibaba-servicetd.quote.bin"
EPPID = VECTORS / "sources" / "oasis-core" / "quote_v3_ecdsa_p256_eppid.bin"
PADDED = VECTORS / "cases" / "tdx-v4-automata-0725.quote.bin"


def _show(*args: str):
    return CliRunner().invoke(cli, ["quote", "show", *args])


def test_sgx_json():
    result = _show(str(SGX), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["version"] == 3
    assert data["tee"] == "sgx"
    assert data["debug"] is True
    assert data["body"]["debug"] is True
    assert data["body"]["attributes"].startswith("07")
    assert len(data["body"]["mr_enclave"]) == 64
    assert data["body"]["mr_enclave"] == data["body"]["mr_enclave"].lower()
    assert data["header"]["tee_type"] == "sgx"
    certification = data["signature"]["certification"]
    assert certification["type"] == 5
    assert len(certification["pck_chain_pem"]) == 3
    assert certification["pck"]["ca"] == "processor"
    assert certification["pck"]["sgx_extension"]["fmspc"] == "00a067110000"
    assert data["signature"]["qe_report"]["isv_prod_id"] == 1


def test_tdx_json():
    data = json.loads(_show(str(TDX), "--json").stdout)
    assert data["version"] == 5
    assert data["tee"] == "tdx"
    assert data["body_type"] == 3
    assert data["body"]["mr_servicetd"].startswith("383c87d3")
    assert data["body"]["tee_tcb_svn2"] is not None
    assert "extension" not in data["body"]
    assert data["signature"]["certification"]["pck"]["sgx_extension"]["configuration"] == {
        "cached_keys": True,
        "dynamic_platform": True,
        "smt_enabled": True,
    }


def test_padding_is_reported():
    data = json.loads(_show(str(PADDED), "--json").stdout)
    assert data["length"] + data["ignored_trailing_bytes"] == 8000
    assert data["ignored_trailing_bytes"] > 0


def test_encrypted_ppid_quote():
    data = json.loads(_show(str(EPPID), "--json").stdout)
    identity = data["signature"]["certification"]["pck_identity"]
    assert identity["ppid_encrypted"] is True
    assert identity["pce_svn"] == 12
    assert "pck_chain_pem" not in data["signature"]["certification"]


def test_text_output():
    result = _show(str(TDX))
    assert result.exit_code == 0
    assert "DCAP quote v5 TDX (TD report 1.5)" in result.stdout
    assert "NOT verified" in result.stdout
    assert "mr_servicetd: 383c87d3" in result.stdout
    assert "pck_chain_pem: 3 PEM certificates" in result.stdout


def test_missing_file_is_a_usage_error(tmp_path):
    result = _show(str(tmp_path / "nope.bin"), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "usage.file_missing"
    assert _show(str(tmp_path / "nope.bin")).exit_code == 2


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "quote.truncated"),
        (SGX.read_bytes()[:1000], "quote.truncated"),
        (b"\x02\x00" + SGX.read_bytes()[2:], "quote.unsupported_version"),
    ],
)
def test_malformed_quote_exits_1_with_the_error_object(tmp_path, content, code):
    path = tmp_path / "quote.bin"
    path.write_bytes(content)
    result = _show(str(path), "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == code
    assert error["message"]
    text = _show(str(path))
    assert text.exit_code == 1
    assert code in text.stderr


def test_group_is_registered():
    result = CliRunner().invoke(cli, ["--help"])
    assert "quote" in result.stdout


def test_hex_quote_files(tmp_path):
    hex_file = VECTORS / "sources/automata-dcap-attestation/rust-crates-samples/quotev3.hex"
    data = json.loads(_show(str(hex_file), "--json").stdout)
    assert data["version"] == 3
    prefixed = tmp_path / "quote.hex"
    prefixed.write_text("0x" + TDX.read_bytes().hex().upper() + "\n")
    assert json.loads(_show(str(prefixed), "--json").stdout)["body"]["mr_servicetd"].startswith(
        "383c87d3"
    )


@pytest.mark.parametrize("path", sorted((VECTORS / "cases").glob("*.quote.bin")), ids=str)
def test_every_case_shows(path):
    result = _show(str(path), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["signature"]["certification"]["pck"]["ca"] in {
        "processor",
        "platform",
    }
    assert _show(str(path)).exit_code == 0
