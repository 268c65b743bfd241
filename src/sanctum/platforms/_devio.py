"""Byte-exact file I/O on device and pseudo-file trees (``/dev/attestation``, configfs).

Pseudo files are not ordinary files: a write is one message to a driver and a read returns what
the driver produced for it. Both must be checked for length, because a short write means the
driver took only part of the report data and a short read means the evidence is truncated.
:class:`DeviceIO` is the small seam the backends use, so tests can put a fake "kernel" or a fake
Gramine behind it while the backends' own logic runs unchanged; :class:`OsDeviceIO` is the real
implementation on top of :mod:`os`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Protocol

__all__ = ["DeviceIO", "OsDeviceIO"]

_CHUNK: Final = 1 << 16


class DeviceIO(Protocol):
    """The file operations the hardware backends perform on pseudo files."""

    def read(self, path: Path) -> bytes:
        """Return the whole content of ``path`` (read until end of file).

        Raises:
            OSError: The file is missing or cannot be read.
        """
        ...

    def write(self, path: Path, data: bytes) -> int:
        """Write ``data`` to ``path`` with a single write call and return the bytes taken.

        Raises:
            OSError: The file is missing or cannot be written.
        """
        ...

    def mkdir(self, path: Path) -> None:
        """Create the directory ``path`` (not its parents).

        Raises:
            OSError: The directory cannot be created.
        """
        ...

    def rmdir(self, path: Path) -> None:
        """Remove the directory ``path``.

        Raises:
            OSError: The directory cannot be removed.
        """
        ...


class OsDeviceIO:
    """:class:`DeviceIO` on the real file system, one system call per message."""

    def read(self, path: Path) -> bytes:
        """Return the whole content of ``path``.

        Raises:
            OSError: The file is missing or cannot be read.
        """
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks: list[bytes] = []
            while chunk := os.read(fd, _CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write(self, path: Path, data: bytes) -> int:
        """Write ``data`` to ``path`` in one ``write(2)`` and return how many bytes it took.

        The file is opened without ``O_CREAT`` and without truncation: the attribute must already
        exist, as device attributes do.

        Raises:
            OSError: The file is missing or cannot be written.
        """
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)

    def mkdir(self, path: Path) -> None:
        """Create the directory ``path``.

        Raises:
            OSError: The directory cannot be created.
        """
        path.mkdir(mode=0o700)

    def rmdir(self, path: Path) -> None:
        """Remove the directory ``path``.

        Raises:
            OSError: The directory cannot be removed.
        """
        path.rmdir()
