"""`sanctum files`: encrypt, decrypt, inspect and keygen, offline with a key file."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sanctum.cli.main import cli


def _run(*args: str):
    return CliRunner().invoke(cli, ["files", *args])


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_keygen_encrypt_inspect_decrypt_round_trip(tmp_path: Path) -> None:
    key = tmp_path / "dir.key"
    assert _run("keygen", str(key)).exit_code == 0
    assert key.stat().st_mode & 0o777 == 0o600
    source = tmp_path / "input"
    (source / "sub").mkdir(parents=True)
    (source / "customers.csv").write_bytes(b"alice,1000\nbob,2000\n")
    (source / "sub" / "model.bin").write_bytes(bytes(range(256)) * 1000)
    host = tmp_path / "host"

    result = _run("encrypt", str(source), str(host), "-k", str(key), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] == 2
    blob = b"".join(p.read_bytes() for p in host.iterdir())
    assert b"alice,1000" not in blob
    assert b"customers" not in blob

    result = _run("inspect", str(host), "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["files_on_host"] == 2
    assert "entries" not in facts

    result = _run("inspect", str(host), "-k", str(key), "--verify", "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["verified_files"] == 2
    assert {e["path"]: e["size"] for e in facts["entries"]} == {
        "customers.csv": 20,
        "sub": 0,
        "sub/model.bin": 256000,
    }

    result = _run("inspect", str(host), "-k", str(key))
    assert result.exit_code == 0, result.output
    assert "sub/model.bin" in result.stdout

    out = tmp_path / "out"
    result = _run("decrypt", str(host), str(out), "-k", str(key))
    assert result.exit_code == 0, result.output
    assert _tree(out) == _tree(source)


def test_encrypt_a_single_file_into_a_name(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_bytes(bytes(range(32)))
    (tmp_path / "a.txt").write_text("hello")
    host = tmp_path / "host"
    assert (
        _run("encrypt", str(tmp_path / "a.txt"), str(host), "-k", str(key), "--into", "x").exit_code
        == 0
    )
    result = _run("encrypt", str(tmp_path / "a.txt"), str(host), "-k", str(key), "--into", "x")
    assert result.exit_code == 2
    assert "encfs.exists" in result.output
    out = tmp_path / "out.txt"
    assert _run("decrypt", str(host), str(out), "-k", str(key), "--path", "x").exit_code == 0
    assert out.read_text() == "hello"


def test_wrong_key_and_tampering_exit_1(tmp_path: Path) -> None:
    key, other = tmp_path / "k", tmp_path / "other"
    key.write_text("11" * 32)
    other.write_text("22" * 32)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f").write_bytes(b"x" * 5000)
    host = tmp_path / "host"
    assert _run("encrypt", str(tmp_path / "in"), str(host), "-k", str(key)).exit_code == 0

    result = _run("decrypt", str(host), str(tmp_path / "o1"), "-k", str(other), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "encfs.wrong_key"

    data_file = next(p for p in host.iterdir() if p.suffix == ".0")
    raw = bytearray(data_file.read_bytes())
    raw[100] ^= 1
    data_file.write_bytes(bytes(raw))
    result = _run("inspect", str(host), "-k", str(key), "--verify", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "encfs.tampered"
    result = _run("decrypt", str(host), str(tmp_path / "o2"), "-k", str(key))
    assert result.exit_code == 1
    assert not (tmp_path / "o2" / "f").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    (tmp_path / "in").mkdir()
    result = _run("encrypt", str(tmp_path / "in"), str(tmp_path / "h"), "-k", str(bad))
    assert result.exit_code == 2
    assert "encfs.key_file_invalid" in result.output
    key = tmp_path / "k"
    assert _run("keygen", str(key)).exit_code == 0
    assert _run("keygen", str(key)).exit_code == 2
    assert _run("inspect", str(tmp_path / "in")).exit_code == 2
    assert _run("inspect", str(tmp_path / "in"), "--verify").exit_code == 2


def test_rekey(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    assert _run("keygen", str(old)).exit_code == 0
    assert _run("keygen", str(new)).exit_code == 0
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f").write_text("data")
    host = tmp_path / "host"
    assert _run("encrypt", str(tmp_path / "in"), str(host), "-k", str(old)).exit_code == 0
    result = _run("rekey", str(host), "-k", str(old), "--new-key-file", str(new), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] == 1
    assert _run("inspect", str(host), "-k", str(old)).exit_code == 1
    result = _run("decrypt", str(host), str(tmp_path / "out"), "-k", str(new))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "f").read_text() == "data"
