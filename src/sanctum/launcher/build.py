"""Build the launcher in its two shipped forms (``make launcher``, ADRs 0103 and 0135).

**The self-contained executable** (``build/launcher/sanctum-launcher``, ADR 0103) is ONE file
that runs in any Linux image (Debian, Alpine/musl, distroless, scratch) without unpacking
anything at start:

- a small static start stub (``bundle_stub.c``, compiled with ``gcc -static``);
- the ELF files the launcher needs, stored uncompressed: the dynamic loader, the Python
  interpreter, ``libpython``, every shared library down to glibc, every extension module
  (``cryptography``, ``pydantic_core``, ``_ssl``, ``_ctypes``...) and ``libfuse3`` for the
  encrypted directories. Each is stripped and rewritten with ``patchelf`` so that its DT_NEEDED
  entries name ``/proc/self/fd/N``: the file's fixed descriptor number at run time;
- a ZIP archive (stored, not compressed) of the compiled Python modules the launcher imports,
  found by PyInstaller's dependency analysis (PyInstaller is used for its analysis only), plus
  ``_sanctum_boot`` (:mod:`sanctum.launcher.bundle_boot`) and the generated ``_sanctum_table``;
  the archive's comment holds the stub's index of the files it loads before Python starts.

At start the stub copies the loader, the interpreter and its libraries into anonymous memory
files, then executes the loader; extension modules and their libraries follow the same way on
their first import.

**The launcher directory** (``build/launcher/sanctum-launcher.d/``, ADR 0135) holds the same
files as plain files, for Gramine: the LibOS cannot execute a memory file, and every file an
enclave loads must be a trusted file with its SHA-256. The converter installs it at
:data:`~sanctum.converter.runtime_layer.LAUNCHER_DIR`::

    sanctum-launcher             static entry stub (bundle_stub.c built with SANCTUM_DIRECTORY)
    lib/sanctum-python           the interpreter; PT_INTERP = <LAUNCHER_DIR>/lib/<loader>
    lib/sanctum-python._pth      "launcher.zip": isolated mode, exact sys.path
    lib/<loader>, lib/lib*.so*   the dynamic loader and every library
    lib/<module>.so              the extension modules
    lib/launcher.zip             the compiled modules, _sanctum_boot and _sanctum_table

Every ELF file sits in ``lib/`` with ``DT_RPATH`` ``$ORIGIN`` (so the paths the loader opens
have no ``..`` component: each is exactly a trusted file's path) and is marked ``DF_1_NODEFLIB``
(``patchelf --no-default-lib``): the loader never falls back to the image's ``/lib`` or its
cache, so a file missing from the directory is an error, not a silent load of the image's
copy. The directory is reproducible: sorted archive,
unchecked-hash ``.pyc``, fixed modes and modification times (0).

Both forms share the analysis, the collection of files (:func:`collect`), the stripping and the
compiled modules; only the placement differs. Everything the launcher excludes (the manager, the
CLI, the verifier, the simulation PKI, ``httpx``, ``rich``...) is listed in
:data:`EXCLUDED_MODULES`. Each result is checked: the executable has no ``PT_INTERP`` header,
and both answer ``--version``.

Usage: ``python -m sanctum.launcher.build [--out PATH] [--dir-out PATH | --no-dir]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import py_compile
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sanctum.converter.runtime_layer import LAUNCHER_DIR

__all__ = [
    "DIRECTORY_ENTRY",
    "DIRECTORY_PYTHON",
    "EXCLUDED_MODULES",
    "FIRST_FD",
    "Bundle",
    "Collected",
    "analyse",
    "build",
    "build_directory",
    "collect",
    "is_static_elf",
    "main",
]

#: Modules never bundled into the launcher (not needed, or must not be there).
EXCLUDED_MODULES: Final = (
    "sanctum.manager",
    "sanctum.cli",
    "sanctum.attestation",
    "sanctum.platforms.simulated",
    "sanctum.platforms.pcs",
    "sanctum.platforms.collateral_source",
    "sanctum.converter.oci",
    "sanctum.converter.convert",
    "fastapi",
    "starlette",
    "sqlalchemy",
    "alembic",
    "uvicorn",
    "psycopg",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "click",
    "rich",
    "pygments",
    "zstandard",
    "brotli",
    "h2",
    "hypothesis",
    "mypy",
    "ast_serialize",
    "setuptools",
    "pkg_resources",
    "distutils",
    "pytest",
    "_pytest",
    "tkinter",
    "curses",
    "readline",
    "pdb",
    "pydoc",
    "unittest",
)
#: Modules bundled although the analysis cannot see them (imported by name at run time).
HIDDEN_IMPORTS: Final = ("__future__", "mfusepy", "sanctum.launcher.main")
#: Descriptor of the dynamic loader; the interpreter is next, then libraries and extensions.
FIRST_FD: Final = 100
#: Descriptors stay below the usual soft limit of open files.
_MAX_FD: Final = 1000
_PT_INTERP: Final = 3
_LOADER_SONAME: Final = re.compile(r"^ld-linux[-\w]*\.so\.\d+$")
_BEGIN: Final = b"SANCTUM-BOOT-BEGIN\n"
_END: Final = b"SANCTUM-BOOT-END\n"
#: The directory form's entry program, relative to the directory.
DIRECTORY_ENTRY: Final = "sanctum-launcher"
#: The directory form's interpreter, relative to the directory (its ``._pth`` file is beside it).
DIRECTORY_PYTHON: Final = "lib/sanctum-python"
#: The directory form's module archive, relative to the directory.
_DIRECTORY_ZIP: Final = "lib/launcher.zip"
#: Modification time of every file and directory of the directory form (reproducible).
_FIXED_MTIME: Final = 0


def is_static_elf(path: Path) -> bool:
    """Return whether ``path`` is a 64-bit ELF executable with no ``PT_INTERP`` header.

    Raises:
        ValueError: ``path`` is not a 64-bit little-endian ELF file.
    """
    with path.open("rb") as handle:
        data = handle.read(1 << 16)
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        msg = f"{path} is not a 64-bit little-endian ELF file"
        raise ValueError(msg)
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(
        struct.unpack_from("<I", data, phoff + i * phentsize)[0] != _PT_INTERP for i in range(phnum)
    )


def _run(command: list[str], **kwargs: object) -> str:
    """Run a build command and return its standard output.

    Raises:
        subprocess.CalledProcessError: The command failed.
    """
    result = subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    return str(result.stdout)


def _tool(name: str) -> str:
    """Return the path of a build tool (next to this Python first, then on PATH).

    Raises:
        FileNotFoundError: The tool is not installed.
    """
    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        msg = f"{name} is not installed (pip install -e '.[launcher-build]'; gcc from Debian)"
        raise FileNotFoundError(msg)
    return found


_SPEC: Final = """\
# Generated by sanctum.launcher.build: PyInstaller's analysis only, written as JSON.
import json
from PyInstaller.compat import PY3_BASE_MODULES
a = Analysis([{entry!r}], excludes={excludes!r}, hiddenimports={hidden!r})
with open({out!r}, "w") as handle:
    json.dump({{"pure": [list(t) for t in a.pure], "binaries": [list(t) for t in a.binaries],
               "base": sorted(PY3_BASE_MODULES)}}, handle)
