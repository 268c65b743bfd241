from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from launcher_fixtures import build_shielded_root

from sanctum.errors import UnavailableError
from sanctum.launcher.renewal import next_renewal, supervise
from sanctum.launcher.run import LauncherSettings, StepLog, prepare, renew_once

T0 = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += dt.timedelta(seconds=seconds)


def _log() -> StepLog:
    return StepLog(stream=io.StringIO())


def test_next_renewal_is_at_two_thirds_of_the_lifetime():
    assert next_renewal(T0, T0 + dt.timedelta(hours=3)) == T0 + dt.timedelta(hours=2)


def _context(tmp_path, fake_manager, sim_qe):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    fake_manager.allowlist.add(shielded.mrenclave)
    fake_manager.secrets = {"TOKEN": ("file", "/run/secrets/token", b"v1")}
    settings = LauncherSettings(
        root=shielded.root,
        manager_url=fake_manager.url,
        platform="simulated",
        sim_qe=sim_qe.address,
        renew=True,
    )
    plan = prepare(settings, {}, log=_log())
    assert plan.renewal is not None
    return shielded.root, plan.renewal


def test_renew_once_rewrites_certificate_and_secrets_with_the_same_key(
    tmp_path, fake_manager, sim_qe
):
    root, context = _context(tmp_path, fake_manager, sim_qe)
    key_before = (root / "run/tls/key.pem").read_bytes()
    cert_before = x509.load_pem_x509_certificate((root / "run/tls/cert.pem").read_bytes())
    fake_manager.secrets = {"TOKEN": ("file", "/run/secrets/token", b"v2")}
    answer = renew_once(context, log=_log())
    cert_after = x509.load_pem_x509_certificate((root / "run/tls/cert.pem").read_bytes())
    assert cert_after.serial_number != cert_before.serial_number
    assert cert_after.public_key() == cert_before.public_key()
    assert (root / "run/tls/key.pem").read_bytes() == key_before
    assert (root / "run/secrets/token").read_bytes() == b"v2"
    assert answer.expires_at == cert_after.not_valid_after_utc
    assert len(fake_manager.requests) == 2


def test_supervisor_renews_on_schedule_retries_failures_and_stops_with_its_parent(
    tmp_path, fake_manager, sim_qe
):
    _, context = _context(tmp_path, fake_manager, sim_qe)
    lifetime = dt.timedelta(hours=3)
    context = type(context)(**{
        **{name: getattr(context, name) for name in context.__slots__},
        "issued_at": T0,
        "expires_at": T0 + lifetime,
    })  # fmt: skip
    clock = _Clock()
    calls: list[dt.datetime] = []
    outcomes = [UnavailableError("down"), None, None]

    def renew(_context):
        calls.append(clock.now)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return clock.now, clock.now + lifetime

    renewals = supervise(
        context,
        log=_log(),
        now=lambda: clock.now,
        sleep=clock.sleep,
        parent_alive=lambda: len(calls) < 3,
        renew=renew,
    )
    assert renewals == 2
    assert calls[0] == T0 + dt.timedelta(hours=2)
    assert calls[1] == calls[0] + dt.timedelta(seconds=30)  # Retry after a failure.
    assert calls[2] == calls[1] + dt.timedelta(hours=2)
    assert max(clock.sleeps) <= 5.0


def test_launcher_with_renewal_forks_a_supervisor_that_exits_with_the_app(
    tmp_path, fake_manager, sim_qe
):
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    fake_manager.allowlist.add(shielded.mrenclave)
    result = subprocess.run(
        [sys.executable, "-m", "sanctum.launcher"],
        env={
            "SANCTUM_ROOT": str(shielded.root),
            "PATH": os.environ["PATH"],
            "SANCTUM_PLATFORM": "simulated",
            "SANCTUM_SIM_QE": sim_qe.address,
            "SANCTUM_MANAGER_URL": fake_manager.url,
            "SANCTUM_RENEW": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if "renewal supervisor started" in x)
    supervisor = int(line.rsplit("pid ", 1)[1].rstrip(")"))
    deadline = time.monotonic() + 15
    while Path(f"/proc/{supervisor}").exists() and time.monotonic() < deadline:
        status = Path(f"/proc/{supervisor}/status").read_text()
        if "State:\tZ" in status:
            break
        time.sleep(0.1)
    alive = (
        Path(f"/proc/{supervisor}").exists()
        and "State:\tZ" not in Path(f"/proc/{supervisor}/status").read_text()
    )
    assert not alive
