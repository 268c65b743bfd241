"""The launcher's tmpfs fallback when FUSE is unavailable (FUSE is simulated missing here).

A forked "launcher" runs :func:`open_encrypted_dirs` and then starts a small Python app as its
child (:func:`run_app_with_fallback`), as the real launcher does; the plaintext working copy
lives in a tmpfs (``/dev/shm``), the ciphertext in the store directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sanctum.encfs import EncfsUsageError, EncryptedDirectory
from sanctum.encfs.fallback import keep_in_sync
from sanctum.encfs.transfer import TransferStats
from sanctum.launcher import encrypted
from sanctum.launcher.encrypted import (
    FALLBACK_STORE,
    open_encrypted_dirs,
    run_app_with_fallback,
)
from sanctum.launcher.errors import LauncherConfigError
from sanctum.protocol.messages import DirectoryKey

KEY = bytes(range(32))
MARKER = b"PLAINTEXT-FALLBACK-MARKER"


@pytest.fixture
def no_fuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encrypted, "fuse_available", lambda: "/dev/fuse is missing")


@pytest.fixture
def root() -> Iterator[Path]:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm tmpfs")
    top = Path(tempfile.mkdtemp(prefix="sanctum-fallback-", dir="/dev/shm"))
    (top / "data").mkdir()
    store = top / FALLBACK_STORE.lstrip("/") / "data"
    store.mkdir(parents=True)
    with EncryptedDirectory.open(store, KEY, create=True, durable=False) as directory:
        directory.write_file("old.txt", b"kept from before")
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _key(floor: int = 0) -> dict[str, DirectoryKey]:
    return {"/data": DirectoryKey(path="/data", version=1, min_epoch=floor, key=KEY)}


def test_without_a_store_the_launcher_refuses(tmp_path, no_fuse):
    (tmp_path / "data").mkdir()
    with pytest.raises(LauncherConfigError) as raised:
        open_encrypted_dirs(tmp_path, ("/data",), _key(), gramine=False, owner=None, log=print)
    assert raised.value.code == "launcher.encrypted_dir_unavailable"
    assert "/sanctum/encrypted/data is not mounted" in raised.value.message
    assert "--tmpfs /data" in (raised.value.hint or "")


def test_a_directory_on_a_persistent_disk_is_never_used_for_plaintext(tmp_path, no_fuse):
    (tmp_path / "data").mkdir()
    (tmp_path / "sanctum/encrypted/data").mkdir(parents=True)
    with pytest.raises(LauncherConfigError) as raised:
        open_encrypted_dirs(
            tmp_path, ("/data",), _key(), gramine=False, owner=None, log=print,
            memory_fs=lambda _path: False,
        )  # fmt: skip
    assert "/data is not a tmpfs" in raised.value.message
    assert not any((tmp_path / "data").iterdir())
    assert not any((tmp_path / "sanctum/encrypted/data").iterdir())


APP = """
import os, sys, time
data = sys.argv[1]
assert open(os.path.join(data, "old.txt"), "rb").read() == b"kept from before"
with open(os.path.join(data, "new.txt"), "wb") as f:
    f.write({marker!r})
if sys.argv[2] == "slow":
    time.sleep(2.0)  # Ten periodic syncs, even on a loaded machine.
    with open(os.path.join(data, "late.txt"), "wb") as f:
        f.write(b"late")
    with open(sys.argv[3] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(sys.argv[3] + ".tmp", sys.argv[3])
    time.sleep(30)
if sys.argv[2] == "signal":
    os.kill(os.getpid(), 15)
    time.sleep(30)
sys.exit(7)
"""


def _launch(root: Path, mode: str, extra: str = "", interval: float = 0.2) -> int:
    """Fork a launcher that opens the directory and runs the app; return the launcher pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the forked launcher)
        try:
            opened = open_encrypted_dirs(
                root, ("/data",), _key(), gramine=False, owner=None, log=lambda _line: None,
                fallback_interval=interval,
            )  # fmt: skip
            script = APP.format(marker=MARKER)
            run_app_with_fallback(
                opened,
                lambda: os.execv(
                    sys.executable,
                    [sys.executable, "-c", script, str(root / "data"), mode, extra],
                ),
            )
        finally:
            os._exit(99)
    return pid


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _wiped(plain: Path) -> bool:
    # The launcher removes the working copy (a real tmpfs mount point itself stays).
    return not plain.exists() or not any(plain.iterdir())