"""


def _analyse(workdir: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Return the launcher's pure modules (name, source) and binaries (name, path, kind).

    Raises:
        subprocess.CalledProcessError: PyInstaller failed.
    """
    spec = workdir / "analysis.spec"
    out = workdir / "analysis.json"
    spec.write_text(
        _SPEC.format(
            entry=str(Path(__file__).with_name("bundle_boot.py")),
            excludes=list(EXCLUDED_MODULES),
            hidden=list(HIDDEN_IMPORTS),
            out=str(out),
        )
    )
    sys.stderr.write("+ PyInstaller analysis of sanctum.launcher\n")
    _run([
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level=WARN",
        f"--distpath={workdir / 'dist'}", f"--workpath={workdir / 'work'}", str(spec),
    ])  # fmt: skip
    doc = json.loads(out.read_text())
    pure = [(str(n), str(p)) for n, p, _kind in doc["pure"]]
    # PyInstaller keeps the modules the interpreter needs while it starts in its own base
    # library, outside the analysis's list: add them (packages whole) from the standard library.
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for module in doc["base"]:
        package = stdlib / module
        if package.is_dir():
            for source in sorted(package.rglob("*.py")):
                parts = source.relative_to(stdlib).with_suffix("").parts
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                pure.append((name, str(source)))
        elif (stdlib / f"{module}.py").is_file():
            pure.append((module, str(stdlib / f"{module}.py")))
    binaries = [(str(n), str(p), str(k)) for n, p, k in doc["binaries"]]
    return pure, binaries


