"""A Gramine build ships the launcher directory, every file a trusted file (ADR 0135).

The launcher directory here is a small stand-in with the required layout (its content does not
matter to the converter); ``tests/launcher/test_launcher_dir.py`` runs the real one. Gramine's
tools are stand-ins too (Gramine cannot be installed here): ``gramine-manifest`` copies, and
``gramine-sgx-sign`` signs a SIGSTRUCT over the manifest text, so the measurement covers it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from converter_images import BuiltImage, build_image, directory, file

from gramine_stand_in import stand_in_gramine_tools
from sanctum.cli.main import cli
from sanctum.converter.convert import ConvertRequest, ConvertResponse, convert
from sanctum.converter.gramine import GramineTools, launcher_runs_under_gramine
from sanctum.converter.manifest import DEFAULT_LAUNCHER_PATH, verify_signed_manifest
from sanctum.converter.manifest_errors import BuildOptionError
from sanctum.converter.oci import MemoryImageStore, open_source
from sanctum.converter.oci.model import Manifest
from sanctum.converter.runtime_layer import (
    LAUNCHER_DIR,
    LAUNCHER_DIR_ENTRY,
    LauncherAsset,
    load_launcher_asset,
    read_launcher_directory,
)

EXECUTABLE = b"\x7fELF the self-contained launcher stand-in"
#: Relative path -> (content, executable) of the stand-in launcher directory.
DIRECTORY_FILES: dict[str, tuple[bytes, bool]] = {
    "sanctum-launcher": (b"\x7fELF entry stub", True),
    "lib/sanctum-python": (b"\x7fELF interpreter", True),
    "lib/sanctum-python._pth": (b"launcher.zip\n", False),
    "lib/ld-linux-x86-64.so.2": (b"\x7fELF loader", True),
    "lib/libc.so.6": (b"\x7fELF libc", True),
    "lib/_ssl.so": (b"\x7fELF ssl module", True),
    "lib/launcher.zip": (b"PK modules", False),
}


def write_launcher_dir(root: Path, files: dict[str, tuple[bytes, bool]] | None = None) -> Path:
    """Write a stand-in launcher directory at ``root``."""
    for relative, (data, executable) in (files or DIRECTORY_FILES).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if executable else 0o644)
    return root


@pytest.fixture
def launcher_dir(tmp_path: Path) -> Path:
    return write_launcher_dir(tmp_path / "sanctum-launcher.d")


@pytest.fixture
def image(tmp_path: Path) -> BuiltImage:
    layers = [[directory("app"), file("app/run", b"#!/bin/sh\necho hi\n", 0o755)]]
    return build_image(
        tmp_path / "layout",
        layers,
        config={"Entrypoint": ["/app/run"], "Env": ["PATH=/bin"], "WorkingDir": "/app"},
    )


@pytest.fixture
def tools(tmp_path: Path) -> GramineTools:
    return stand_in_gramine_tools(tmp_path / "gramine-bin")


def _request(target: str) -> ConvertRequest:
    return ConvertRequest.model_validate({
        "inputImageName": "oci:in",
        "outputImageName": "oci:out",
        "debug": True,
        "target": target,
        "encryptedDirs": ["/data"],
    })  # fmt: skip


def _convert(
    image: BuiltImage,
    asset: bytes | LauncherAsset | None,
    *,
    tools: GramineTools | None = None,
    target: str = "auto",
) -> tuple[ConvertResponse, dict[str, tuple[bytes, int]], dict[str, Any]]:
    """Convert; return the response, the runtime layer's files (data, mode) and the config."""
    sink = MemoryImageStore()
    with open_source(image.ref) as source:
        response = convert(
            _request(target), source=source, sink=sink, launcher_asset=asset, gramine_tools=tools
        )
    manifest = Manifest.parse(sink.blobs[response.image_digest])
    files: dict[str, tuple[bytes, int]] = {}
    blob = sink.blobs[manifest.layers[-1].digest]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                files["/" + member.name] = (handle.read(), member.mode)
    config = json.loads(sink.blobs[manifest.config.digest])
    return response, files, config


