"""The FUSE mount: a workload writes files and SQLite through it; the host sees ciphertext."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sanctum.encfs import EncfsUsageError, EncryptedDirectory, WrongKeyError
from sanctum.encfs.fuse import fuse_available, mount_encrypted

pytestmark = pytest.mark.fuse

SECRET = "IBAN-DE89-3704-0044-0532-0130-00"

WORKLOAD = textwrap.dedent(
    """
    import os, sqlite3, sys
    root = sys.argv[1]
    os.makedirs(os.path.join(root, "reports"), exist_ok=True)
    with open(os.path.join(root, "reports", "q3-confidential.txt"), "w") as f:
        f.write("{secret}\\n" * 1000)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        for i in range(64):
            f.write(bytes([i]) * 65536)
    db = sqlite3.connect(os.path.join(root, "bank.db"))
    db.execute("create table accounts (owner text, iban text, balance integer)")
    db.executemany(
        "insert into accounts values (?, ?, ?)",
        [("owner-%d" % i, "{secret}", i * 100) for i in range(2000)],
    )
    db.commit()
    db.execute("update accounts set balance = balance + 1 where owner = 'owner-7'")
    db.commit()
    db.close()
    os.rename(os.path.join(root, "big.bin"), os.path.join(root, "reports", "big.bin"))
    """
).format(secret=SECRET)

CHECK = textwrap.dedent(
    """
    import os, sqlite3, sys
    root = sys.argv[1]
    db = sqlite3.connect(os.path.join(root, "bank.db"))
    assert db.execute("select count(*), sum(balance) from accounts").fetchone() == (2000, 199900001)
    assert db.execute("select balance from accounts where owner='owner-7'").fetchone() == (701,)
    assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    db.close()
    with open(os.path.join(root, "reports", "big.bin"), "rb") as f:
        for i in range(64):
            assert f.read(65536) == bytes([i]) * 65536
    print(sorted(os.listdir(root)))
    """
)


@pytest.fixture
def fuse(require_tool) -> None:
    require_tool("fusermount3", package="fuse3")
    reason = fuse_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE should work in CI: {reason}")
        pytest.skip(f"FUSE unavailable: {reason}")


def _run(script: str, root: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_workload_files_and_sqlite_round_trip(fuse, tmp_path: Path, key: bytes) -> None:
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    mnt.mkdir()
    with mount_encrypted(host, mnt, key, durable=False):
        _run(WORKLOAD, mnt)
        assert _run(CHECK, mnt).strip() == "['bank.db', 'reports']"
    assert not os.path.ismount(mnt)
    assert list(mnt.iterdir()) == []

    needles = [SECRET.encode(), b"q3-confidential", b"bank.db", b"owner-7", b"SQLite format 3"]
    for path in host.iterdir():
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, (path.name, needle)
        assert not any(needle.decode() in path.name for needle in needles)

    with mount_encrypted(host, mnt, key):
        _run(CHECK, mnt)
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        assert ed.read("reports/q3-confidential.txt", 0, len(SECRET)) == SECRET.encode()
        assert ed.read("bank.db", 0, 15) == b"SQLite format 3"


def test_tampering_shows_as_eio(fuse, tmp_path: Path, key: bytes) -> None:
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    mnt.mkdir()
    with EncryptedDirectory.open(host, key, create=True) as ed:
        ed.write_file("victim", b"v" * 200_000)
        data_file = host / f"{ed.stat('victim').file_id}.0"
    with mount_encrypted(host, mnt, key):
        with data_file.open("r+b") as handle:
            handle.seek(70_000)
            handle.write(b"garbage")
        with (mnt / "victim").open("rb") as handle:
            assert handle.read(1000) == b"v" * 1000
            with pytest.raises(OSError) as caught:
                os.pread(handle.fileno(), 65536, 65536)
        assert caught.value.errno == errno.EIO


def test_wrong_key_is_reported_by_mount(fuse, tmp_path: Path, key: bytes) -> None:
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    mnt.mkdir()
    EncryptedDirectory.initialize(host, key)
    with pytest.raises(WrongKeyError):
        mount_encrypted(host, mnt, os.urandom(32))
    assert not os.path.ismount(mnt)


def test_mount_over_the_ciphertext_directory(fuse, tmp_path: Path, key: bytes) -> None:
    """Like Gramine, the app sees plaintext at the very path that holds the ciphertext."""
    volume = tmp_path / "data"
    volume.mkdir()
    with mount_encrypted(volume, volume, key, durable=False):
        (volume / "notes.txt").write_text(SECRET)
        (volume / "sub").mkdir()
        (volume / "sub" / "more.txt").write_text("more")
        assert sorted(p.name for p in volume.iterdir()) == ["notes.txt", "sub"]
    names = sorted(p.name for p in volume.iterdir())
    assert "notes.txt" not in names
    assert "sanctum-encfs.json" in names
    for path in volume.iterdir():
        assert SECRET.encode() not in path.read_bytes()
    with mount_encrypted(volume, volume, key):
        assert (volume / "notes.txt").read_text() == SECRET
        assert (volume / "sub" / "more.txt").read_text() == "more"


def test_server_unmounts_when_the_app_exits(fuse, tmp_path: Path, key: bytes) -> None:
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    mnt.mkdir()
    app = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from sanctum.encfs import mount_encrypted
        host, mnt, key = Path(sys.argv[1]), Path(sys.argv[2]), bytes.fromhex(sys.argv[3])
        mount_encrypted(host, mnt, key)
        (mnt / "written-by-app").write_text("kept")
        # The "app" exits without unmounting, as a crashed or finished workload would.
        """
    )
    subprocess.run(
        [sys.executable, "-c", app, str(host), str(mnt), key.hex()], check=True, timeout=60
    )
    deadline = time.monotonic() + 20
    while os.path.ismount(mnt) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.ismount(mnt)
    while time.monotonic() < deadline:
        try:
            directory = EncryptedDirectory.open(host, key, writable=False)
        except EncfsUsageError:  # The server is still committing and holds the lock.
            time.sleep(0.05)
            continue
        with directory:
            assert directory.read_file("written-by-app") == b"kept"
        break
    else:
        pytest.fail("the FUSE server did not release the directory")
