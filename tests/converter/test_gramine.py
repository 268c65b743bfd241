"""The Gramine target: TOML writer, rendered manifest, and the gramine-sgx-sign code path.

Gramine is not installable on our build machines, so the tool path runs against stand-in
``gramine-manifest`` / ``gramine-sgx-sign`` scripts that write a genuine SIGSTRUCT (made with our
signer) in Gramine's file layout; the real tools are exercised only where Gramine is installed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from test_manifest_format import make_manifest

from sanctum.converter.gramine import (
    GramineOptions,
    GramineTools,
    find_gramine_tools,
    format_size,
    render_gramine_manifest,
    sign_with_gramine,
    toml_dumps,
)
from sanctum.converter.keys import generate_signing_key, signing_key_mrsigner
from sanctum.converter.manifest_errors import BuildOptionError, GramineToolError, SigstructError
from sanctum.encfs.gramine import gramine_key_name

MANIFEST_SHA = "cd" * 32


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return generate_signing_key()


def test_toml_writer_output_is_read_back_by_tomllib() -> None:
    doc: dict[str, Any] = {
        "title": 'quote " backslash \\ tab \t newline \n nul \x00 del \x7f é 🙂',
        "n": -5,
        "yes": True,
        "list": ["a", 1, False],
        "empty": [],
        "table": {"weird key.with dots": "v", "bare_key-1": 2, "nested": {"deep": "x"}},
        "arr": [{"uri": "file:/a b", "sha256": "00"}, {"uri": 'file:/"q"'}],
    }
    assert tomllib.loads(toml_dumps(doc)) == doc


def test_toml_writer_quotes_keys_with_a_trailing_newline() -> None:
    # A key such as an environment variable name "X\n" must not break out of its line.
    text = toml_dumps({"loader": {"env": {"X\n[sgx]\ndebug": "1"}}})
    assert tomllib.loads(text) == {"loader": {"env": {"X\n[sgx]\ndebug": "1"}}}


def test_toml_writer_refuses_floats() -> None:
    with pytest.raises(BuildOptionError):
        toml_dumps({"x": 1.5})  # type: ignore[dict-item]


_keys = st.text(min_size=1, max_size=8).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)
_strings = st.text(max_size=12).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
_scalars = st.one_of(_strings, st.integers(-(2**63), 2**63 - 1), st.booleans())


@settings(max_examples=150, deadline=None)
@given(
    doc=st.dictionaries(
        _keys,
        st.one_of(
            _scalars,
            st.lists(_scalars, max_size=3),
            st.dictionaries(_keys, _scalars, max_size=3),
            st.lists(
                st.dictionaries(_keys, _scalars, min_size=1, max_size=2), min_size=1, max_size=2
            ),
        ),
        max_size=5,
    )
)
def test_toml_writer_round_trip_property(doc: dict[str, Any]) -> None:
    assert tomllib.loads(toml_dumps(doc, header="generated\n\nby a test")) == doc


def test_format_size() -> None:
    assert format_size(2**31) == "2G"
    assert format_size(512 * 2**20) == "512M"
    assert format_size(64 * 2**10) == "64K"
    assert format_size(100) == "100"


def test_rendered_manifest_is_complete() -> None:
    manifest = make_manifest(host_env_passthrough=("TZ",), user="1000:1001")
    doc = tomllib.loads(render_gramine_manifest(manifest, manifest_json_sha256=MANIFEST_SHA))
    opts = GramineOptions()
    assert doc["libos"]["entrypoint"] == "/sanctum/launcher"
    assert doc["loader"]["entrypoint"]["uri"] == f"file:{opts.libos}"
    assert doc["loader"]["argv"] == ["/sanctum/launcher"]
    assert "insecure__use_cmdline_argv" not in doc["loader"]
    assert doc["loader"]["uid"] == 1000
    assert doc["loader"]["gid"] == 1001
    env = doc["loader"]["env"]
    assert env["GREETING"] == "grüße"
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["TZ"] == {"passthrough": True}
    assert doc["fs"]["start_dir"] == "/srv"
    mounts = doc["fs"]["mounts"]
    assert {"path": "/lib", "uri": f"file:{opts.runtime_dir}"} in mounts
    assert {"type": "tmpfs", "path": "/tmp"} in mounts
    assert {
        "type": "encrypted",
        "path": "/data",
        "uri": "file:/data",
        "key_name": gramine_key_name("/data"),
    } in mounts
    assert gramine_key_name("/data").startswith("sanctum_fs_")
    sgx = doc["sgx"]
    assert sgx["enclave_size"] == "2G"
    assert sgx["max_threads"] == 16
    assert sgx["remote_attestation"] == "dcap"
    assert (sgx["isvprodid"], sgx["isvsvn"], sgx["debug"]) == (3, 2, False)
    trusted = {entry["uri"]: entry.get("sha256") for entry in sgx["trusted_files"]}
    assert trusted["file:/sanctum/manifest.json"] == MANIFEST_SHA
    for path, digest in manifest.trusted_files.items():
        assert trusted[f"file:{path}"] == digest
    assert trusted[f"file:{opts.libos}"] is None  # Hashed by gramine-sgx-sign itself.
    assert sgx["allowed_files"] == ["file:/sanctum/manifest.sigstruct"]


def test_cmdline_args_policy_and_debug() -> None:
    manifest = make_manifest(allow_cmdline_args=True, enclave=make_manifest().enclave.__class__(
        size=2**30, threads=4, debug=True, isvprodid=0, isvsvn=0
    ))  # fmt: skip
    doc = tomllib.loads(render_gramine_manifest(manifest, manifest_json_sha256=MANIFEST_SHA))
    assert doc["loader"]["insecure__use_cmdline_argv"] is True
    assert "argv" not in doc["loader"]
    assert doc["sgx"]["debug"] is True
    assert doc["sgx"]["enclave_size"] == "1G"


def test_hostile_strings_stay_strings() -> None:
    manifest = make_manifest(env={"EVIL": '"\n[sgx]\ndebug = true\n'})
    doc = tomllib.loads(render_gramine_manifest(manifest, manifest_json_sha256=MANIFEST_SHA))
    assert doc["loader"]["env"]["EVIL"] == '"\n[sgx]\ndebug = true\n'
    assert doc["sgx"]["debug"] is False


# The gramine-sgx-sign code path, with stand-in tools -------------------------------------------

FAKE_MANIFEST_TOOL = """#!/bin/sh
cp "$1" "$2"
"""

FAKE_SIGN_TOOL = """#!{python}
import argparse, datetime, hashlib, pathlib, sys
from sanctum.converter.keys import load_signing_key, generate_signing_key
from sanctum.converter.sigstruct import sign_sigstruct
p = argparse.ArgumentParser()
p.add_argument("--key"); p.add_argument("--manifest"); p.add_argument("--output")
p.add_argument("--sigfile")
a = p.parse_args()
mode = "{mode}"
if mode == "fail":
    print("gramine-sgx-sign: enclave size is not large enough", file=sys.stderr)
    sys.exit(3)
