"""The self-contained launcher runs in a scratch image (no Python, no libc) under podman.

The image holds only busybox (a static binary) and, after conversion, the self-contained
launcher, its signed manifest and SIGSTRUCT, and the empty /tmp the runtime layer adds. The
launcher attests through the host's simulated quoting service (its Unix socket bind-mounted into
the container) to a manager stand-in on 127.0.0.1 (host network), writes the certificate and the
secret, and execs the app, which keeps PID 1 and finds /tmp empty: nothing was unpacked (ADR 0103).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from launcher_fixtures import CONTAINERS_CONF, FakeManager, write_oci_image

from sanctum.converter.convert import ConvertRequest, convert
from sanctum.converter.oci import open_sink, open_source
from sanctum.launcher.build import is_static_elf
from sanctum.platforms.sim_qe import SimQeServer, start_sim_qe

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = Path(os.environ.get("SANCTUM_LAUNCHER_BINARY", REPO / "build/launcher/sanctum-launcher"))
BUSYBOX = Path("/bin/busybox")
APP = (
    'echo "pid=$$ db=$DB_PASSWORD"; '
    "busybox head -1 /run/tls/cert.pem; busybox stat -c '%a' /run/tls/key.pem; "
    "busybox stat -c 'tmp=%a' /tmp; echo \"in-tmp=$(busybox ls -A /tmp)\""
)

pytestmark = [pytest.mark.podman, pytest.mark.slow]


@pytest.fixture(scope="module")
def launcher_binary() -> Path:
    """The static launcher (built with `make launcher`; built here when missing)."""
    if not LAUNCHER.is_file():
        subprocess.run(
            [sys.executable, "-m", "sanctum.launcher.build", "--out", str(LAUNCHER)],
            check=True,
            timeout=600,
        )
    assert is_static_elf(LAUNCHER)
    return LAUNCHER


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory under /tmp (podman's runroot and Unix sockets have length limits)."""
    path = Path(tempfile.mkdtemp(prefix="sl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def socket_qe(short_tmp: Path) -> Iterator[SimQeServer]:
    server = start_sim_qe(short_tmp / "state", socket_path=short_tmp / "qe.sock")
    server.start_in_thread()
    yield server
    server.close()


def _shielded_image(tmp_path: Path, launcher: Path, pin: str) -> tuple[str, str]:
    image = write_oci_image(
        tmp_path / "in",
        "v1",
        {"/bin/busybox": (BUSYBOX.read_bytes(), 0o755)},
        {"Entrypoint": ["/bin/busybox", "sh", "-c"], "Cmd": [APP], "Env": ["PATH=/bin"]},
    )
    request = ConvertRequest.model_validate({
        "inputImageName": image,
        "outputImageName": f"oci:{tmp_path / 'out'}:shielded",
        "app": "bank",
        "debug": True,
        "target": "simulated",
        "managerCaPin": pin,
        "certificates": [{
            "keyPath": "/run/tls/key.pem",
            "certPath": "/run/tls/cert.pem",
            "subject": "bank.demo.local",
            "altNames": ["bank.demo.local"],
        }],
    })  # fmt: skip
    with open_source(image) as source, open_sink(request.output_image_name) as sink:
        response = convert(
            request, source=source, sink=sink, launcher_asset=launcher.read_bytes(),
            gramine_tools=None,
        )  # fmt: skip
    assert "launcher-exec-shim" not in response.flags
    return request.output_image_name, response.mrenclave


def test_scratch_image_attests_and_runs_the_app(  # noqa: PLR0917 (fixtures)
    tmp_path: Path,
    short_tmp: Path,
    require_tool: Callable[..., str],
    launcher_binary: Path,
    fake_manager: FakeManager,
    socket_qe: SimQeServer,
) -> None:
    podman = require_tool("podman")
    require_tool("runc")
    require_tool(str(BUSYBOX), package="busybox-static")
    image, mrenclave = _shielded_image(tmp_path, launcher_binary, fake_manager.pin)
    (short_tmp / "containers.conf").write_text(CONTAINERS_CONF)
    env = dict(os.environ, CONTAINERS_CONF=str(short_tmp / "containers.conf"))
    base = [podman, "--root", str(tmp_path / "storage"), "--runroot", str(short_tmp / "run"),
            "--storage-driver", "vfs"]  # fmt: skip
    # No --tmpfs: the launcher unpacks nothing, and /tmp comes from the runtime layer.
    run = [*base, "run", "--rm",
           "-v", f"{short_tmp / 'qe.sock'}:/run/sanctum/qe.sock",
           "-e", "SANCTUM_PLATFORM=simulated", "-e", "SANCTUM_SIM_QE=unix:/run/sanctum/qe.sock",
           "-e", f"SANCTUM_MANAGER_URL={fake_manager.url}"]  # fmt: skip

    def podman_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run, *args], capture_output=True, text=True, env=env, timeout=180, check=False
        )

    version = podman_run("--entrypoint", "/sanctum/launcher", image, "--version")
    assert version.returncode == 0, version.stderr
    assert "sanctum-launcher" in version.stdout

    refused = podman_run(image)
    assert refused.returncode == 1
    assert "[attest.build_not_allowlisted]" in refused.stderr
    assert "hint:" in refused.stderr

    fake_manager.allowlist.add(bytes.fromhex(mrenclave))
    fake_manager.secrets = {"DB_PASSWORD": ("env", "DB_PASSWORD", b"from-the-manager")}
    result = podman_run(image)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "pid=1 db=from-the-manager"  # The app replaced the launcher: PID 1.
    assert lines[1] == "-----BEGIN CERTIFICATE-----"
    assert lines[2] == "600"
    assert lines[3] == "tmp=1777"
    assert lines[4] == "in-tmp="
    for step in ("manifest verified", "trusted files checked", "attested", "provisioned"):
        assert step in result.stderr
    assert fake_manager.requests[-1]["app"] == "bank"
