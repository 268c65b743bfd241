"""The launcher directory (ADR 0135): plain files that run from where they are, for Gramine.

The directory is built once for this module from the current sources (``python -m
sanctum.launcher.build --dir-only``). It runs natively, with no environment at all, from a copy
in a temporary directory (its entry program runs the directory's loader) and, inside a
bubblewrap sandbox that holds nothing but the directory at ``/sanctum/launcher.d``, ``/proc``
and a tiny image (busybox and the app), from its install path (the interpreter's PT_INTERP names
the directory's loader). No memory file, no ``/proc/self/fd`` path, nothing written at start.
Every ELF file is marked NODEFLIB, so a file missing from the directory fails even on a host
that has its own copy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from launcher_fixtures import FakeManager, build_shielded_root, write_oci_image

from gramine_stand_in import stand_in_gramine_tools
from sanctum.converter.convert import ConvertRequest, convert
from sanctum.converter.keys import debug_signing_key
from sanctum.converter.manifest import sign_manifest
from sanctum.converter.oci import MemoryImageStore, open_source
from sanctum.converter.oci.model import Manifest
from sanctum.converter.runtime_layer import LAUNCHER_DIR, LAUNCHER_DIR_ENTRY, LauncherAsset
from sanctum.encfs import fuse_available
from sanctum.launcher.build import DIRECTORY_ENTRY, DIRECTORY_PYTHON, is_static_elf
from sanctum.platforms.sim_qe import SimQeServer

BUSYBOX = Path("/bin/busybox")

pytestmark = [pytest.mark.slow]

APP = """#!/bin/busybox sh
echo "pid=$$"
echo "args=$*"
echo "python=${PYTHONPATH-unset}/${PYTHONHOME-unset}"
echo "db=${DB_PASSWORD-unset}"
echo "launcher-fds=$(busybox ls -l /proc/$$/fd | busybox grep -c -e sanctum-launcher -e memfd)"
if [ -n "$DATA" ]; then
  echo "secret ledger line" > "$DATA/ledger.txt"
  echo "read=$(busybox cat "$DATA/ledger.txt")"
  busybox grep -q "$DATA fuse" /proc/mounts && echo "mounted=fuse"
fi
"""


def _build(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "sanctum.launcher.build", "--dir-only", "--dir-out", str(out)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return out


@pytest.fixture(scope="module")
def launcher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The launcher directory built from the current sources, once for this module."""
    return _build(tmp_path_factory.mktemp("launcher-dir") / "sanctum-launcher.d")


@pytest.fixture
def copy(launcher_dir: Path, tmp_path: Path) -> Path:
    """A copy of the launcher directory somewhere else than its install path."""
    target = tmp_path / "elsewhere" / "sanctum-launcher.d"
    shutil.copytree(launcher_dir, target, symlinks=True)
    return target


@pytest.fixture
def busybox(require_tool: Callable[..., str]) -> Path:
    return Path(require_tool(str(BUSYBOX), package="busybox-static"))


