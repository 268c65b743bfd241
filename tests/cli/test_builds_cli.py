"""``sanctum builds``: inspect-sigstruct and keygen."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

from click.testing import CliRunner

from sanctum.cli.main import cli
from sanctum.converter.keys import load_signing_key, signing_key_mrsigner
from sanctum.converter.sigstruct import sign_sigstruct


def test_keygen_then_inspect_a_sigstruct(tmp_path: Path) -> None:
    runner = CliRunner()
    key_path = tmp_path / "key.pem"
    result = runner.invoke(cli, ["builds", "keygen", "--out", str(key_path), "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_signing_key(key_path.read_bytes())
    assert created["mrsigner"] == signing_key_mrsigner(key).hex()

    sig = sign_sigstruct(
        key=key,
        enclavehash=b"\x42" * 32,
        isvprodid=9,
        isvsvn=1,
        debug=True,
        date=dt.date(2026, 1, 2),
    )
    sig_path = tmp_path / "app.sig"
    sig_path.write_bytes(sig.to_bytes())
    result = runner.invoke(cli, ["builds", "inspect-sigstruct", str(sig_path), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["mrenclave"] == "42" * 32
    assert shown["mrsigner"] == created["mrsigner"]
    assert (shown["isvprodid"], shown["isvsvn"], shown["debug"]) == (9, 1, True)
    assert shown["date"] == "2026-01-02"

    text = runner.invoke(cli, ["builds", "inspect-sigstruct", str(sig_path)])
    assert text.exit_code == 0
    assert "42" * 32 in text.output
    assert "debug enclave" in text.output


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    key_path = tmp_path / "key.pem"
    key_path.write_text("keep me")
    result = CliRunner().invoke(cli, ["builds", "keygen", "--out", str(key_path)])
    assert result.exit_code == 2
    assert key_path.read_text() == "keep me"
    forced = CliRunner().invoke(cli, ["builds", "keygen", "--out", str(key_path), "--force"])
    assert forced.exit_code == 0
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_inspect_refuses_a_tampered_or_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sig"
    bad.write_bytes(b"\x00" * 1808)
    result = CliRunner().invoke(cli, ["builds", "inspect-sigstruct", str(bad), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "sigstruct.header"
    missing = CliRunner().invoke(cli, ["builds", "inspect-sigstruct", str(tmp_path / "nope")])
    assert missing.exit_code == 2
