"""Under Gramine, file secrets go only to enclave-protected paths (fake Gramine device tree)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from launcher_fixtures import FakeManager, build_shielded_root

from sanctum.attestation.quote import parse_quote
from sanctum.launcher.errors import LauncherConfigError
from sanctum.launcher.policy import check_secret_paths, enclave_protected_dirs
from sanctum.launcher.run import LauncherSettings, StepLog, prepare
from sanctum.platforms.gramine import GramineEvidenceSource


def _fake_devices() -> ModuleType:
    """Return the platforms tests' fake device trees (a helper module, loaded by path once)."""
    if "fake_devices" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "platforms" / "fake_devices.py"
        spec = importlib.util.spec_from_file_location("fake_devices", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_devices"] = module
        spec.loader.exec_module(module)
    return sys.modules["fake_devices"]


class _Log(StepLog):
    def line(self, text: str) -> None:
        pass


def _gramine_run(tmp_path: Path, manager: FakeManager, secret_path: str) -> Path:
    """Run the launcher's sequence on a fake Gramine with one file secret at ``secret_path``."""
    devices = _fake_devices()
    shielded = build_shielded_root(tmp_path / "root", pin=manager.pin)
    device_root = devices.make_gramine_tree(tmp_path / "enclave")
    source = GramineEvidenceSource(device_root, io=devices.FakeGramine())
    manager.allowlist.add(parse_quote(devices.SGX_QUOTE).body.mr_enclave)  # type: ignore[union-attr]
    manager.secrets = {"DB_PASSWORD": ("file", secret_path, b"s3cret")}
    settings = LauncherSettings(
        root=shielded.root, manager_url=manager.url, platform="gramine", max_attempts=1
    )
    prepare(settings, {}, log=_Log(), source_factory=lambda *_args: source)
    return shielded.root


def test_a_secret_outside_the_enclave_is_refused_before_anything_is_written(
    tmp_path: Path, fake_manager: FakeManager
) -> None:
    with pytest.raises(LauncherConfigError) as refused:
        _gramine_run(tmp_path, fake_manager, "/etc/app/db-password")
    assert refused.value.code == "launcher.secret_path_unprotected"
    assert "/etc/app/db-password" in refused.value.message
    assert refused.value.hint
    root = tmp_path / "root"
    assert not (root / "etc/app/db-password").exists()
    assert not (root / "run/tls/key.pem").exists()  # Not even the certificate files.


@pytest.mark.parametrize(
    "path",
    ["/tmp/db-password", "/run/tls/db-password"],
    ids=["rw-dir-tmpfs", "key-directory-tmpfs"],
)
def test_secrets_in_enclave_protected_directories_are_written(
    tmp_path: Path, fake_manager: FakeManager, path: str
) -> None:
    root = _gramine_run(tmp_path, fake_manager, path)
    assert (root / path.lstrip("/")).read_bytes() == b"s3cret"
    assert (root / "run/tls/key.pem").is_file()


def test_outside_gramine_the_path_is_not_restricted(
    tmp_path: Path, fake_manager: FakeManager, sim_qe
) -> None:
    shielded = build_shielded_root(tmp_path / "root", pin=fake_manager.pin)
    fake_manager.allowlist.add(shielded.mrenclave)
    fake_manager.secrets = {"DB_PASSWORD": ("file", "/etc/app/db-password", b"s3cret")}
    settings = LauncherSettings(
        root=shielded.root,
        manager_url=fake_manager.url,
        platform="simulated",
        sim_qe=sim_qe.address,
        max_attempts=1,
    )
    prepare(settings, {}, log=_Log())
    assert (shielded.root / "etc/app/db-password").read_bytes() == b"s3cret"


def test_protected_directories_are_the_gramine_manifests_mounts(tmp_path: Path) -> None:
    shielded = build_shielded_root(tmp_path / "root", pin=None)
    # rwDirs (tmpfs), encryptedDirs, and the tmpfs the converter mounts for the key paths.
    assert enclave_protected_dirs(shielded.manifest) == ("/tmp", "/run/tls")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/tmp/a", True),
        ("/tmp/nested/a", True),
        ("/data/x", True),
        ("/tmp", False),  # The directory itself is not a file in it.
        ("/tmpx/a", False),  # A prefix of the name is not a parent.
        ("/etc/passwd", False),
        ("//tmp//a", True),  # Normalised first.
    ],
)
def test_check_secret_paths_matches_whole_directory_names(path: str, *, allowed: bool) -> None:
    protected = ("/tmp/", "/data")
    if allowed:
        check_secret_paths({"S": path}, protected)
    else:
        with pytest.raises(LauncherConfigError, match="outside every enclave-protected"):
            check_secret_paths({"S": path}, protected)
