"""End-to-end CLI chains: platform quote / collateral fetch feeding `sanctum quote verify`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pcs_server import VECTORS, LoopbackPcs, site_routes

from sanctum.cli.main import cli

SGX_AT = "1756530546"


def _run(*args: str, env: dict[str, str | None] | None = None, stdin: str | None = None):
    base: dict[str, str | None] = {"SANCTUM_PCS_API_KEY": None}
    return CliRunner().invoke(cli, list(args), env={**base, **(env or {})}, input=stdin)


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_simulated_quote_verifies_with_its_collateral_and_root(tmp_path: Path, tee: str) -> None:
    quote, collateral, root = tmp_path / "q.bin", tmp_path / "c.json", tmp_path / "root.der"
    report_data = "ab" * 64
    made = _run(
        "platform", "quote", "--json", "--simulated", "--tee", tee,
        "--report-data", report_data, "--out", str(quote),
        "--collateral-out", str(collateral), "--root-ca-out", str(root),
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    summary = json.loads(made.output)
    assert summary["simulated"] is True
    assert summary["tee"] == tee
    assert (tmp_path / "state" / "simulation-pki.json").is_file()
    verified = _run(
        "quote", "verify", str(quote), "--json",
        "--collateral", str(collateral), "--root-ca", str(root),
    )  # fmt: skip
    assert verified.exit_code == 0, verified.output
    result = json.loads(verified.output)
    assert result["simulated"] is True
    assert result["report_data"] == report_data
    # Without the simulation root the same quote is refused: it does not chain to Intel.
    refused = _run("quote", "verify", str(quote), "--json", "--collateral", str(collateral))
    assert refused.exit_code == 1


def test_simulation_pki_is_reused_across_invocations(tmp_path: Path) -> None:
    roots = []
    for index in range(2):
        out = tmp_path / f"root{index}.der"
        result = _run(
            "platform", "quote", "--simulated", "--report-data", "00", "--out",
            str(tmp_path / "q"), "--root-ca-out", str(out), "--state-dir", str(tmp_path / "s"),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "SIMULATED" in result.output
        roots.append(out.read_bytes())
    assert roots[0] == roots[1]


@pytest.mark.parametrize("option", [["--tee", "tdx"], ["--collateral-out", "x.json"]])
def test_simulated_only_options_need_simulated(tmp_path: Path, option: list[str]) -> None:
    result = _run(
        "platform", "quote", "--report-data", "00", "--out", str(tmp_path / "q"), *option
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--simulated" in result.output


def test_collateral_fetch_then_quote_verify(tmp_path: Path) -> None:
    out = tmp_path / "collateral.json"
    quote = VECTORS / "sgx-00606a" / "quote.bin"
    key_file = tmp_path / "pcs.key"
    key_file.write_text("secret\n")
    with LoopbackPcs(site_routes("sgx-00606a")) as server:
        fetched = _run(
            "collateral", "fetch", str(quote), "--pccs", server.url, "--out", str(out),
            "--api-key-file", str(key_file), "--json", "--at", SGX_AT,
        )  # fmt: skip
    assert fetched.exit_code == 0, fetched.output
    summary = json.loads(fetched.output)
    assert (summary["tee"], summary["fmspc"], summary["ca"]) == ("sgx", "00606a000000", "platform")
    assert summary["stale"] is False
    assert all(h.get("Ocp-Apim-Subscription-Key") == "secret" for _, h in server.requests)
    verified = _run(
        "quote", "verify", str(quote), "--collateral", str(out), "--at", SGX_AT, "--json"
    )
    assert verified.exit_code == 0, verified.output
    result = json.loads(verified.output)
    assert result["status"] == "SWHardeningNeeded"
    assert result["simulated"] is False


def test_collateral_fetch_uses_a_stale_cache_when_the_service_is_down(tmp_path: Path) -> None:
    quote = VECTORS / "tdx-00806f050000" / "quote.bin"
    cache = tmp_path / "cache"
    with LoopbackPcs(site_routes("tdx-00806f050000")) as server:
        first = _run(
            "collateral", "fetch", str(quote), "--pccs", server.url, "--out",
            str(tmp_path / "a.json"), "--cache-dir", str(cache), "--at", "1753175614",
        )  # fmt: skip
        assert first.exit_code == 0, first.output
    second = _run(
        "collateral", "fetch", str(quote), "--pccs", server.url, "--out",
        str(tmp_path / "b.json"), "--cache-dir", str(cache), "--at", "1753400000",
        "--retries", "0",
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "cached copy" in second.output
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_collateral_fetch_fails_cleanly_without_service(tmp_path: Path) -> None:
    server = LoopbackPcs({}).start()
    server.stop()
    result = _run(
        "collateral", "fetch", str(VECTORS / "sgx-00606a" / "quote.bin"), "--pccs", server.url,
        "--out", str(tmp_path / "c.json"), "--retries", "0", "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "collateral.unreachable"
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("source", ["env", "stdin", "none"])
def test_collateral_fetch_api_key_from_env_or_stdin(tmp_path: Path, source: str) -> None:
    quote = VECTORS / "sgx-00606a" / "quote.bin"
    args = ["--api-key-file", "-"] if source == "stdin" else []
    env = {"SANCTUM_PCS_API_KEY": "k-env"} if source == "env" else None
    with LoopbackPcs(site_routes("sgx-00606a")) as server:
        fetched = _run(
            "collateral", "fetch", str(quote), "--pccs", server.url, "--out",
            str(tmp_path / "c.json"), "--at", SGX_AT, *args, env=env, stdin="k-stdin\n",
        )  # fmt: skip
    assert fetched.exit_code == 0, fetched.output
    expected = {"env": "k-env", "stdin": "k-stdin", "none": None}[source]
    assert {h.get("Ocp-Apim-Subscription-Key") for _, h in server.requests} == {expected}


def test_collateral_fetch_refuses_the_api_key_on_the_command_line(tmp_path: Path) -> None:
    # A key on argv is visible to every local user (ps, /proc) and lands in shell history.
    result = _run(
        "collateral", "fetch", str(VECTORS / "sgx-00606a" / "quote.bin"), "--out",
        str(tmp_path / "c.json"), "--api-key", "secret", "--pccs", "http://127.0.0.1:9",
        "--retries", "0",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "No such option" in result.output


@pytest.mark.parametrize("content", ["", "\n \n", "one\ntwo\n"])
def test_collateral_fetch_refuses_a_malformed_api_key_file(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "pcs.key"
    key_file.write_text(content)
    result = _run(
        "collateral", "fetch", str(VECTORS / "sgx-00606a" / "quote.bin"), "--out",
        str(tmp_path / "c.json"), "--api-key-file", str(key_file), "--json",
    )  # fmt: skip
    assert result.exit_code == 2
    assert json.loads(result.output)["error"]["code"] == "usage.invalid"


def test_collateral_fetch_missing_quote_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("collateral", "fetch", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