def _needed(path: Path, patchelf: str) -> list[str]:
    """Return the DT_NEEDED entries of ``path``."""
    return _run([patchelf, "--print-needed", str(path)]).split()


def _resolve(path: Path) -> dict[str, Path]:
    """Return what the host's loader resolves for ``path``: soname to file (``ldd``)."""
    found: dict[str, Path] = {}
    for line in _run(["ldd", str(path)]).splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found[parts[0]] = Path(parts[2]).resolve()
        elif parts and parts[0].startswith("/"):
            found[Path(parts[0]).name] = Path(parts[0]).resolve()
    return found


def _find_library(soname: str) -> Path:
    """Return the host path of a library by soname (``ldconfig -p``).

    Raises:
        FileNotFoundError: Not installed.
    """
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    for line in _run([ldconfig, "-p"]).splitlines():
        name, _, target = line.strip().partition(" => ")
        if name.split(" ", 1)[0] == soname and "x86-64" in name:
            return Path(target).resolve()
    msg = f"{soname} is not installed on the build machine (apt-get install fuse3)"
    raise FileNotFoundError(msg)


def _module_of(name: str) -> str:
    """Return the module name of an extension's bundle path (``lib-dynload/_ssl.cpython...``)."""
    if "lib-dynload/" in name:
        name = name.split("lib-dynload/", 1)[1]
    directory, _, base = name.rpartition("/")
    stem = base.split(".", 1)[0]
    return f"{directory.replace('/', '.')}.{stem}" if directory else stem


@dataclass(frozen=True)
class Collected:
    """What the launcher needs, found on the build machine (shared by both forms).

    Attributes:
        loader: The dynamic loader.
        loader_name: Its soname (``ld-linux-x86-64.so.2``).
        python: The interpreter executable.
        libraries: Soname to file of every shared library (the loader excluded, ``libfuse3``
            included), sorted by soname.
        extensions: Module name to file of every extension module, sorted by name.
        pure: Module name to source file of the pure Python modules.
        needed: File to its DT_NEEDED sonames (the loader's name excluded), for every ELF file
            but the loader.
    """

    loader: Path
    loader_name: str
    python: Path
    libraries: Mapping[str, Path]
    extensions: Mapping[str, Path]
    pure: Mapping[str, Path]
    needed: Mapping[Path, tuple[str, ...]]

    def elf_files(self) -> list[Path]:
        """Return every ELF file but the loader: interpreter, libraries, extension modules."""
        return [self.python, *self.libraries.values(), *self.extensions.values()]


def collect(
    pure: list[tuple[str, str]], binaries: list[tuple[str, str, str]], patchelf: str
) -> Collected:
    """Find every file the launcher needs from the analysis (:func:`analyse`).

    Raises:
        RuntimeError: A needed library cannot be resolved.
        FileNotFoundError: libfuse3 is not installed.
    """
    python = Path(sys.executable).resolve()
    extensions = {_module_of(n): Path(p) for n, p, kind in binaries if kind == "EXTENSION"}
    fuse_path = _find_library("libfuse3.so.3")
    roots = [python, fuse_path, *extensions.values()]
    roots += [Path(p) for _n, p, kind in binaries if kind == "BINARY"]
    found: dict[str, Path] = {}
    for root in roots:
        found.update(_resolve(root))
    found = {name: path for name, path in found.items() if name != "linux-vdso.so.1"}
    loader_name, loader = next((n, p) for n, p in found.items() if _LOADER_SONAME.match(n))
    libraries = {n: p for n, p in sorted(found.items()) if not _LOADER_SONAME.match(n)}
    libraries.setdefault("libfuse3.so.3", fuse_path)
    libraries = dict(sorted(libraries.items()))
    collected = Collected(
        loader=loader,
        loader_name=loader_name,
        python=python,
        libraries=libraries,
        extensions=dict(sorted(extensions.items())),
        pure={name: Path(source) for name, source in pure if source.endswith(".py")},
        needed={},
    )
    needed: dict[Path, tuple[str, ...]] = {}
    for path in collected.elf_files():
        sonames = tuple(s for s in _needed(path, patchelf) if not _LOADER_SONAME.match(s))
        missing = [soname for soname in sonames if soname not in libraries]
        if missing:
            msg = f"{path} needs {missing[0]}, which the build machine's loader did not resolve"
            raise RuntimeError(msg)
        needed[path] = sonames
    return dataclasses.replace(collected, needed=needed)