manifest = pathlib.Path(a.manifest).read_bytes()
pathlib.Path(a.output).write_bytes(manifest + b"\\n# expanded\\n")
if mode == "nosig":
    sys.exit(0)
if mode == "otherkey":
    key = generate_signing_key()
else:
    key = load_signing_key(pathlib.Path(a.key).read_bytes())
sig = sign_sigstruct(key=key, enclavehash=hashlib.sha256(manifest).digest(), isvprodid=3,
                     isvsvn=2, debug=False, date=datetime.date(2026, 11, 28))
pathlib.Path(a.sigfile).write_bytes(sig.to_bytes())
"""


def _install_fakes(bin_dir: Path, mode: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    for name, text in (
        ("gramine-manifest", FAKE_MANIFEST_TOOL),
        ("gramine-sgx-sign", FAKE_SIGN_TOOL.format(python=sys.executable, mode=mode)),
    ):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_find_gramine_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_gramine_tools() is None
    _install_fakes(tmp_path / "bin", "ok")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    tools = find_gramine_tools()
    assert tools == GramineTools(
        manifest_tool=str(tmp_path / "bin" / "gramine-manifest"),
        sign_tool=str(tmp_path / "bin" / "gramine-sgx-sign"),
    )


def test_sign_with_gramine_reads_the_real_sig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: rsa.RSAPrivateKey
) -> None:
    _install_fakes(tmp_path / "bin", "ok")
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    tools = find_gramine_tools()
    assert tools is not None
    work = tmp_path / "work"
    work.mkdir()
    toml_text = render_gramine_manifest(
        make_manifest(target="gramine-sgx"), manifest_json_sha256=MANIFEST_SHA
    )
    build = sign_with_gramine(toml_text, key=key, tools=tools, workdir=work)
    assert build.manifest_toml == toml_text
    assert build.sigstruct.mrenclave == hashlib.sha256(toml_text.encode()).digest()
    assert build.sigstruct.mrsigner == signing_key_mrsigner(key)
    assert build.manifest_sgx.endswith(b"# expanded\n")
    assert not (work / "signing-key.pem").exists()  # The key never stays on disk.


@pytest.mark.parametrize(
    ("mode", "error", "code"),
    [
        ("fail", GramineToolError, "gramine.tool_failed"),
        ("nosig", GramineToolError, "gramine.sig_missing"),
        ("otherkey", GramineToolError, "gramine.tool_failed"),
    ],
)
def test_sign_with_gramine_failures(
    tmp_path: Path, key: rsa.RSAPrivateKey, mode: str, error: type[Exception], code: str
) -> None:
    _install_fakes(tmp_path / "bin", mode)
    tools = GramineTools(
        manifest_tool=str(tmp_path / "bin" / "gramine-manifest"),
        sign_tool=str(tmp_path / "bin" / "gramine-sgx-sign"),
    )
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(error) as info:
        sign_with_gramine("x = 1\n", key=key, tools=tools, workdir=work)
    assert getattr(info.value, "code", None) == code
    assert not (work / "signing-key.pem").exists()


def test_a_corrupt_sig_is_refused(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    bin_dir = tmp_path / "bin"
    _install_fakes(bin_dir, "ok")
    sign_tool = bin_dir / "gramine-sgx-sign"
    sign_tool.write_text(
        sign_tool.read_text() + "pathlib.Path(a.sigfile).write_bytes(b'x' * 1808)\n"
    )
    tools = GramineTools(manifest_tool=str(bin_dir / "gramine-manifest"), sign_tool=str(sign_tool))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(SigstructError):
        sign_with_gramine("x = 1\n", key=key, tools=tools, workdir=work)
