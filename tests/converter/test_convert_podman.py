"""A converted image runs for real under podman (the exec shim launcher; no attestation).

The attesting launcher executable is built and tested by the launcher's own suite; here the
converter's output must be a valid image whose entrypoint is ``/sanctum/launcher`` and whose
launcher runs the original command with the frozen environment (host variables are not passed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from converter_images import BUSYBOX, build_image, busybox_entries

from sanctum.converter.convert import ConvertRequest, convert
from sanctum.converter.oci import open_sink, open_source

CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "host"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""


@pytest.fixture
def request_cleanup() -> Iterator[list[Path]]:
    paths: list[Path] = []
    yield paths
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.podman
def test_converted_busybox_image_runs_under_podman(
    tmp_path: Path, require_tool: Callable[..., str], request_cleanup: list[Path]
) -> None:
    podman = require_tool("podman")
    require_tool("runc")
    require_tool(str(BUSYBOX), package="busybox-static")
    image = build_image(
        tmp_path / "in",
        [busybox_entries()],
        config={
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo mode=$MODE greeting=$GREETING other=$OTHER"],
            "Env": ["PATH=/bin", "MODE=image"],
        },
    )
    request = ConvertRequest.model_validate({
        "inputImageName": image.ref,
        "outputImageName": f"oci:{tmp_path / 'out'}:shielded",
        "debug": True,
        "target": "simulated",
        "manifestEnv": {"MODE": "shielded"},
        "hostEnvPassthrough": ["GREETING"],
    })  # fmt: skip
    with open_source(image.ref) as source, open_sink(request.output_image_name) as sink:
        response = convert(request, source=source, sink=sink, gramine_tools=None)
    assert "launcher-exec-shim" in response.flags
    (tmp_path / "containers.conf").write_text(CONTAINERS_CONF)
    env = dict(os.environ, CONTAINERS_CONF=str(tmp_path / "containers.conf"))
    # podman refuses a runroot path longer than 50 characters: use a short one under /tmp.
    runroot = Path(tempfile.mkdtemp(prefix="sanctum-pr-", dir="/tmp"))
    request_cleanup.append(runroot)
    base = [podman, "--root", str(tmp_path / "root"), "--runroot", str(runroot),
            "--storage-driver", "vfs"]  # fmt: skip
    result = subprocess.run(
        [*base, "run", "--rm", "-e", "MODE=host", "-e", "GREETING=hi", "-e", "OTHER=leak",
         request.output_image_name],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # The frozen value wins, the allowed host variable passes, any other host variable does not.
    assert result.stdout.strip().splitlines()[-1] == "mode=shielded greeting=hi other="
    assert "exec shim, no attestation" in result.stderr
    inspected = subprocess.run(
        [*base, "image", "inspect", request.output_image_name],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    if inspected.returncode == 0:
        config = json.loads(inspected.stdout)[0]["Config"]
        assert config["Entrypoint"] == ["/sanctum/launcher"]