@dataclass
class Bundle:
    """What goes into the launcher file (descriptor numbers, files, modules).

    Attributes:
        files: Descriptor to (memory-file name, host source path), in descriptor order.
        needs: Descriptor to the descriptors it needs directly (DT_NEEDED).
        extensions: Extension module name to its descriptor.
        boot: Descriptors the stub loads before Python starts.
        fuse: Descriptor of libfuse3.
        pure: Module name to source file of the pure Python modules.
    """

    files: dict[int, tuple[str, Path]] = field(default_factory=dict)
    needs: dict[int, list[int]] = field(default_factory=dict)
    extensions: dict[str, int] = field(default_factory=dict)
    boot: list[int] = field(default_factory=list)
    fuse: int = 0
    pure: dict[str, Path] = field(default_factory=dict)

    def closure(self, fd: int) -> list[int]:
        """Return what ``fd`` needs, transitively, dependencies first (``fd`` excluded)."""
        order: list[int] = []

        def visit(item: int) -> None:
            for dependency in self.needs.get(item, []):
                if dependency not in order:
                    visit(dependency)
                    order.append(dependency)

        visit(fd)
        return [item for item in order if item != fd]


def _plan(collected: Collected) -> Bundle:
    """Assign descriptors to every ELF file of the executable form.

    Raises:
        RuntimeError: Too many files for the descriptor range.
    """
    bundle = Bundle()
    bundle.files[FIRST_FD] = ("ld.so", collected.loader)
    bundle.files[FIRST_FD + 1] = ("python", collected.python)
    next_fd = FIRST_FD + 2
    by_soname: dict[str, int] = {}
    for name, path in collected.libraries.items():
        bundle.files[next_fd] = (name, path)
        by_soname[name] = next_fd
        next_fd += 1
    bundle.fuse = by_soname["libfuse3.so.3"]
    for module, path in collected.extensions.items():
        bundle.files[next_fd] = (module[-60:], path)
        bundle.extensions[module] = next_fd
        next_fd += 1
    if next_fd > _MAX_FD:
        msg = f"{next_fd - FIRST_FD} files do not fit below descriptor {_MAX_FD}"
        raise RuntimeError(msg)
    for fd, (_name, path) in bundle.files.items():
        if fd != FIRST_FD:
            bundle.needs[fd] = [by_soname[soname] for soname in collected.needed[path]]
    bundle.boot = [FIRST_FD, FIRST_FD + 1, *bundle.closure(FIRST_FD + 1)]
    bundle.pure = dict(collected.pure)
    return bundle


def _stripped(source: Path, target: Path, *, strip: bool = True) -> Path:
    """Write ``source`` to ``target`` (stripped unless ``strip`` is false), mode 0755.

    Raises:
        subprocess.CalledProcessError: strip failed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tool = shutil.which("strip")
    if tool is not None and strip:
        _run([tool, "--strip-unneeded", "-o", str(target), str(source)])
    else:
        shutil.copyfile(source, target)
    target.chmod(0o755)
    return target


def _prepare_elf(fd: int, source: Path, bundle: Bundle, workdir: Path, patchelf: str) -> Path:
    """Return a stripped copy of ``source`` whose DT_NEEDED entries name ``/proc/self/fd/N``.

    Raises:
        subprocess.CalledProcessError: strip or patchelf failed.
    """
    target = _stripped(source, workdir / "elf" / str(fd), strip=fd != FIRST_FD)
    if fd == FIRST_FD:
        return target
    by_fd = {other: name for other, (name, _path) in bundle.files.items()}
    command = [patchelf, "--remove-rpath"]
    for soname in _needed(target, patchelf):
        if _LOADER_SONAME.match(soname):
            continue
        dependency = next(d for d in bundle.needs[fd] if by_fd[d] == soname)
        command += ["--replace-needed", soname, f"/proc/self/fd/{dependency}"]
    _run([*command, str(target)])
    return target


def _table(bundle: Bundle, offsets: dict[int, tuple[int, int]]) -> str:
    """Return the source of the executable form's generated ``_sanctum_table`` module."""
    files = {fd: (*offsets[fd], name) for fd, (name, _path) in bundle.files.items()}
    extensions = {m: (fd, *bundle.closure(fd)) for m, fd in sorted(bundle.extensions.items())}
    preloads = {"mfusepy": ("FUSE_LIBRARY_PATH", bundle.fuse, tuple(bundle.closure(bundle.fuse)))}
    return (
        '"""Generated by sanctum.launcher.build: where the bundled files are (ADR 0103)."""\n'
        'MODE = "bundle"\n'
        f"FILES = {files!r}\n"
        f"EXTENSIONS = {extensions!r}\n"
        f"PRELOADS = {preloads!r}\n"
        f"BOOT = {tuple(bundle.boot)!r}\n"
    )


