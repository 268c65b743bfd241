"""The launcher must not depend on the manager, directly or through anything it imports."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import sanctum.launcher
from sanctum.launcher.build import EXCLUDED_MODULES, is_static_elf

LAUNCHER_DIR = Path(sanctum.launcher.__file__).parent
SRC = LAUNCHER_DIR.parent.parent


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # ``from package.module import function``: not a module.
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports(path: Path, module: str) -> set[str]:
    """Every sanctum module ``path`` imports, at any nesting level (function-level too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "sanctum" or name.startswith("sanctum.")}


def _closure(roots: list[str]) -> dict[str, str]:
    """Map every sanctum module reachable from ``roots`` to the module that imports it."""
    seen: dict[str, str] = dict.fromkeys(roots, "")
    queue = list(roots)
    while queue:
        name = queue.pop()
        path = _module_file(name)
        if path is None:
            continue
        parents = name.split(".")
        for i in range(1, len(parents)):
            parent = ".".join(parents[:i])
            if parent not in seen:
                seen[parent] = name
                queue.append(parent)
        for imported in _imports(path, name):
            if imported not in seen and _module_file(imported) is not None:
                seen[imported] = name
                queue.append(imported)
    return seen


def test_no_launcher_module_reaches_the_manager_statically():
    roots = [
        "sanctum.launcher." + path.stem if path.stem != "__init__" else "sanctum.launcher"
        for path in sorted(LAUNCHER_DIR.glob("*.py"))
    ]
    assert "sanctum.launcher.run" in roots
    reached = _closure(roots)
    offenders = {name: via for name, via in reached.items() if name.startswith("sanctum.manager")}
    assert offenders == {}, f"the launcher reaches the manager: {offenders}"
    # The closure is real: it follows function-level imports into the platforms.
    assert "sanctum.platforms.sim_qe" in reached
    assert "sanctum.protocol.messages" in reached


def test_importing_the_launcher_loads_no_manager_module():
    code = (
        "import sys, sanctum.launcher.main, sanctum.launcher.run, sanctum.platforms.sim_qe;"
        "bad = sorted(m for m in sys.modules if m.startswith('sanctum.manager') "
        "or m in ('fastapi', 'sqlalchemy', 'uvicorn'));"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_static_elf_detection(tmp_path):
    assert is_static_elf(Path("/bin/busybox"))  # busybox-static
    assert not is_static_elf(Path(sys.executable).resolve())
    (tmp_path / "text").write_bytes(b"#!/bin/sh\n")
    with pytest.raises(ValueError):
        is_static_elf(tmp_path / "text")
    # The frozen launcher leaves the manager and the simulation PKI out.
    assert {"sanctum.manager", "sanctum.platforms.simulated"} <= set(EXCLUDED_MODULES)