def test_gramine_build_ships_the_directory_and_trusts_every_file(
    image: BuiltImage, launcher_dir: Path, tools: GramineTools
) -> None:
    asset = LauncherAsset(executable=EXECUTABLE, directory=launcher_dir)
    response, files, config = _convert(image, asset, tools=tools)
    assert response.target == "gramine-sgx"
    assert "launcher-not-for-gramine" not in response.flags
    shipped = {path: value for path, value in files.items() if path.startswith(LAUNCHER_DIR + "/")}
    assert set(shipped) == {f"{LAUNCHER_DIR}/{relative}" for relative in DIRECTORY_FILES}
    for relative, (data, executable) in DIRECTORY_FILES.items():
        assert shipped[f"{LAUNCHER_DIR}/{relative}"] == (data, 0o755 if executable else 0o644)
    assert DEFAULT_LAUNCHER_PATH not in files  # Gramine cannot run the executable form.
    assert config["config"]["Entrypoint"] == [LAUNCHER_DIR_ENTRY]

    toml_bytes = files["/sanctum/gramine.manifest.toml"][0]
    text = toml_bytes.decode()
    document = tomllib.loads(text)
    assert document["libos"]["entrypoint"] == LAUNCHER_DIR_ENTRY
    assert document["loader"]["argv"] == [LAUNCHER_DIR_ENTRY]
    assert document["loader"]["entrypoint"]["uri"].startswith("file:/usr/lib/")  # The LibOS.
    assert "memfd" not in text
    assert "/proc/self/fd" not in text
    assert "NOT RUNNABLE" not in text
    trusted = {item["uri"]: item.get("sha256") for item in document["sgx"]["trusted_files"]}
    for path, (data, _mode) in shipped.items():
        assert trusted[f"file:{path}"] == hashlib.sha256(data).hexdigest()
    # The measurement is Gramine's, over this manifest text (stand-in signer).
    assert response.mrenclave == hashlib.sha256(b"pages" + toml_bytes).hexdigest()

    manifest = verify_signed_manifest(
        files["/sanctum/manifest.json"][0], files["/sanctum/manifest.sigstruct"][0]
    )
    assert manifest.launcher == LAUNCHER_DIR_ENTRY
    assert launcher_runs_under_gramine(manifest)
    for path, (data, _mode) in shipped.items():
        assert manifest.trusted_files[path] == hashlib.sha256(data).hexdigest()


def test_simulated_build_keeps_the_executable(image: BuiltImage, launcher_dir: Path) -> None:
    asset = LauncherAsset(executable=EXECUTABLE, directory=launcher_dir)
    response, files, config = _convert(image, asset, target="simulated")
    assert response.target == "simulated"
    assert files[DEFAULT_LAUNCHER_PATH] == (EXECUTABLE, 0o755)
    assert not [path for path in files if path.startswith(LAUNCHER_DIR)]
    assert config["config"]["Entrypoint"] == [DEFAULT_LAUNCHER_PATH]
    manifest = verify_signed_manifest(
        files["/sanctum/manifest.json"][0], files["/sanctum/manifest.sigstruct"][0]
    )
    assert manifest.trusted_files[DEFAULT_LAUNCHER_PATH] == hashlib.sha256(EXECUTABLE).hexdigest()
    # The Gramine manifest always emitted for reference says it cannot run as it is.
    assert "NOT RUNNABLE under Gramine" in files["/sanctum/gramine.manifest.toml"][0].decode()


def test_a_directory_alone_is_shipped_on_any_target(image: BuiltImage, launcher_dir: Path) -> None:
    response, files, config = _convert(image, LauncherAsset(directory=launcher_dir))
    assert response.target == "simulated"
    assert config["config"]["Entrypoint"] == [LAUNCHER_DIR_ENTRY]
    assert files[LAUNCHER_DIR_ENTRY][1] == 0o755
    assert "NOT RUNNABLE" not in files["/sanctum/gramine.manifest.toml"][0].decode()


def test_executable_alone_on_gramine_is_flagged(image: BuiltImage, tools: GramineTools) -> None:
    response, files, _config = _convert(image, EXECUTABLE, tools=tools)
    assert response.target == "gramine-sgx"
    assert "launcher-not-for-gramine" in response.flags
    assert "NOT RUNNABLE under Gramine" in files["/sanctum/gramine.manifest.toml"][0].decode()
    shim, _files, _config = _convert(image, None, target="simulated")
    assert "launcher-exec-shim" in shim.flags  # The fallback is kept, and flagged.