def _compiled(source: Path, name: str, workdir: Path) -> Path:
    """Return ``source`` compiled to an unchecked-hash .pyc (no timestamps, no source needed).

    Both forms of one build share the result (the generated tables have different sources).

    Raises:
        py_compile.PyCompileError: The source does not compile.
    """
    target = workdir / "pyc" / f"{name}.pyc"
    if target.is_file() and not name.startswith("_sanctum_"):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    py_compile.compile(
        str(source),
        cfile=str(target),
        dfile=name.replace(".", "/") + ".py",
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    return target


def _write_modules(
    archive: zipfile.ZipFile, pure: Mapping[str, Path], table: Path, workdir: Path
) -> None:
    """Add the compiled modules, ``_sanctum_boot`` and ``table`` to ``archive``, sorted.

    Raises:
        py_compile.PyCompileError: A module does not compile.
    """
    boot_module = Path(__file__).with_name("bundle_boot.py")
    modules = {**pure, "_sanctum_boot": boot_module, "_sanctum_table": table}
    for name, source in sorted(modules.items()):
        package = source.name == "__init__.py"
        arcname = name.replace(".", "/") + ("/__init__.pyc" if package else ".pyc")
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, _compiled(source, name, workdir).read_bytes())


def _stub(workdir: Path, *, directory: str | None = None, loader_name: str = "") -> bytes:
    """Compile the static start stub (the directory form's when ``directory`` is given).

    Args:
        workdir: Where the compiler writes.
        directory: The directory form's install directory (compiled in), or ``None``.
        loader_name: The directory form's loader file name in ``lib/``.

    Raises:
        subprocess.CalledProcessError: The compiler failed.
        FileNotFoundError: No C compiler.
    """
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        msg = "a C compiler (gcc, with the static glibc of libc6-dev) is needed"
        raise FileNotFoundError(msg)
    out = workdir / ("stub-directory" if directory else "stub")
    source = Path(__file__).with_name("bundle_stub.c")
    defines: list[str] = []
    if directory is not None:
        defines = [
            "-DSANCTUM_DIRECTORY",
            f"-DSANCTUM_INSTALL_DIR={json.dumps(directory)}",
            f"-DSANCTUM_LOADER={json.dumps(loader_name)}",
            f"-DSANCTUM_PYTHON={json.dumps(DIRECTORY_PYTHON)}",
        ]
    _run([
        compiler, "-static", "-Os", "-s", "-Wall", "-Werror", *defines,
        "-o", str(out), str(source),
    ])  # fmt: skip
    return out.read_bytes()


def _check_starts(program: Path) -> None:
    """Check that a built launcher answers ``--version`` with no environment at all.

    Raises:
        RuntimeError: It does not.
    """
    check = subprocess.run(
        [str(program), "--version"], capture_output=True, text=True, check=False, timeout=60, env={}
    )
    if check.returncode != 0 or not check.stdout.startswith("sanctum-launcher "):
        msg = f"the built launcher {program} does not start: {check.stderr.strip()[-2000:]}"
        raise RuntimeError(msg)


def analyse(workdir: Path) -> Collected:
    """Run the dependency analysis and collect the launcher's files (shared by both forms).

    Raises:
        subprocess.CalledProcessError: PyInstaller or a build tool failed.
        FileNotFoundError: patchelf or libfuse3 is missing.
        RuntimeError: A needed library cannot be resolved.
    """
    pure, binaries = _analyse(workdir)
    return collect(pure, binaries, _tool("patchelf"))


