"""The tmpfs fallback's final sync survives the app's exit inside a PID namespace.

In a container the app is PID 1 or the only child of ``catatonit``/``tini``: when it exits, the
kernel kills every process of the namespace. The launcher therefore stays the app's parent and
does the final sync itself before exiting (ADR 0119). These tests run the launcher's sequence
under ``unshare -pf --mount-proc`` (with and without ``catatonit`` as init) with a sync interval
far longer than the run: only the final sync can carry what the app wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sanctum.encfs import EncryptedDirectory
from sanctum.launcher.encrypted import FALLBACK_STORE

KEY = bytes(range(32))

LAUNCHER = """
import os, sys
from pathlib import Path
from sanctum.launcher import encrypted
from sanctum.protocol.messages import DirectoryKey

root = Path(sys.argv[1])
encrypted.fuse_available = lambda: "/dev/fuse is missing (test)"
key = DirectoryKey(path="/data", version=1, key=bytes(range(32)))
opened = encrypted.open_encrypted_dirs(
    root, ("/data",), {"/data": key}, gramine=False, owner=None, log=print,
    fallback_interval=3600, memory_fs=lambda _path: True,
)
app = (
    "import os, sys\\n"
    "open(os.path.join(sys.argv[1], 'written.txt'), 'wb').write(b'written just before exit')\\n"
    "print('app pid', os.getpid(), flush=True)\\n"
    "sys.exit(7)\\n"
)
print("launcher pid", os.getpid(), flush=True)
encrypted.run_app_with_fallback(
    opened, lambda: os.execv(sys.executable, [sys.executable, "-c", app, str(root / "data")])
)
"""


@pytest.fixture
def root() -> Iterator[Path]:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm tmpfs")
    top = Path(tempfile.mkdtemp(prefix="sanctum-pidns-", dir="/dev/shm"))
    (top / "data").mkdir()
    store = top / FALLBACK_STORE.lstrip("/") / "data"
    store.mkdir(parents=True)
    with EncryptedDirectory.open(store, KEY, create=True, durable=False) as directory:
        directory.write_file("old.txt", b"kept")
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("init", ["catatonit", None])
def test_the_final_sync_happens_after_the_app_exits_in_a_pid_namespace(
    root: Path, require_tool: Callable[..., str], init: str | None
) -> None:
    unshare = require_tool("unshare", package="util-linux")
    if os.geteuid() != 0:
        pytest.skip("unshare -p needs root here")
    prefix = [unshare, "-pf", "--mount-proc"]
    if init is not None:
        prefix += [require_tool(init), "--"]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [*prefix, sys.executable, "-c", LAUNCHER, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 7, done.stdout + done.stderr  # The app's exit code.
    # The app is not PID 1: the launcher (PID 1 or 2) is its parent.
    assert "app pid 1\n" not in done.stdout
    assert f"launcher pid {1 if init is None else 2}" in done.stdout
    store = root / FALLBACK_STORE.lstrip("/") / "data"
    with EncryptedDirectory.open(store, KEY, writable=False) as directory:
        assert directory.read_file("written.txt") == b"written just before exit"
        assert directory.read_file("old.txt") == b"kept"
    plain = root / "data"  # The plaintext working copy was wiped (a real tmpfs would stay).
    assert not plain.exists() or not any(plain.iterdir())
