"""The self-contained launcher (ADR 0103): no unpacking, FUSE bundled, nothing leaks to the app.

These tests run the built file (``make launcher``; built here when missing) on the host against
the fake manager and the simulated QE. The file uses only what it carries: its loader, glibc,
Python, libfuse3 and mfusepy come from memory files, never from the host's libraries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launcher_fixtures import FakeManager, build_shielded_root

from sanctum.converter.keys import debug_signing_key
from sanctum.converter.manifest import sign_manifest
from sanctum.encfs import fuse_available
from sanctum.launcher.build import is_static_elf
from sanctum.platforms.sim_qe import SimQeServer

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = Path(os.environ.get("SANCTUM_LAUNCHER_BINARY", REPO / "build/launcher/sanctum-launcher"))
BUSYBOX = Path("/bin/busybox")

pytestmark = [pytest.mark.slow]

APP = """#!/bin/busybox sh
echo "pid=$$"
echo "python=${PYTHONPATH-unset}/${PYTHONHOME-unset}/${SANCTUM_KEPT_PYTHONPATH-unset}"
echo "fds=$(busybox ls /proc/$$/fd | busybox tr '\\n' ' ')"
echo "targets=$(busybox ls -l /proc/$$/fd | busybox grep -c -e memfd -e sanctum-launcher)"
if [ -n "$DATA" ]; then
  echo "secret ledger line" > "$DATA/ledger.txt"
  echo "read=$(busybox cat "$DATA/ledger.txt")"
  echo "key=$(busybox cat "$DATA/ledger.key")"
  busybox grep -q "$DATA fuse" /proc/mounts && echo "mounted=fuse"
fi
"""


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The self-contained launcher (built with `make launcher`; built here when missing)."""
    if not LAUNCHER.is_file():
        subprocess.run(
            [sys.executable, "-m", "sanctum.launcher.build", "--out", str(LAUNCHER)],
            check=True,
            timeout=900,
        )
    assert is_static_elf(LAUNCHER)
    return LAUNCHER


def _root(tmp_path: Path, manager: FakeManager, *, encrypted: bool) -> tuple[Path, bytes]:
    """A shielded rootfs whose app is a busybox script (no Python anywhere in the image)."""
    root = tmp_path / "root"
    shielded = build_shielded_root(root, pin=manager.pin)
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(BUSYBOX.read_bytes())
    (root / "bin/busybox").chmod(0o755)
    (root / "app/run.sh").write_bytes(APP.encode())
    files = dict(shielded.manifest.trusted_files)
    files["/app/run.sh"] = hashlib.sha256(APP.encode()).hexdigest()
    files["/bin/busybox"] = hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()
    env = dict(shielded.manifest.env)
    if encrypted:
        env["DATA"] = str(root / "data")
    manifest = dataclasses.replace(
        shielded.manifest,
        trusted_files=files,
        env=env,
        encrypted_dirs=("/data",) if encrypted else (),
    )
    signed = sign_manifest(manifest, key=debug_signing_key(), date=dt.date(2026, 1, 1))
    (root / "sanctum/manifest.json").write_bytes(signed.manifest_bytes)
    (root / "sanctum/manifest.sigstruct").write_bytes(signed.sigstruct.to_bytes())
    return root, signed.mrenclave


def _run(bundle: Path, root: Path, manager: FakeManager, qe: SimQeServer, **extra: str):
    env = {
        "PATH": "/usr/bin:/bin",
        "SANCTUM_ROOT": str(root),
        "SANCTUM_MANAGER_URL": manager.url,
        "SANCTUM_PLATFORM": "simulated",
        "SANCTUM_SIM_QE": qe.address,
        "SANCTUM_ATTEST_ATTEMPTS": "1",
        **extra,
    }
    return subprocess.run(
        [str(bundle)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _lines(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def test_version_and_help_answer_without_the_network(bundle: Path) -> None:
    version = subprocess.run([str(bundle), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("sanctum-launcher ")
    usage = subprocess.run([str(bundle), "--help"], capture_output=True, text=True, check=True)
    assert "SANCTUM_MANAGER_URL" in usage.stdout


def test_the_app_gets_the_pid_no_bundle_descriptor_and_its_own_python_variables(
    tmp_path: Path, bundle: Path, fake_manager: FakeManager, sim_qe: SimQeServer
) -> None:
    root, mrenclave = _root(tmp_path, fake_manager, encrypted=False)
    fake_manager.allowlist.add(mrenclave)
    process = subprocess.Popen(
        [str(bundle)],
        env={
            "PATH": "/usr/bin:/bin",
            "SANCTUM_ROOT": str(root),
            "SANCTUM_MANAGER_URL": fake_manager.url,
            "SANCTUM_PLATFORM": "simulated",
            "SANCTUM_SIM_QE": sim_qe.address,
            "PYTHONPATH": "/the/apps/own",
            "HOST_ALLOWED": "yes",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    seen = _lines(stdout)
    assert seen["pid"] == str(process.pid)  # Two execs, one process.
    # The manifest does not pass PYTHONPATH through, and the stub's variables never reach the
    # app; the kept original was restored for the launcher, not leaked.
    assert seen["python"] == "unset/unset/unset"
    # No memory file and no launcher descriptor (the shell's own script and listing aside).
    assert max(int(fd) for fd in seen["fds"].split()) < 99
    assert seen["targets"] == "0"
    assert "trusted files checked" in stderr
    assert "attested" in stderr


def test_the_bundled_fuse_stack_mounts_an_encrypted_directory(
    tmp_path: Path, bundle: Path, fake_manager: FakeManager, sim_qe: SimQeServer
) -> None:
    reason = fuse_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {reason}")
        pytest.skip(f"FUSE unavailable: {reason}")
    root, mrenclave = _root(tmp_path, fake_manager, encrypted=True)
    fake_manager.allowlist.add(mrenclave)
    fake_manager.dir_keys = {"/data": os.urandom(32)}
    # A file secret inside the encrypted directory is written after the mount, so encrypted.
    fake_manager.secrets = {"LEDGER_KEY": ("file", "/data/ledger.key", b"ledger-key-bytes")}
    result = _run(bundle, root, fake_manager, sim_qe)
    assert result.returncode == 0, result.stderr
    seen = _lines(result.stdout)
    assert seen["read"] == "secret ledger line"
    assert seen["key"] == "ledger-key-bytes"
    assert seen["mounted"] == "fuse"
    assert "encrypted directory /data mounted (FUSE" in result.stderr
    # The FUSE server stops with the app; the host volume holds ciphertext only.
    deadline = time.monotonic() + 30
    while os.path.ismount(root / "data"):
        assert time.monotonic() < deadline, "the encrypted directory is still mounted"
        time.sleep(0.05)
    stored = [p for p in (root / "data").rglob("*") if p.is_file()]
    assert stored
    for path in stored:
        assert b"secret ledger line" not in path.read_bytes()
        assert b"ledger-key-bytes" not in path.read_bytes()
        assert "ledger" not in path.name
