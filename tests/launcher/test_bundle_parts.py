"""Parts of the self-contained launcher, in-process: the boot module and the build's planning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sanctum.launcher.build import Bundle, _module_of
from sanctum.launcher.bundle_boot import BundleFinder, restore_environment


def test_restore_environment_gives_the_app_variables_back():
    environ = {
        "PYTHONHOME": "/proc/self/fd/99",
        "PYTHONPATH": "/proc/self/fd/99",
        "SANCTUM_KEPT_PYTHONPATH": "/app/lib",
        "SANCTUM_KEPT_PYTHONUNBUFFERED": "1",
        "SANCTUM_KEPT_OTHER": "stays",
        "PATH": "/bin",
    }
    restore_environment(environ)
    assert environ == {
        "PYTHONPATH": "/app/lib",
        "PYTHONUNBUFFERED": "1",
        "SANCTUM_KEPT_OTHER": "stays",
        "PATH": "/bin",
    }


def test_finder_copies_a_library_into_a_memory_file_once(tmp_path: Path) -> None:
    payload = b"HEADER" + b"library bytes " * 10000 + b"TRAILER"
    container = tmp_path / "launcher"
    container.write_bytes(payload)
    start = payload.index(b"library")
    size = len(payload) - start - len(b"TRAILER")
    source = os.open(container, os.O_RDONLY)
    target = 250
    try:
        finder = BundleFinder({target: (start, size, "libdemo.so")}, {}, {}, source=source)
        path = finder.materialize(target)
        assert path == f"/proc/self/fd/{target}"
        assert Path(path).read_bytes() == payload[start : start + size]
        assert not os.get_inheritable(target)  # Never passed on to the app.
        assert str(Path(path).readlink()).startswith("/memfd:libdemo.so")
        assert finder.materialize(target) == path  # Loaded once.
        assert finder.loaded == {target}
    finally:
        os.close(source)
        os.close(target)


def test_finder_refuses_a_truncated_launcher_file(tmp_path: Path) -> None:
    container = tmp_path / "launcher"
    container.write_bytes(b"short")
    source = os.open(container, os.O_RDONLY)
    try:
        finder = BundleFinder({251: (0, 100, "libcut.so")}, {}, {}, source=source)
        with pytest.raises(OSError, match=r"ends inside libcut\.so"):
            finder.materialize(251)
        assert finder.loaded == set()
    finally:
        os.close(source)


def test_finder_answers_only_for_bundled_modules_and_sets_preload_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = tmp_path / "launcher"
    container.write_bytes(b"abcdefgh")
    source = os.open(container, os.O_RDONLY)
    monkeypatch.delenv("FUSE_LIBRARY_PATH", raising=False)
    files = {252: (0, 4, "libdep.so"), 253: (4, 4, "libfuse3.so.3"), 254: (0, 8, "_mod")}
    try:
        finder = BundleFinder(
            files,
            {"pkg._mod": (254, 252)},
            {"mfusepy": ("FUSE_LIBRARY_PATH", 253, (252,))},
            source=source,
        )
        assert finder.find_spec("json") is None
        assert finder.loaded == set()
        assert finder.find_spec("mfusepy") is None  # A pure module: only its library is made.
        assert os.environ["FUSE_LIBRARY_PATH"] == "/proc/self/fd/253"
        assert finder.loaded == {252, 253}
        spec = finder.find_spec("pkg._mod")
        assert spec is not None
        assert spec.origin == "/proc/self/fd/254"
        assert finder.loaded == {252, 253, 254}
    finally:
        os.close(source)
        for fd in (252, 253, 254):
            os.close(fd)


@pytest.mark.parametrize(
    ("bundle_path", "module"),
    [
        ("python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", "_ssl"),
        ("lib-dynload/math.cpython-311-x86_64-linux-gnu.so", "math"),
        ("cryptography/hazmat/bindings/_rust.abi3.so", "cryptography.hazmat.bindings._rust"),
        (
            "pydantic_core/_pydantic_core.cpython-311-x86_64-linux-gnu.so",
            "pydantic_core._pydantic_core",
        ),
    ],
)
def test_extension_module_names(bundle_path: str, module: str) -> None:
    assert _module_of(bundle_path) == module


def test_dependency_closure_is_ordered_dependencies_first() -> None:
    bundle = Bundle(needs={1: [2, 3], 2: [4], 3: [4, 5], 4: [], 5: [2]})
    order = bundle.closure(1)
    assert sorted(order) == [2, 3, 4, 5]
    for item in order:
        for dependency in bundle.needs[item]:
            assert order.index(dependency) < order.index(item)
    assert bundle.closure(4) == []