def _build_executable(out: Path, collected: Collected, workdir: Path) -> Path:
    """Write the self-contained executable at ``out`` (replaced atomically) and return it.

    Raises:
        subprocess.CalledProcessError: A build tool failed.
        RuntimeError: The result needs a dynamic loader or does not start.
    """
    patchelf = _tool("patchelf")
    bundle = _plan(collected)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.tmp")
    offsets: dict[int, tuple[int, int]] = {}
    with staged.open("wb") as handle:
        handle.write(_stub(workdir))
        for fd, (_name, source) in bundle.files.items():
            handle.write(b"\0" * (-handle.tell() % 4096))  # Page-aligned, for the cache.
            data = _prepare_elf(fd, source, bundle, workdir, patchelf).read_bytes()
            offsets[fd] = (handle.tell(), len(data))
            handle.write(data)
        table = workdir / "_sanctum_table.py"
        table.write_text(_table(bundle, offsets))
        with zipfile.ZipFile(handle, "a", compression=zipfile.ZIP_STORED) as archive:
            _write_modules(archive, bundle.pure, table, workdir)
            lines = [_BEGIN]
            for fd in bundle.boot:
                offset, size = offsets[fd]
                lines.append(f"B {fd} {offset} {size} {bundle.files[fd][0]}\n".encode())
            archive.comment = b"".join([*lines, _END])
    staged.chmod(0o755)
    if not is_static_elf(staged):
        msg = f"{staged} has an ELF interpreter: the stub is not static"
        raise RuntimeError(msg)
    _check_starts(staged)
    # Replace the output atomically: a demo or test may be running the previous build.
    staged.replace(out)
    return out


def _directory_table(collected: Collected) -> str:
    """Return the source of the directory form's generated ``_sanctum_table`` module."""
    extensions = {module: f"lib/{module}.so" for module in collected.extensions}
    preloads = {"mfusepy": ("FUSE_LIBRARY_PATH", "lib/libfuse3.so.3")}
    return (
        '"""Generated by sanctum.launcher.build: the launcher directory (ADR 0135)."""\n'
        'MODE = "directory"\n'
        f"EXTENSIONS = {extensions!r}\n"
        f"PRELOADS = {preloads!r}\n"
    )


def _pin_metadata(root: Path) -> None:
    """Give every entry below ``root`` (and ``root``) a fixed mode and modification time."""
    entries = sorted(root.rglob("*"), reverse=True)  # Children before their directory.
    for path in [*entries, root]:
        if path.is_symlink():
            msg = f"{path} is a symbolic link: the launcher directory holds plain files only"
            raise RuntimeError(msg)
        if path.is_dir():
            path.chmod(0o755)
        else:
            with path.open("rb") as handle:
                elf = handle.read(4) == b"\x7fELF"
            path.chmod(0o755 if elf else 0o644)
        os.utime(path, (_FIXED_MTIME, _FIXED_MTIME))


def _build_directory(
    out: Path, collected: Collected, workdir: Path, *, install_dir: str = LAUNCHER_DIR
) -> Path:
    """Write the launcher directory at ``out`` (replacing it) and return it.

    Raises:
        subprocess.CalledProcessError: A build tool failed.
        RuntimeError: A needed library is missing or the result does not start.
    """
    patchelf = _tool("patchelf")
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.tmp")
    if staged.exists():
        shutil.rmtree(staged)
    lib = staged / "lib"
    _stripped(collected.loader, lib / collected.loader_name, strip=False)
    placed: list[Path] = []
    python = _stripped(collected.python, staged / DIRECTORY_PYTHON)
    _run([
        patchelf, "--set-interpreter", f"{install_dir}/lib/{collected.loader_name}", str(python)
    ])  # fmt: skip
    placed.append(python)
    for soname, source in collected.libraries.items():
        placed.append(_stripped(source, lib / soname))
    for module, source in collected.extensions.items():
        target = lib / f"{module}.so"
        if target.exists():
            msg = f"extension module {module} and a library share the file name {target.name}"
            raise RuntimeError(msg)
        placed.append(_stripped(source, target))
    for path in placed:
        # DT_RPATH (not RUNPATH) comes before LD_LIBRARY_PATH; no default directories or cache.
        _run([
            patchelf, "--force-rpath", "--set-rpath", "$ORIGIN", "--no-default-lib", str(path)
        ])  # fmt: skip
    table = workdir / "_sanctum_table_directory.py"
    table.write_text(_directory_table(collected))
    with zipfile.ZipFile(staged / _DIRECTORY_ZIP, "w", compression=zipfile.ZIP_STORED) as archive:
        _write_modules(archive, collected.pure, table, workdir)
    # Python reads this file beside its executable: isolated mode, no site, exactly this path.
    pth = staged / f"{DIRECTORY_PYTHON}._pth"
    pth.write_text(f"{Path(_DIRECTORY_ZIP).relative_to(Path(DIRECTORY_PYTHON).parent)}\n")
    entry = staged / DIRECTORY_ENTRY
    entry.write_bytes(_stub(workdir, directory=install_dir, loader_name=collected.loader_name))
    _pin_metadata(staged)
    if not is_static_elf(entry):
        msg = f"{entry} has an ELF interpreter: the stub is not static"
        raise RuntimeError(msg)
    _check_starts(entry)
    if out.exists():
        previous = out.with_name(f".{out.name}.old")
        if previous.exists():
            shutil.rmtree(previous)
        out.replace(previous)
        staged.replace(out)
        shutil.rmtree(previous)
    else:
        staged.replace(out)
    return out


