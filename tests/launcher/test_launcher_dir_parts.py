"""Parts of the launcher directory, in-process: the boot module's finder and the build's layout."""

from __future__ import annotations

import importlib.util
import os
from importlib.machinery import ExtensionFileLoader
from pathlib import Path

import pytest

from sanctum.converter.runtime_layer import LAUNCHER_DIR
from sanctum.launcher import build
from sanctum.launcher.bundle_boot import DirectoryFinder, directory_root


@pytest.mark.parametrize(
    ("member", "root"),
    [
        ("/sanctum/launcher.d/lib/launcher.zip/_sanctum_boot.pyc", "/sanctum/launcher.d"),
        ("/tmp/x/copy/lib/launcher.zip/_sanctum_boot.pyc", "/tmp/x/copy"),
        ("/lib/launcher.zip/_sanctum_boot.pyc", "/"),
    ],
)
def test_directory_root_from_the_archive_member(member: str, root: str) -> None:
    assert directory_root(member) == root


def test_finder_answers_for_the_directorys_extensions_and_preloads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FUSE_LIBRARY_PATH", raising=False)
    finder = DirectoryFinder(
        "/opt/l.d",
        {"pkg._mod": "lib/pkg._mod.so"},
        {"mfusepy": ("FUSE_LIBRARY_PATH", "lib/libfuse3.so.3")},
    )
    assert finder.find_spec("json") is None
    assert finder.find_spec("mfusepy") is None  # A pure module: only its library is named.
    assert os.environ["FUSE_LIBRARY_PATH"] == "/opt/l.d/lib/libfuse3.so.3"
    spec = finder.find_spec("pkg._mod")
    assert spec is not None
    assert spec.origin == "/opt/l.d/lib/pkg._mod.so"
    assert isinstance(spec.loader, ExtensionFileLoader)


def test_finder_loads_a_real_extension_module_from_its_file(tmp_path: Path) -> None:
    """An extension module copied under another file name loads through the finder."""
    import _bisect  # noqa: PLC0415 (only its file is wanted)

    source = Path(_bisect.__file__)
    target = tmp_path / "lib/_bisect.so"
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    finder = DirectoryFinder(str(tmp_path), {"_bisect": "lib/_bisect.so"}, {})
    spec = finder.find_spec("_bisect")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__file__ == str(target)
    assert module.bisect_left([1, 3, 5], 4) == 2


def test_directory_table_names_every_extension_and_libfuse3() -> None:
    collected = build.Collected(
        loader=Path("/lib64/ld-linux-x86-64.so.2"),
        loader_name="ld-linux-x86-64.so.2",
        python=Path("/usr/bin/python3.11"),
        libraries={"libfuse3.so.3": Path("/lib/libfuse3.so.3")},
        extensions={"_ssl": Path("/x/_ssl.so"), "pydantic_core._pydantic_core": Path("/x/p.so")},
        pure={},
        needed={},
    )
    namespace: dict[str, object] = {}
    exec(build._directory_table(collected), namespace)  # The generated module.
    assert namespace["MODE"] == "directory"
    assert namespace["EXTENSIONS"] == {
        "_ssl": "lib/_ssl.so",
        "pydantic_core._pydantic_core": "lib/pydantic_core._pydantic_core.so",
    }
    assert namespace["PRELOADS"] == {"mfusepy": ("FUSE_LIBRARY_PATH", "lib/libfuse3.so.3")}


def test_pinned_metadata_and_no_symbolic_links(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "lib").mkdir(parents=True)
    (root / "lib/libx.so").write_bytes(b"\x7fELF library")
    (root / "lib/launcher.zip").write_bytes(b"PK")
    (root / "lib/launcher.zip").chmod(0o600)
    build._pin_metadata(root)
    assert (root / "lib/libx.so").stat().st_mode & 0o777 == 0o755
    assert (root / "lib/launcher.zip").stat().st_mode & 0o777 == 0o644
    assert all(p.stat().st_mtime == 0 for p in [root, *root.rglob("*")])
    (root / "lib/alias.so").symlink_to("libx.so")
    with pytest.raises(RuntimeError, match="symbolic link"):
        build._pin_metadata(root)


def test_the_build_installs_for_the_converters_directory() -> None:
    assert build.LAUNCHER_DIR == LAUNCHER_DIR
    assert build.DIRECTORY_PYTHON == "lib/sanctum-python"


def test_command_line_refuses_contradictory_forms() -> None:
    with pytest.raises(SystemExit) as stopped:
        build.main(["--no-dir", "--dir-only"])
    assert stopped.value.code == 2