@pytest.mark.parametrize("changed", ["sanctum-launcher", "lib/launcher.zip", "lib/_ssl.so"])
def test_measurement_covers_every_launcher_file(
    image: BuiltImage, tmp_path: Path, tools: GramineTools, changed: str
) -> None:
    base = write_launcher_dir(tmp_path / "a")
    altered = dict(DIRECTORY_FILES)
    data, executable = altered[changed]
    altered[changed] = (data + b"!", executable)
    other = write_launcher_dir(tmp_path / "b", altered)
    # The Sanctum measurement (simulated target) and Gramine's (the stand-in signs the TOML).
    for target, gramine in (("simulated", None), ("auto", tools)):
        first, _files, _config = _convert(
            image, LauncherAsset(directory=base), tools=gramine, target=target
        )
        second, _files, _config = _convert(
            image, LauncherAsset(directory=other), tools=gramine, target=target
        )
        assert first.mrenclave != second.mrenclave, target
        again, _files, _config = _convert(
            image, LauncherAsset(directory=base), tools=gramine, target=target
        )
        assert again.image_digest == first.image_digest  # Reproducible.


def test_load_launcher_asset_takes_the_directory_beside_the_executable(
    tmp_path: Path, launcher_dir: Path
) -> None:
    executable = tmp_path / "sanctum-launcher"
    executable.write_bytes(EXECUTABLE)
    asset = load_launcher_asset(executable)
    assert asset == LauncherAsset(executable=EXECUTABLE, directory=launcher_dir)
    assert load_launcher_asset(launcher_dir) == LauncherAsset(directory=launcher_dir)
    alone = tmp_path / "alone" / "launcher"
    alone.parent.mkdir()
    alone.write_bytes(EXECUTABLE)
    assert load_launcher_asset(alone) == LauncherAsset(executable=EXECUTABLE)


def test_unusable_launcher_assets_are_refused(tmp_path: Path, launcher_dir: Path) -> None:
    with pytest.raises(BuildOptionError) as missing:
        load_launcher_asset(tmp_path / "nothing-here")
    assert missing.value.code == "build.launcher_unreadable"
    (launcher_dir / "lib/launcher.zip").unlink()
    with pytest.raises(BuildOptionError) as incomplete:
        load_launcher_asset(launcher_dir)
    assert incomplete.value.code == "build.launcher_invalid"
    assert "lib/launcher.zip" in incomplete.value.message
    with pytest.raises(BuildOptionError) as empty:
        LauncherAsset()
    assert empty.value.code == "build.launcher_invalid"


def test_a_symbolic_link_in_the_directory_is_refused(launcher_dir: Path) -> None:
    (launcher_dir / "lib/libalias.so").symlink_to("libc.so.6")
    with pytest.raises(BuildOptionError) as refused:
        read_launcher_directory(launcher_dir)
    assert refused.value.code == "build.launcher_invalid"
    assert "lib/libalias.so" in refused.value.message


def test_directory_files_are_read_sorted_with_their_modes(launcher_dir: Path) -> None:
    files = read_launcher_directory(launcher_dir)
    assert [item.path for item in files] == sorted(
        f"{LAUNCHER_DIR}/{relative}" for relative in DIRECTORY_FILES
    )
    modes = {item.path: item.mode for item in files}
    assert modes[LAUNCHER_DIR_ENTRY] == 0o755
    assert modes[f"{LAUNCHER_DIR}/lib/launcher.zip"] == 0o644


def test_cli_takes_the_launcher_directory_or_the_executable_beside_it(
    image: BuiltImage, tmp_path: Path, launcher_dir: Path
) -> None:
    executable = tmp_path / "sanctum-launcher"  # Its .d directory is `launcher_dir`.
    executable.write_bytes(EXECUTABLE)
    runner = CliRunner()
    outputs = {}
    for name, given in (("directory", launcher_dir), ("executable", executable)):
        out = tmp_path / f"out-{name}"
        result = runner.invoke(
            cli,
            ["convert", image.ref, f"oci:{out}:v1", "--debug", "--target", "simulated",
             "--offline", "--json", "--launcher", str(given)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[name] = json.loads(result.output)
        assert "launcher-exec-shim" not in outputs[name]["flags"]
    # A simulated build ships the directory only when no executable is given.
    assert outputs["directory"]["mrenclave"] != outputs["executable"]["mrenclave"]
    (launcher_dir / "lib/launcher.zip").unlink()
    refused = runner.invoke(
        cli,
        ["convert", image.ref, f"oci:{tmp_path / 'refused'}:v1", "--debug", "--offline",
         "--json", "--launcher", str(launcher_dir)],
    )  # fmt: skip
    assert refused.exit_code != 0
    assert "build.launcher_invalid" in refused.output