def build(out: Path, *, directory: Path | None = None, executable: bool = True) -> Path:
    """Build the self-contained launcher at ``out`` (and the directory form) and return ``out``.

    Args:
        out: The executable form's path.
        directory: The directory form's path, or ``None`` to build no directory.
        executable: Whether to build the executable form (``False``: the directory only).

    Raises:
        subprocess.CalledProcessError: A build tool failed.
        FileNotFoundError: A build tool or libfuse3 is missing.
        RuntimeError: A result needs a dynamic loader or does not start.
    """
    with tempfile.TemporaryDirectory(prefix="sanctum-launcher-build-") as work:
        workdir = Path(work)
        collected = analyse(workdir)
        if executable:
            _build_executable(out, collected, workdir)
        if directory is not None:
            _build_directory(directory, collected, workdir)
    return out


def build_directory(out: Path, *, collected: Collected | None = None) -> Path:
    """Build only the launcher directory at ``out`` and return it.

    Args:
        out: Where the directory goes (replaced if it exists).
        collected: The files to place (:func:`analyse`); ``None`` runs the analysis.

    Raises:
        subprocess.CalledProcessError: A build tool failed.
        FileNotFoundError: A build tool or libfuse3 is missing.
        RuntimeError: A needed library is missing or the result does not start.
    """
    with tempfile.TemporaryDirectory(prefix="sanctum-launcher-build-") as work:
        workdir = Path(work)
        return _build_directory(out, collected or analyse(workdir), workdir)


def _size(path: Path) -> int:
    """Return the size of a file, or the total size of a directory's files."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    """Command line of the build.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description="Build the Sanctum launcher (both forms).")
    parser.add_argument("--out", type=Path, default=Path("build/launcher/sanctum-launcher"))
    parser.add_argument(
        "--dir-out", type=Path, help="the launcher directory (default: OUT.d, next to OUT)"
    )
    parser.add_argument("--no-dir", action="store_true", help="build the executable only")
    parser.add_argument("--dir-only", action="store_true", help="build the directory only")
    args = parser.parse_args(argv)
    if args.no_dir and args.dir_only:
        parser.error("--no-dir and --dir-only exclude each other")
    directory = None if args.no_dir else args.dir_out or args.out.with_name(f"{args.out.name}.d")
    started = time.perf_counter()
    build(args.out, directory=directory, executable=not args.dir_only)
    took = time.perf_counter() - started
    python = sysconfig.get_python_version()
    if not args.dir_only:
        sys.stderr.write(
            f"built {args.out}: {_size(args.out) / 1e6:.1f} MB, self-contained "
            f"(Python {python}, no unpacking)\n"
        )
    if directory is not None:
        files = sum(1 for p in directory.rglob("*") if p.is_file())
        sys.stderr.write(
            f"built {directory}/: {_size(directory) / 1e6:.1f} MB in {files} files, for "
            f"{LAUNCHER_DIR} (Gramine: every file a trusted file)\n"
        )
    sys.stderr.write(f"in {took:.0f} s\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