@pytest.fixture
def bwrap(require_tool: Callable[..., str]) -> str:
    """Bubblewrap, checked to be able to make a sandbox here (fails in CI when it cannot)."""
    binary = require_tool("bwrap", package="bubblewrap")
    probe = subprocess.run(
        [binary, "--ro-bind", "/", "/", "--unshare-all", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        message = f"bubblewrap cannot make a sandbox here: {probe.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _elf_files(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    out.append(path)
    return out


def _root(
    tmp_path: Path,
    busybox: Path,
    *,
    passthrough: tuple[str, ...] = (),
    pin: str | None = None,
    encrypted: bool = False,
) -> tuple[Path, bytes]:
    """A shielded rootfs whose app is a busybox script; returns it and its MRENCLAVE."""
    root = tmp_path / "root"
    shielded = build_shielded_root(root, pin=pin)
    (root / "bin").mkdir()
    shutil.copyfile(busybox, root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    (root / "app/run.sh").write_bytes(APP.encode())
    for mount_point in (LAUNCHER_DIR, "/proc", "/dev"):  # The sandbox's mount points.
        (root / mount_point.lstrip("/")).mkdir(parents=True)
    files = dict(shielded.manifest.trusted_files)
    files["/app/run.sh"] = hashlib.sha256(APP.encode()).hexdigest()
    files["/bin/busybox"] = hashlib.sha256(busybox.read_bytes()).hexdigest()
    env = dict(shielded.manifest.env)
    if encrypted:
        env["DATA"] = str(root / "data")
    manifest = dataclasses.replace(
        shielded.manifest,
        trusted_files=files,
        env=env,
        encrypted_dirs=("/data",) if encrypted else (),
        host_env_passthrough=(*shielded.manifest.host_env_passthrough, *passthrough),
    )
    signed = sign_manifest(manifest, key=debug_signing_key(), date=dt.date(2026, 1, 1))
    (root / "sanctum/manifest.json").write_bytes(signed.manifest_bytes)
    (root / "sanctum/manifest.sigstruct").write_bytes(signed.sigstruct.to_bytes())
    return root, signed.mrenclave


def _lines(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def test_layout_is_plain_files_loading_only_from_the_directory(
    launcher_dir: Path, require_tool: Callable[..., str]
) -> None:
    readelf = require_tool("readelf", package="binutils")
    entry = launcher_dir / DIRECTORY_ENTRY
    assert is_static_elf(entry)
    assert (launcher_dir / f"{DIRECTORY_PYTHON}._pth").read_text() == "launcher.zip\n"
    assert not [p for p in launcher_dir.rglob("*") if p.is_dir() and p.name != "lib"]
    for path in [launcher_dir, *launcher_dir.rglob("*")]:
        info = path.lstat()
        assert stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode), path
        assert info.st_mtime == 0, path
    elves = _elf_files(launcher_dir)
    assert len(elves) > 40  # Loader, interpreter, libraries, extension modules, stub.
    for path in [launcher_dir, *launcher_dir.rglob("*")]:
        expected = 0o755 if path.is_dir() or path in elves else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    program = subprocess.run(
        [readelf, "-l", str(launcher_dir / DIRECTORY_PYTHON)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"[Requesting program interpreter: {LAUNCHER_DIR}/lib/ld-linux" in program
    for path in elves:
        if path == entry or path.name.startswith("ld-linux"):
            continue
        dynamic = subprocess.run(
            [readelf, "-d", str(path)], capture_output=True, text=True, check=True
        ).stdout
        assert "/proc/self/fd" not in dynamic, path
        assert "NODEFLIB" in dynamic, path
        assert "(RPATH)" in dynamic, path
        assert "Library rpath: [$ORIGIN]" in dynamic, path
        assert "RUNPATH" not in dynamic, path


def test_version_from_a_copy_with_no_environment(copy: Path) -> None:
    entry = str(copy / DIRECTORY_ENTRY)
    bare = subprocess.run([entry, "--version"], env={}, capture_output=True, text=True, check=False)
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("sanctum-launcher ")
    hostile = {
        "PYTHONHOME": "/nonexistent",
        "PYTHONPATH": "/nonexistent",
        "PYTHONSTARTUP": "/nonexistent",
        "PYTHONNOUSERSITE": "",
        "LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu",
    }
    loud = subprocess.run(
        [entry, "--version"], env=hostile, capture_output=True, text=True, check=False
    )
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout == bare.stdout


#: Imports extension modules through the directory's finder (as ``_sanctum_boot`` does).
PROBE = """
import sys, zipimport
boot = {"__name__": "probe", "__file__": sys.path[0] + "/_sanctum_boot.pyc"}
exec(zipimport.zipimporter(sys.path[0]).get_code("_sanctum_boot"), boot)
import _sanctum_table
boot["_prepare_directory"](_sanctum_table)
import zlib, ssl, cryptography.hazmat.bindings._rust
"""


def test_every_file_comes_from_the_directory(copy: Path) -> None:
    """Removing a file breaks the launcher, although the host has its own copy of each."""
    version = [str(copy / DIRECTORY_ENTRY), "--version"]
    probe = [
        str(copy / "lib/ld-linux-x86-64.so.2"), "--inhibit-cache",
        "--library-path", str(copy / "lib"),
        str(copy / DIRECTORY_PYTHON), "-I", "-S", "-B", "-c", PROBE,
    ]  # fmt: skip
    for command in (version, probe):
        result = subprocess.run(command, env={}, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    libpython = next((copy / "lib").glob("libpython*"))
    for removed, command in (
        (copy / "lib/libc.so.6", version),
        (libpython, version),
        (copy / "lib/launcher.zip", version),
        (copy / f"{DIRECTORY_PYTHON}._pth", version),
        (copy / "lib/libz.so.1", probe),
        (copy / "lib/libssl.so.3", probe),
        (copy / "lib/_ssl.so", probe),
    ):
        saved = removed.with_name(removed.name + ".saved")
        removed.rename(saved)
        try:
            result = subprocess.run(command, env={}, capture_output=True, text=True, check=False)
            assert result.returncode != 0, removed
        finally:
            saved.rename(removed)


def test_offline_launch_from_a_copy_keeps_the_pid_and_the_apps_python_variables(
    copy: Path, tmp_path: Path, busybox: Path
) -> None:
    root, _mrenclave = _root(tmp_path, busybox, passthrough=("PYTHONPATH",))
    process = subprocess.Popen(
        [str(copy / DIRECTORY_ENTRY), "extra"],
        env={
            "SANCTUM_ROOT": str(root),
            "SANCTUM_UNSAFE_OFFLINE": "1",
            "PYTHONPATH": "/the/apps/own",
            "PYTHONHOME": "/not/passed/through",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    seen = _lines(stdout)
    assert seen["pid"] == str(process.pid)  # stub -> interpreter -> app: one process.
    assert seen["args"] == "default-arg"  # The manifest allows no run-time arguments.
    assert seen["python"] == "/the/apps/own/unset"  # Untouched, passed as the manifest says.
    assert seen["launcher-fds"] == "0"
    assert "trusted files checked" in stderr
    assert "UNSAFE offline mode" in stderr


def test_offline_launch_in_a_sandbox_holding_only_the_directory(
    launcher_dir: Path, tmp_path: Path, busybox: Path, bwrap: str
) -> None:
    root, _mrenclave = _root(tmp_path, busybox)
    result = subprocess.run(
        [
            bwrap, "--ro-bind", str(root), "/", "--ro-bind", str(launcher_dir), LAUNCHER_DIR,
            "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--die-with-parent",
            "--clearenv", "--setenv", "SANCTUM_UNSAFE_OFFLINE", "1",
            LAUNCHER_DIR_ENTRY,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = _lines(result.stdout)
    assert seen["args"] == "default-arg"
    assert seen["launcher-fds"] == "0"
    # Read-only everywhere: the launcher wrote nothing to start.
    assert "trusted files checked" in result.stderr


def test_attested_launch_from_a_copy(
    copy: Path,
    tmp_path: Path,
    busybox: Path,
    fake_manager: FakeManager,
    sim_qe: SimQeServer,
) -> None:
    shielded_root, mrenclave = _root(tmp_path, busybox, pin=fake_manager.pin)
    fake_manager.allowlist.add(mrenclave)
    fake_manager.secrets = {"DB_PASSWORD": ("env", "DB_PASSWORD", b"from-the-manager")}
    result = subprocess.run(
        [str(copy / DIRECTORY_ENTRY)],
        env={
            "SANCTUM_ROOT": str(shielded_root),
            "SANCTUM_MANAGER_URL": fake_manager.url,
            "SANCTUM_PLATFORM": "simulated",
            "SANCTUM_SIM_QE": sim_qe.address,
            "SANCTUM_ATTEST_ATTEMPTS": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "attested" in result.stderr
    assert _lines(result.stdout)["db"] == "from-the-manager"


def test_encrypted_directory_through_the_directorys_fuse_stack(
    copy: Path,
    tmp_path: Path,
    busybox: Path,
    fake_manager: FakeManager,
    sim_qe: SimQeServer,
) -> None:
    """mfusepy finds libfuse3 of the directory (FUSE_LIBRARY_PATH set by the finder)."""
    reason = fuse_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {reason}")
        pytest.skip(f"FUSE unavailable: {reason}")
    root, mrenclave = _root(tmp_path, busybox, pin=fake_manager.pin, encrypted=True)
    fake_manager.allowlist.add(mrenclave)
    fake_manager.dir_keys = {"/data": os.urandom(32)}
    result = subprocess.run(
        [str(copy / DIRECTORY_ENTRY)],
        env={
            "SANCTUM_ROOT": str(root),
            "SANCTUM_MANAGER_URL": fake_manager.url,
            "SANCTUM_PLATFORM": "simulated",
            "SANCTUM_SIM_QE": sim_qe.address,
            "SANCTUM_ATTEST_ATTEMPTS": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = _lines(result.stdout)
    assert seen["read"] == "secret ledger line"
    assert seen["mounted"] == "fuse"
    deadline = time.monotonic() + 30
    while os.path.ismount(root / "data"):
        assert time.monotonic() < deadline, "the encrypted directory is still mounted"
        time.sleep(0.05)
    stored = [p for p in (root / "data").rglob("*") if p.is_file()]
    assert stored
    assert all(b"secret ledger line" not in path.read_bytes() for path in stored)


@dataclasses.dataclass(frozen=True)
class _GramineImage:
    """A converted ``gramine-sgx`` image, unpacked."""

    rootfs: Path
    entrypoint: list[str]
    document: dict[str, Any]

    def trusted(self) -> dict[str, str | None]:
        """Return image path -> SHA-256 of the Gramine manifest's trusted files."""
        return {
            item["uri"].removeprefix("file:"): item.get("sha256")
            for item in self.document["sgx"]["trusted_files"]
        }

    def sandboxed(self, bwrap: str) -> list[str]:
        """Return the command running the image's entrypoint offline in a sandbox."""
        return [
            bwrap, "--ro-bind", str(self.rootfs), "/", "--proc", "/proc", "--dev", "/dev",
            "--unshare-all", "--die-with-parent", "--clearenv",
            "--setenv", "SANCTUM_UNSAFE_OFFLINE", "1",
            *self.entrypoint,
        ]  # fmt: skip


def _gramine_image(launcher_dir: Path, tmp_path: Path, busybox: Path) -> _GramineImage:
    """Convert a busybox image for gramine-sgx (stand-in tools) and unpack its layers."""
    image = write_oci_image(
        tmp_path / "in",
        "v1",
        {"/bin/busybox": (busybox.read_bytes(), 0o755), "/app/run.sh": (APP.encode(), 0o755)},
        {"Entrypoint": ["/app/run.sh"], "Cmd": ["from-the-image"], "Env": ["PATH=/bin"]},
    )
    request = ConvertRequest.model_validate({
        "inputImageName": image, "outputImageName": "oci:out", "debug": True, "app": "bank",
    })  # fmt: skip
    sink = MemoryImageStore()
    executable = b"\x7fELF not used by a Gramine build"
    with open_source(image) as source:
        response = convert(
            request,
            source=source,
            sink=sink,
            launcher_asset=LauncherAsset(executable=executable, directory=launcher_dir),
            gramine_tools=stand_in_gramine_tools(tmp_path / "gramine-bin"),
        )
    assert response.target == "gramine-sgx"
    manifest = Manifest.parse(sink.blobs[response.image_digest])
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    for layer in manifest.layers:
        with tarfile.open(fileobj=io.BytesIO(sink.blobs[layer.digest]), mode="r:*") as tar:
            tar.extractall(rootfs, filter="fully_trusted")
    for mount_point in ("proc", "dev"):  # What a container runtime provides.
        (rootfs / mount_point).mkdir()
    config = json.loads(sink.blobs[manifest.config.digest])
    text = (rootfs / "sanctum/gramine.manifest.toml").read_text()
    assert "memfd" not in text
    assert "/proc/self/fd" not in text
    return _GramineImage(rootfs, config["config"]["Entrypoint"], tomllib.loads(text))


def test_converted_gramine_image_runs_from_its_own_layers(
    launcher_dir: Path, tmp_path: Path, busybox: Path, bwrap: str
) -> None:
    """A Gramine build's image, unpacked, runs its launcher directory in a sandbox."""
    image = _gramine_image(launcher_dir, tmp_path, busybox)
    assert image.entrypoint == [LAUNCHER_DIR_ENTRY]
    assert image.document["libos"]["entrypoint"] == LAUNCHER_DIR_ENTRY
    installed = image.rootfs / LAUNCHER_DIR.lstrip("/")
    assert sorted(p.relative_to(installed) for p in installed.rglob("*")) == sorted(
        p.relative_to(launcher_dir) for p in launcher_dir.rglob("*")
    )
    trusted = image.trusted()
    for path in installed.rglob("*"):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert trusted[f"/{path.relative_to(image.rootfs)}"] == digest
    result = subprocess.run(
        image.sandboxed(bwrap), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout)["args"] == "from-the-image"
    # The offline launcher hashed every trusted file, the launcher directory's included.
    assert "trusted files checked" in result.stderr


_SYSCALL = re.compile(r'^(\d+) +(open|openat|execve)\((?:AT_FDCWD, )?"([^"]*)".*\) = (-?\d+)')


def test_a_start_opens_and_executes_only_trusted_files(
    launcher_dir: Path,
    tmp_path: Path,
    busybox: Path,
    bwrap: str,
    require_tool: Callable[..., str],
) -> None:
    """What Gramine's strict file policy would allow: traced with strace in the sandbox.

    Every file the launcher's process opens or executes, from the entry program to the app's
    exec, is a trusted file of the Gramine manifest, the SIGSTRUCT (an allowed file), or lies
    in ``/proc`` or ``/dev`` (Gramine's pseudo file systems); no memory file is made.
    """
    strace = require_tool("strace")
    image = _gramine_image(launcher_dir, tmp_path, busybox)
    log = tmp_path / "strace.log"
    result = subprocess.run(
        [strace, "-f", "-qq", "-s", "4096", "-e", "trace=open,openat,execve,memfd_create",
         "-o", str(log), *image.sandboxed(bwrap)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    pid = next(line.split()[0] for line in lines if f'execve("{LAUNCHER_DIR_ENTRY}"' in line)
    allowed = set(image.trusted()) | {
        uri.removeprefix("file:") for uri in image.document["sgx"]["allowed_files"]
    }
    opened: set[str] = set()
    for line in lines:
        if not line.startswith(f"{pid} "):
            continue
        assert "memfd_create(" not in line
        match = _SYSCALL.match(line)
        if match is None or int(match.group(4)) < 0:
            continue
        path = match.group(3)
        if (image.rootfs / path.lstrip("/")).is_dir():
            continue  # Directory listings carry no content.
        opened.add(path)
    executed = [m.group(3) for m in map(_SYSCALL.match, lines) if m and m.group(2) == "execve"]
    assert f"{LAUNCHER_DIR}/{DIRECTORY_PYTHON}" in executed
    assert "/app/run.sh" in executed
    assert f"{LAUNCHER_DIR}/lib/launcher.zip" in opened
    assert f"{LAUNCHER_DIR}/lib/libpython3.11.so.1.0" in opened
    outside = sorted(
        path for path in opened if path not in allowed and not path.startswith(("/proc/", "/dev/"))
    )
    assert outside == []
    assert not [path for path in opened if path.startswith("/proc/self/fd")]


def test_two_builds_are_identical(launcher_dir: Path, tmp_path: Path) -> None:
    second = _build(tmp_path / "again" / "sanctum-launcher.d")

    def tree(root: Path) -> dict[str, tuple[int, int, str]]:
        return {
            str(path.relative_to(root)): (
                path.stat().st_mode,
                int(path.stat().st_mtime),
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "",
            )
            for path in root.rglob("*")
        }

    assert tree(second) == tree(launcher_dir)
