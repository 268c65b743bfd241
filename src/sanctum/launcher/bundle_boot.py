"""First Python code of the self-contained launcher: memory-file libraries, then the launcher.

The build (:mod:`sanctum.launcher.build`) copies this module into the launcher's archive as the
top-level module ``_sanctum_boot``, next to a generated ``_sanctum_table`` module, and the start
stub (``bundle_stub.c``) runs ``python -c "import _sanctum_boot"`` (ADR 0103). Importing it under
that name:

1. restores the app's ``PYTHON*`` variables, which the stub kept under ``SANCTUM_KEPT_*`` (the
   launcher passes host variables to the app only as its manifest allows, and must see their
   real values);
2. installs a meta-path finder for the bundled extension modules: each one, and the shared
   libraries it needs, is copied from the launcher file (descriptor 99) into an anonymous memory
   file at its fixed descriptor number on first import, then loaded from ``/proc/self/fd/N``;
   nothing is written to a file system, and modules never imported cost nothing;
3. marks every bundle descriptor close-on-exec, so the app inherits none of them;
4. runs :func:`sanctum.launcher.main.main`.

In the launcher DIRECTORY (ADR 0135, for Gramine), the table says ``MODE = "directory"``:
there are no memory files and nothing to restore (the interpreter runs in isolated mode, its
``._pth`` file fixes ``sys.path`` to the directory's archive, and the stub leaves the
environment untouched). :class:`DirectoryFinder` loads each extension module from its plain
file in ``lib/`` of the directory, found from this module's own location.

It imports only built-in and frozen modules before the finder is in place. Imported under any
other name (tests, type checks) it does nothing.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ExtensionFileLoader, ModuleSpec
from typing import Final

__all__ = ["BundleFinder", "DirectoryFinder", "directory_root", "restore_environment", "run"]

SELF_FD: Final = 99
KEPT_PREFIX: Final = "SANCTUM_KEPT_"


def restore_environment(environ: dict[str, str] | os._Environ[str]) -> None:
    """Undo the stub's environment changes in ``environ``.

    Drops the ``PYTHONHOME``/``PYTHONPATH`` the stub set and renames every
    ``SANCTUM_KEPT_PYTHON*`` variable back to its original name.
    """
    environ.pop("PYTHONHOME", None)
    environ.pop("PYTHONPATH", None)
    for name in [n for n in environ if n.startswith(KEPT_PREFIX + "PYTHON")]:
        environ[name[len(KEPT_PREFIX) :]] = environ.pop(name)


class BundleFinder:
    """Finds bundled extension modules and loads them from memory files.

    Args:
        files: Descriptor number to (offset in the launcher file, size, name).
        extensions: Module name to its descriptor and the descriptors of the libraries it
            needs, dependencies first.
        preloads: Module name to (environment variable, descriptor, dependency descriptors): a
            library that a pure module loads with ``ctypes`` (``mfusepy`` and libfuse3), made
            available and named in the variable before the module is imported.
        source: Descriptor of the launcher file.
    """

    def __init__(
        self,
        files: dict[int, tuple[int, int, str]],
        extensions: dict[str, tuple[int, ...]],
        preloads: dict[str, tuple[str, int, tuple[int, ...]]],
        source: int = SELF_FD,
    ) -> None:
        """Keep the tables; nothing is loaded yet."""
        self._files = files
        self._extensions = extensions
        self._preloads = preloads
        self._source = source
        self.loaded: set[int] = set()

    def materialize(self, fd: int) -> str:
        """Copy file ``fd`` into a memory file at that descriptor (once); return its path.

        Raises:
            OSError: The copy failed.
        """
        if fd not in self.loaded:
            offset, size, name = self._files[fd]
            memory = os.memfd_create(name)
            try:
                done = 0
                while done < size:
                    # In-kernel copy from the page cache into the memory file (no user buffer).
                    sent = os.sendfile(memory, self._source, offset + done, size - done)
                    if sent <= 0:
                        msg = f"the launcher file ends inside {name}"
                        raise OSError(msg)
                    done += sent
                os.dup2(memory, fd, inheritable=False)
            finally:
                os.close(memory)
            self.loaded.add(fd)
        return f"/proc/self/fd/{fd}"

    def find_spec(
        self,
        fullname: str,
        path: object = None,
        target: object = None,
    ) -> ModuleSpec | None:
        """Return the spec of a bundled extension module (``None`` for anything else).

        Raises:
            OSError: A library could not be copied into memory.
        """
        del path, target
        preload = self._preloads.get(fullname)
        if preload is not None:
            variable, fd, needs = preload
            for dependency in needs:
                self.materialize(dependency)
            os.environ[variable] = self.materialize(fd)
            return None
        entry = self._extensions.get(fullname)
        if entry is None:
            return None
        fd, needs = entry[0], entry[1:]
        for dependency in needs:
            self.materialize(dependency)
        location = self.materialize(fd)
        loader = ExtensionFileLoader(fullname, location)
        return ModuleSpec(fullname, loader, origin=location)


class DirectoryFinder:
    """Finds the extension modules of the launcher directory and loads them from their files.

    Args:
        root: The launcher directory.
        extensions: Module name to its file, relative to ``root``.
        preloads: Module name to (environment variable, library file relative to ``root``): a
            library that a pure module loads with ``ctypes`` (``mfusepy`` and libfuse3), named
            in the variable before the module is imported.
    """

    def __init__(
        self,
        root: str,
        extensions: dict[str, str],
        preloads: dict[str, tuple[str, str]],
    ) -> None:
        """Keep the tables; nothing is loaded yet."""
        self._root = root
        self._extensions = extensions
        self._preloads = preloads

    def find_spec(
        self,
        fullname: str,
        path: object = None,
        target: object = None,
    ) -> ModuleSpec | None:
        """Return the spec of an extension module of the directory (``None`` for anything else)."""
        del path, target
        preload = self._preloads.get(fullname)
        if preload is not None:
            variable, library = preload
            os.environ[variable] = f"{self._root}/{library}"
            return None
        relative = self._extensions.get(fullname)
        if relative is None:
            return None
        location = f"{self._root}/{relative}"
        spec = ModuleSpec(fullname, ExtensionFileLoader(fullname, location), origin=location)
        spec.has_location = True  # A plain file: the module gets its __file__.
        return spec


def directory_root(archive_member: str) -> str:
    """Return the launcher directory from the path of a module inside its ``lib/launcher.zip``.

    ``<root>/lib/launcher.zip/_sanctum_boot.pyc`` gives ``<root>``.
    """
    # String operations only: nothing beyond built-in modules is imported this early.
    archive = archive_member.rpartition("/")[0]
    return archive.rpartition("/")[0].rpartition("/")[0] or "/"


def _prepare_directory(table: object) -> None:
    """Set up the interpreter of the launcher directory (the table is ``_sanctum_table``)."""
    root = directory_root(__file__)
    sys.path[:] = [f"{root}/lib/launcher.zip"]
    finder = DirectoryFinder(
        root,
        getattr(table, "EXTENSIONS"),  # noqa: B009 (a generated module without types)
        getattr(table, "PRELOADS"),  # noqa: B009
    )
    sys.meta_path.insert(0, finder)


def _prepare_bundle(table: object) -> None:
    """Set up the interpreter of the executable form (the table is ``_sanctum_table``)."""
    restore_environment(os.environ)
    sys.path[:] = [f"/proc/self/fd/{SELF_FD}"]
    boot: tuple[int, ...] = getattr(table, "BOOT")  # noqa: B009
    finder = BundleFinder(
        getattr(table, "FILES"),  # noqa: B009
        getattr(table, "EXTENSIONS"),  # noqa: B009
        getattr(table, "PRELOADS"),  # noqa: B009
    )
    finder.loaded.update(boot)
    sys.meta_path.insert(0, finder)
    for fd in (SELF_FD, *boot):
        os.set_inheritable(fd, False)  # noqa: FBT003 (positional-only in the standard library)


def run() -> None:
    """Prepare the interpreter and run the launcher (the entry point of both forms)."""
    import _sanctum_table  # type: ignore[import-not-found]  # noqa: PLC0415 (generated)

    if getattr(_sanctum_table, "MODE", "bundle") == "directory":
        _prepare_directory(_sanctum_table)
    else:
        _prepare_bundle(_sanctum_table)
    sys.argv[0] = "sanctum-launcher"
    from sanctum.launcher.main import main  # noqa: PLC0415

    sys.exit(main())


if __name__ == "_sanctum_boot":  # pragma: no cover (runs inside the built launcher)
    run()
