"""The demo, end to end, without its interactive parts (``sanctum demo --no-wait``).

A real manager process (HTTPS, SQLite, simulated platform trusted for the demo account), the
host's simulated quoting service, a sample image built from local Debian packages, conversion
by the manager's conversion job (the static launcher, the manager's URL and CA pin filled in, the
build registered as pending), approvals by a second member, the shielded image run by podman from a
scratch-like image (no Python), an HTTPS call verified with the account CA, the memory
inspection, and the two refusals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sanctum.converter.manifest import ca_pin_from_certificate

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = Path(os.environ.get("SANCTUM_LAUNCHER_BINARY", REPO / "build/launcher/sanctum-launcher"))

pytestmark = [pytest.mark.slow]


def _launcher() -> Path:
    if not LAUNCHER.is_file():
        subprocess.run(
            [sys.executable, "-m", "sanctum.launcher.build", "--out", str(LAUNCHER)],
            check=True,
            timeout=600,
        )
    return LAUNCHER


def _demo(tmp_path: Path, runner: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sanctum", "demo", "--no-wait", "--json",
         "--runner", runner, "--launcher", str(_launcher())],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def _check_summary(result: subprocess.CompletedProcess[str], runner: str) -> None:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout[result.stdout.index('{\n  "ok"') :])
    assert summary["ok"] is True
    assert summary["runner"] == runner
    assert [step["ok"] for step in summary["steps"]] == [True] * 6
    assert '"balance": "1234.56"' in summary["body"]
    assert summary["claims"] == {"simulated": True, "tcb": "UpToDate"}
    assert summary["token_status"] == "contraindicated"
    assert summary["memory_found"] is True
    assert summary["refusals"] == ["launcher.trusted_file_mismatch", "attest.build_not_allowlisted"]


def _check_conversion_job(result: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    """The manager converted (a job), filled in its own URL and CA pin, registered pending."""
    summary = json.loads(result.stdout[result.stdout.index('{\n  "ok"') :])
    conversion = summary["conversion"]
    assert conversion["via"] == "manager-job"
    assert conversion["job_id"]
    assert conversion["registered_status"] == "pending"
    manager_ca = tmp_path / ".sanctum" / "demo" / "manager" / "tls" / "ca.pem"
    assert conversion["manager_ca_pin"] == ca_pin_from_certificate(manager_ca.read_bytes())
    assert conversion["manager_url"].startswith("https://127.0.0.1:")
    assert "conversion job" in result.stdout


def _no_leftovers(tmp_path: Path) -> None:
    state = str(tmp_path / ".sanctum" / "demo")
    leftovers = subprocess.run(
        ["pgrep", "-f", state], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == []


@pytest.mark.podman
def test_demo_runs_every_step_and_cleans_up(
    tmp_path: Path, require_tool: Callable[..., str]
) -> None:
    require_tool("podman")
    require_tool("runc")
    require_tool("/bin/busybox", package="busybox-static")
    require_tool("openssl")
    require_tool("docker-registry")
    result = _demo(tmp_path, "podman")
    _check_summary(result, "podman")
    _check_conversion_job(result, tmp_path)
    # Everything it started is stopped: no manager process is left serving this state directory.
    _no_leftovers(tmp_path)
    # Running it twice works (state is reset).
    again = _demo(tmp_path, "podman")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "6/6 steps succeeded" in again.stdout


def test_demo_without_podman_runs_the_image_with_bwrap(
    tmp_path: Path, require_tool: Callable[..., str]
) -> None:
    require_tool("bwrap", package="bubblewrap")
    require_tool("/bin/busybox", package="busybox-static")
    require_tool("openssl")
    result = _demo(tmp_path, "bwrap")
    _check_summary(result, "bwrap")
    _no_leftovers(tmp_path)
