from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from launcher_fixtures import FakeManager, build_shielded_root

from sanctum.errors import UnavailableError
from sanctum.launcher.errors import (
    AttestationRefusedError,
    IntegrityError,
    LauncherConfigError,
)
from sanctum.launcher.run import LauncherSettings, StepLog, prepare
from sanctum.platforms.sim_qe import SimQeServer


class _Log(StepLog):
    def __init__(self) -> None:
        self.buffer = io.StringIO()
        super().__init__(stream=self.buffer)


def _settings(root: Path, manager: FakeManager, sim_qe: SimQeServer, **extra: object):
    return LauncherSettings(
        root=root,
        manager_url=manager.url,
        platform="simulated",
        sim_qe=sim_qe.address,
        **extra,  # type: ignore[arg-type]
    )


def test_full_sequence_provisions_certificate_secrets_and_env(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    fake_manager.allowlist.add(shielded.mrenclave)
    fake_manager.secrets = {
        "DB_PASSWORD": ("env", "DB_PASSWORD", b"s3cret-db"),
        "API_TOKEN": ("file", "/run/secrets/api-token", b"tok\x00bin"),
    }
    log = _Log()
    host_env = {"HOST_ALLOWED": "yes", "HOST_SECRET": "leak", "PATH": "/host/bin"}
    plan = prepare(_settings(shielded.root, fake_manager, sim_qe), host_env, log=log)

    root = shielded.root
    key = serialization.load_pem_private_key((root / "run/tls/key.pem").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((root / "run/tls/cert.pem").read_bytes())
    assert cert.public_key() == key.public_key()
    assert (
        (root / "run/tls/chain.pem")
        .read_bytes()
        .startswith((root / "run/tls/cert.pem").read_bytes())
    )
    ca_pem = (root / "run/tls/ca.pem").read_bytes()
    assert x509.load_pem_x509_certificate(ca_pem) == fake_manager.account_ca
    assert ca_pem in (root / "etc/ssl/certs/ca-certificates.crt").read_bytes()
    for private in ("run/tls/key.pem", "run/secrets/api-token"):
        assert stat.S_IMODE((root / private).stat().st_mode) == 0o600
    assert (root / "run/secrets/api-token").read_bytes() == b"tok\x00bin"
    # The app's environment: the manifest's, the allowed host variable, the env secret only.
    assert plan.env == {
        "PATH": "/usr/bin:/bin",
        "GREETING": "hello",
        "HOST_ALLOWED": "yes",
        "DB_PASSWORD": "s3cret-db",
    }
    assert plan.argv == ["/app/run.sh", "default-arg"]
    assert plan.path == "/app/run.sh"
    assert plan.simulated
    assert plan.token == "header.payload.signature"
    # The simulated collateral travelled with the quote; the CSR asked for the manifest's names.
    sent = fake_manager.requests[0]
    assert sent["app"] == "bank"
    assert "collateral" in sent
    csr = x509.load_pem_x509_csr(sent["csr"].encode())
    assert csr.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName) == ["bank.demo.local"]
    lines = log.buffer.getvalue()
    for step in (
        "manifest verified",
        "SIMULATED",
        "trusted files checked",
        "attested",
        "provisioned",
    ):
        assert step in lines


def test_refusal_carries_the_managers_code_and_a_hint_and_writes_nothing(
    tmp_path, fake_manager, sim_qe
):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    with pytest.raises(AttestationRefusedError) as caught:
        prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log())
    assert caught.value.code == "attest.build_not_allowlisted"
    assert "allowlist" in (caught.value.hint or "")
    assert not (shielded.root / "run").exists()


def test_retryable_failures_back_off_then_succeed(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    fake_manager.allowlist.add(shielded.mrenclave)
    fake_manager.fail_next = [503, 502]
    waits: list[float] = []
    prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log(), sleep=waits.append)
    assert waits == [0.5, 1.0]


def test_retries_are_bounded(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    fake_manager.allowlist.add(shielded.mrenclave)
    fake_manager.fail_next = [503, 503, 503]
    waits: list[float] = []
    with pytest.raises(UnavailableError):
        prepare(
            _settings(shielded.root, fake_manager, sim_qe, max_attempts=3),
            {},
            log=_Log(),
            sleep=waits.append,
        )
    assert waits == [0.5, 1.0]


def test_refusals_are_not_retried(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    waits: list[float] = []
    with pytest.raises(AttestationRefusedError):
        prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log(), sleep=waits.append)
    assert waits == []
    assert len(fake_manager.requests) == 1


def test_tampered_trusted_file_is_refused_before_any_network(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    (shielded.root / "app/run.sh").write_bytes(b"#!/bin/sh\necho evil\n")
    with pytest.raises(IntegrityError) as caught:
        prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log())
    assert caught.value.code == "launcher.trusted_file_mismatch"
    assert caught.value.details["path"] == "/app/run.sh"
    assert fake_manager.requests == []


def test_changed_symlink_is_refused(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    (shielded.root / "app/current").unlink()
    (shielded.root / "app/current").symlink_to("/etc/passwd")
    with pytest.raises(IntegrityError, match="symbolic link"):
        prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log())


def test_edited_manifest_is_refused(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    path = shielded.root / "sanctum/manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"default-arg"', b'"evil-arg!!"'))
    with pytest.raises(Exception) as caught:
        prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log())
    assert getattr(caught.value, "code", "") == "manifest.measurement_mismatch"


def test_manager_with_another_ca_is_refused(tmp_path, fake_manager, sim_qe):
    other_pin = "sha256:" + "ab" * 32
    shielded = build_shielded_root(tmp_path / "root", pin=other_pin)
    fake_manager.allowlist.add(shielded.mrenclave)
    with pytest.raises(Exception) as caught:
        prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log())
    assert getattr(caught.value, "code", "") == "launcher.ca_pin_mismatch"
    assert fake_manager.requests == []