def _store_files(root: Path) -> dict[str, bytes]:
    store = root / FALLBACK_STORE.lstrip("/") / "data"

    def opened() -> bool:
        try:
            EncryptedDirectory.open(store, KEY, writable=False).close()
        except EncfsUsageError:  # The launcher still holds it.
            return False
        return True

    _wait(opened)
    with EncryptedDirectory.open(store, KEY, writable=False) as directory:
        return {item.path: directory.read_file(item.path) for item in directory.walk()
                if item.kind == "file"}  # fmt: skip


def _no_plaintext_in_store(root: Path) -> None:
    store = root / FALLBACK_STORE.lstrip("/") / "data"
    for path in store.rglob("*"):
        if path.is_file():
            assert MARKER not in path.read_bytes()


def test_the_launcher_exits_with_the_app_code_after_syncing_its_data_back(root, no_fuse):
    launcher = _launch(root, "exit", interval=3600)
    _, status = os.waitpid(launcher, 0)
    assert os.waitstatus_to_exitcode(status) == 7  # The app's own exit code.
    # The launcher synced after the app exited, then wiped the working copy, before exiting.
    assert _wiped(root / "data")
    files = _store_files(root)
    assert files == {"old.txt": b"kept from before", "new.txt": MARKER}
    _no_plaintext_in_store(root)


def test_a_signal_of_the_app_is_the_launcher_s_and_the_data_is_still_synced(root, no_fuse):
    launcher = _launch(root, "signal", interval=3600)
    _, status = os.waitpid(launcher, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGTERM
    assert _wiped(root / "data")
    assert _store_files(root)["new.txt"] == MARKER


def test_a_signal_to_the_launcher_is_forwarded_to_the_app(root, no_fuse):
    ready = root / "ready"
    launcher = _launch(root, "slow", str(ready), interval=3600)
    _wait(ready.exists)
    os.kill(launcher, signal.SIGTERM)  # What a container stop sends to the launcher.
    _, status = os.waitpid(launcher, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGTERM  # The app died of it; the launcher too.
    assert _store_files(root)["late.txt"] == b"late"  # The final sync ran.


def test_a_killed_launcher_loses_only_what_was_written_since_its_last_sync(root, no_fuse):
    ready = root / "ready"
    launcher = _launch(root, "slow", str(ready), interval=0.2)
    _wait(ready.exists)
    app = int(ready.read_text())
    os.kill(launcher, signal.SIGKILL)  # A crash: no final sync.
    os.waitpid(launcher, 0)
    os.kill(app, signal.SIGKILL)
    files = _store_files(root)
    # Written two seconds before the crash: synced periodically, kept. The directory is intact
    # (it opens and authenticates); what came after the last sync may be missing.
    assert files["new.txt"] == MARKER
    assert files["old.txt"] == b"kept from before"
    assert set(files) <= {"old.txt", "new.txt", "late.txt"}
    _no_plaintext_in_store(root)


class _FakeSession:
    workdir = Path("/work")
    host_dir = Path("/host")

    def __init__(self) -> None:
        self.syncs = 0
        self.closed = False

    def sync(self) -> TransferStats:
        self.syncs += 1
        return TransferStats(files=1)

    def close(self, *, sync: bool) -> None:
        assert not sync
        self.closed = True


def test_the_keeper_syncs_periodically_and_once_more_when_the_app_is_gone():
    session = _FakeSession()
    now = [0.0]
    polls = [0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        polls[0] += 1

    status = keep_in_sync(
        session,  # type: ignore[arg-type]
        parent=10,
        interval=1.0,
        poll=0.25,
        parent_pid=lambda: 10 if polls[0] < 12 else 1,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert status == 0
    assert session.syncs == 3 + 1  # Every second for three seconds, then the final one.
    assert session.closed
