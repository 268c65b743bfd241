"""``sanctum convert`` with an Enclave Manager: local conversions register their build, and
``--remote`` runs the conversion as a manager job (against a manager served over HTTPS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from manager_cli_helpers import Served, served_manager
from test_convert_cli import _layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "converter"))

from converter_images import BUSYBOX, _start_registry, build_image, busybox_entries


@pytest.fixture
def served(tmp_path, monkeypatch):
    with served_manager(tmp_path, monkeypatch) as manager:
        yield manager


def _builds(served: Served) -> list[dict]:
    response = served.http.get(
        f"/v1/accounts/{served.account_id}/builds",
        headers={"Authorization": f"Bearer {served.admin_token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_local_conversion_registers_its_build(served: Served, tmp_path: Path) -> None:
    served.cli_json("apps", "create", "shop")
    source = _layout(tmp_path / "in")
    result = served.cli_json(
        "convert", source, f"oci:{tmp_path / 'out'}:v1", "--app", "shop", "--debug",
        "--target", "simulated",
    )  # fmt: skip
    assert result["buildStatus"] == "pending"
    assert result["taskId"]
    [build] = _builds(served)
    assert build["id"] == result["buildId"]
    assert build["measurement"] == result["mrenclave"]
    assert build["signer"] == result["mrsigner"]
    assert build["debug"] is True
    assert build["simulated"] is True
    text = served.cli(
        "convert", source, f"oci:{tmp_path / 'out2'}:v1", "--app", "shop", "--debug",
        "--target", "simulated", "--isvsvn", "2",
    )  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "allowlisting task" in text.output
    assert len(_builds(served)) == 2


def test_logged_in_conversion_needs_an_app(served: Served, tmp_path: Path) -> None:
    result = served.cli(
        "convert", _layout(tmp_path / "in"), f"oci:{tmp_path / 'out'}:v1", "--debug", "--json"
    )
    assert result.exit_code == 2
    assert json.loads(result.output)["error"]["code"] == "convert.app_missing"
    assert not (tmp_path / "out").exists()
    offline = served.cli(
        "convert", _layout(tmp_path / "in2"), f"oci:{tmp_path / 'out'}:v1", "--debug",
        "--offline", "--json",
    )  # fmt: skip
    assert offline.exit_code == 0, offline.output
    assert "buildId" not in json.loads(offline.output)
    assert _builds(served) == []


@pytest.mark.registry
def test_remote_conversion_runs_as_a_manager_job(
    served: Served, tmp_path: Path, require_tool
) -> None:
    skopeo = require_tool("skopeo")
    require_tool("/usr/bin/docker-registry", package="docker-registry")
    require_tool(str(BUSYBOX), package="busybox-static")
    image = build_image(tmp_path / "busybox", [busybox_entries()])
    (tmp_path / "registry").mkdir()
    registry = _start_registry(tmp_path / "registry", None)
    host = next(registry)
    worker = served.app.state.job_worker
    worker.start()
    try:
        subprocess.run(
            [skopeo, "--insecure-policy", "copy", "--dest-tls-verify=false", image.ref,
             f"docker://{host}/src/shop:1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        served.cli_json("apps", "create", "shop")
        result = served.cli_json(
            "convert", f"docker://{host}/src/shop:1", f"docker://{host}/shielded/shop:1",
            "--app", "shop", "--remote", "--mem", "256M",
        )  # fmt: skip
        assert result["newImage"] == f"docker://{host}/shielded/shop:1"
        assert result["imageSHA"] == result["imageDigest"]
        [build] = _builds(served)
        assert build["id"] == result["buildId"]
        assert build["status"] == "pending"
        assert "default-signing-key" not in result["flags"]
        # The same conversion again (human output): reproducible, so the build is reused.
        again = served.cli(
            "convert", f"docker://{host}/src/shop:1", f"docker://{host}/shielded/shop:1",
            "--app", "shop", "--remote", "--mem", "256M",
        )  # fmt: skip
        assert again.exit_code == 0, again.output
        assert result["mrenclave"] in again.output
        assert f"{result['buildId']} (pending)" in again.output
        assert len(_builds(served)) == 1
        local = served.cli(
            "convert", f"docker://{host}/src/shop:1", f"docker://{host}/x:1", "--app", "shop",
            "--remote", "--launcher", str(BUSYBOX), "--json",
        )  # fmt: skip
        assert local.exit_code == 2
    finally:
        worker.stop()
        registry.close()