def test_missing_pin_is_a_configuration_error(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=None)
    with pytest.raises(LauncherConfigError) as caught:
        prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log())
    assert caught.value.code == "launcher.ca_pin_missing"


def test_simulated_platform_without_quoting_service_says_how_to_start_one(tmp_path):
    shielded = build_shielded_root(tmp_path / "root", pin="sha256:" + "00" * 32)
    settings = LauncherSettings(root=shielded.root, platform="simulated", manager_url="https://x")
    with pytest.raises(LauncherConfigError) as caught:
        prepare(settings, {}, log=_Log())
    assert caught.value.code == "launcher.platform_unavailable"
    assert "sim-qe serve" in (caught.value.hint or "")


def test_dry_run_touches_nothing(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    log = _Log()
    plan = prepare(_settings(shielded.root, fake_manager, sim_qe, dry_run=True), {}, log=log)
    assert plan.argv == ["/app/run.sh", "default-arg"]
    assert fake_manager.requests == []
    assert not (shielded.root / "run").exists()
    assert "would exec /app/run.sh" in log.buffer.getvalue()


def _run_launcher(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sanctum.launcher", *args],
        env={"SANCTUM_ROOT": str(root), "PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_launcher_execs_the_app_in_the_same_process(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin, allow_cmdline_args=True)
    fake_manager.allowlist.add(shielded.mrenclave)
    fake_manager.secrets = {"DB_PASSWORD": ("env", "DB_PASSWORD", b"pw-123")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sanctum.launcher", "--", "one", "two"],
        env={
            "SANCTUM_ROOT": str(shielded.root),
            "PATH": os.environ["PATH"],
            "SANCTUM_PLATFORM": "simulated",
            "SANCTUM_SIM_QE": sim_qe.address,
            "SANCTUM_MANAGER_URL": fake_manager.url,
            "HOST_SECRET": "must-not-pass",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"pid={process.pid}" in out
    assert "args=one two" in out
    assert "db=pw-123" in out
    assert "host=unset/unset" in out
    assert "exec /app/run.sh" in err


def test_launcher_exit_codes_and_messages(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    refused = _run_launcher(
        shielded.root,
        {
            "SANCTUM_PLATFORM": "simulated",
            "SANCTUM_SIM_QE": sim_qe.address,
            "SANCTUM_MANAGER_URL": fake_manager.url,
        },
    )
    assert refused.returncode == 1
    assert "[attest.build_not_allowlisted]" in refused.stderr
    assert "hint:" in refused.stderr
    version = _run_launcher(shielded.root, {}, "--version")
    assert version.returncode == 0
    assert version.stdout.startswith("sanctum-launcher ")
    dry = _run_launcher(shielded.root, {"SANCTUM_UNSAFE_OFFLINE": "1"}, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run complete" in dry.stderr
    bad = _run_launcher(shielded.root, {"SANCTUM_PLATFORM": "tpm"})
    assert bad.returncode == 2
    assert "launcher.config_invalid" in bad.stderr


def test_exit_codes_and_signals_reach_the_app(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin, allow_cmdline_args=True)
    fake_manager.allowlist.add(shielded.mrenclave)
    env = {
        "SANCTUM_ROOT": str(shielded.root),
        "PATH": os.environ["PATH"],
        "SANCTUM_PLATFORM": "simulated",
        "SANCTUM_SIM_QE": sim_qe.address,
        "SANCTUM_MANAGER_URL": fake_manager.url,
    }
    failed = subprocess.run(
        [sys.executable, "-m", "sanctum.launcher", "--", "fail"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert failed.returncode == 42, failed.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "sanctum.launcher", "--", "sleep"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        comm = Path(f"/proc/{process.pid}/comm").read_text().strip()
        if comm == "sleep":
            break
        time.sleep(0.05)
    assert comm == "sleep"  # The app replaced the launcher in the same process.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == -signal.SIGTERM
    process.communicate()


def test_files_belong_to_the_manifests_user(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin, user="app")
    fake_manager.allowlist.add(shielded.mrenclave)
    plan = prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log())
    assert plan.user is not None
    assert (plan.user.uid, plan.user.gid) == (1000, 1000)
    if os.geteuid() == 0:
        for path in ("run/tls/key.pem", "run/tls/cert.pem", "run/tls/ca.pem"):
            info = (shielded.root / path).stat()
            assert (info.st_uid, info.st_gid) == (1000, 1000)


def test_an_answer_sealed_for_another_attestation_is_refused(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    fake_manager.allowlist.add(shielded.mrenclave)
    fake_manager.secrets = {"DB_PASSWORD": ("env", "DB_PASSWORD", b"pw")}
    fake_manager.sealing_app = "another-app"
    with pytest.raises(Exception) as caught:
        prepare(_settings(shielded.root, fake_manager, sim_qe), {}, log=_Log())
    assert getattr(caught.value, "code", "") == "sealing.context_mismatch"
    assert not (shielded.root / "run").exists()
