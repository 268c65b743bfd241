"""Encrypted directories end to end: the real launcher, a real manager, the simulated platform.

The manager (SQLite, served over HTTPS on a loopback port) trusts the simulation PKI that the
host's simulated quoting service signs with. A shielded rootfs lists ``/data`` as an encrypted
directory; ``python -m sanctum.launcher`` verifies its manifest, attests, receives the
directory key sealed to its attested key, mounts ``/data`` with the FUSE file system and execs
a small Python workload that writes files and a SQLite database there. The tests then scan the
host volume for the plaintext, restart the workload to read everything back, and check that a
non-allowlisted build is refused without a key and that under the ``same_build`` policy
another build cannot open the directory.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import uvicorn
from attest_helpers import Kit, simulation_pki, simulation_settings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from conftest import START, Harness, build_harness, free_port, make_settings
from sanctum.converter.keys import debug_signing_key
from sanctum.converter.manifest import (
    CaCertificateSpec,
    CertificateSpec,
    EnclaveManifest,
    EnclaveSpec,
    ManagerSpec,
    sign_manifest,
)
from sanctum.converter.sigstruct import parse_sigstruct
from sanctum.encfs import EncryptedDirectory, fuse_available
from sanctum.encfs.format import HEADER_NAME
from sanctum.launcher.manager_link import ca_pin_of
from sanctum.manager.client import ClientConfig, save_login
from sanctum.manager.models_encfs import EncryptedDirKey
from sanctum.platforms.sim_qe import SimQeServer, start_sim_qe

pytestmark = [pytest.mark.slow]

NOTE = b"TOP-SECRET-NOTE: the vault code is 7-3-1-9"
ROW = "PLAINTEXT-ROW: alice owes bob 1234.56"
BLOB = b"BLOB-MARKER-" * 5000

WORKLOAD = """#!{python}
import json, os, sqlite3, sys
data = os.environ["DATA_DIR"]
mode = sys.argv[1]
if mode == "write":
    with open(os.path.join(data, "note.txt"), "wb") as f:
        f.write({note!r})
    os.makedirs(os.path.join(data, "nested"), exist_ok=True)
    with open(os.path.join(data, "nested", "blob.bin"), "wb") as f:
        f.write({blob!r})
    db = sqlite3.connect(os.path.join(data, "ledger.db"))
    db.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, text TEXT)")
    db.executemany("INSERT INTO entries (text) VALUES (?)", [({row!r},)] * 200)
    db.commit()
    db.close()
    print("WROTE")
else:
    with open(os.path.join(data, "note.txt"), "rb") as f:
        note = f.read().decode()
    with open(os.path.join(data, "nested", "blob.bin"), "rb") as f:
        blob = f.read()
    db = sqlite3.connect(os.path.join(data, "ledger.db"))
    rows = db.execute("SELECT COUNT(*), MIN(text) FROM entries").fetchone()
    db.close()
    print("READ " + json.dumps({{"note": note, "blob": len(blob), "rows": list(rows),
        "names": sorted(os.listdir(data))}}))
"""


@dataclass
class Image:
    """A shielded rootfs whose encrypted directory is ``root/data``."""

    root: Path
    mrenclave: str
    mrsigner: str

    @property
    def data(self) -> Path:
        return self.root / "data"


def build_image(root: Path, *, pin: str, variant: str) -> Image:
    """Write a rootfs with the workload and a signed manifest; ``variant`` changes MRENCLAVE."""
    script = WORKLOAD.format(python=sys.executable, note=NOTE, blob=BLOB, row=ROW).encode()
    files = {
        "/app/work.py": script,
        "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
        "/etc/group": b"root:x:0:\n",
    }
    for path, data in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (root / "app/work.py").chmod(0o755)
    manifest = EnclaveManifest(
        target="simulated",
        app="vault",
        entrypoint=("/app/work.py",),
        args=("read",),
        workdir="/app",
        user="",
        env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(root / "data"), "VARIANT": variant},
        allow_cmdline_args=True,
        host_env_passthrough=(),
        encrypted_dirs=("/data",),
        rw_dirs=("/tmp",),
        enclave=EnclaveSpec(size=1 << 30, threads=8, debug=True, isvprodid=1, isvsvn=2),
        trusted_files={p: hashlib.sha256(d).hexdigest() for p, d in files.items()},
        symlinks={},
        manager=ManagerSpec(url=None, ca_pin=pin),
        certificates=(
            CertificateSpec(
                key_path="/run/tls/key.pem",
                cert_path="/run/tls/cert.pem",
                subject="vault.demo.local",
                alt_names=("DNS:vault.demo.local",),
            ),
        ),
        ca_certificates=(CaCertificateSpec(ca_path="/run/tls/ca.pem", system=False),),
    )
    signed = sign_manifest(manifest, key=debug_signing_key(), date=dt.date(2026, 1, 1))
    (root / "sanctum").mkdir(exist_ok=True)
    (root / "sanctum/manifest.json").write_bytes(signed.manifest_bytes)
    sigstruct = signed.sigstruct.to_bytes()
    (root / "sanctum/manifest.sigstruct").write_bytes(sigstruct)
    return Image(
        root=root,
        mrenclave=signed.mrenclave.hex(),
        mrsigner=parse_sigstruct(sigstruct).mrsigner.hex(),
    )


@dataclass
class Env:
    """The manager, its HTTPS address and TLS pin, the simulated QE."""

    kit: Kit
    url: str
    pin: str
    sim_qe: SimQeServer
    tmp: Path
    ca_file: Path

    @property
    def harness(self) -> Harness:
        return self.kit.harness

    def image(self, variant: str) -> Image:
        """(Re)write the one rootfs as build ``variant``; its ``/data`` volume is kept."""
        return build_image(self.tmp / "root", pin=self.pin, variant=variant)

    def register(self, image: Image, *, approve: bool = True) -> dict[str, Any]:
        response = self.harness.client.post(
            self.harness.url("/builds"),
            json={
                "app": "vault",
                "tee": "sgx",
                "measurement": image.mrenclave,
                "signer": image.mrsigner,
                "isvprodid": 1,
                "isvsvn": 2,
                "debug": True,
                "simulated": True,
            },
            headers=self.harness.headers(),
        )
        assert response.status_code == 201, response.text
        created = response.json()
        if approve:
            self.kit.approve(created["task"]["id"])
        return dict(created["build"])

    def launch(self, image: Image, mode: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SANCTUM_ROOT": str(image.root),
            "SANCTUM_MANAGER_URL": self.url,
            "SANCTUM_PLATFORM": "simulated",
            "SANCTUM_SIM_QE": self.sim_qe.address,
            "SANCTUM_ATTEST_ATTEMPTS": "1",
        }
        result = subprocess.run(
            [sys.executable, "-m", "sanctum.launcher", "--", mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        wait_released(image.data)
        return result


def wait_released(directory: Path, timeout: float = 30.0) -> None:
    """Wait until the FUSE server of ``directory`` unmounted and released the directory."""
    deadline = time.monotonic() + timeout
    while os.path.ismount(directory):
        assert time.monotonic() < deadline, f"{directory} is still mounted"
        time.sleep(0.05)
    header = directory / HEADER_NAME
    if not header.exists():
        return
    with header.open("rb") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                assert time.monotonic() < deadline, f"{directory} is still held by its server"
                time.sleep(0.05)
                continue
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return


def host_bytes(directory: Path) -> list[tuple[str, bytes]]:
    """Every regular file under ``directory`` on the host, with its bytes."""
    return [
        (str(path.relative_to(directory)), path.read_bytes())
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    ]


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a 127.0.0.1 server certificate; return (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "encfs e2e TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    pem = serialization.Encoding.PEM
    files = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files[0].write_bytes(ca.public_bytes(pem))
    files[1].write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    files[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@contextlib.contextmanager
def _serve_https(app: Any, cert_file: Path, key_file: Path) -> Iterator[str]:
    """Serve ``app`` over HTTPS on a free loopback port; yield its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the HTTPS server did not start"
            thread.join(0.01)
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    reason = fuse_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {reason}")
        pytest.skip(f"FUSE unavailable: {reason}")
    simulation_pki(tmp_path)  # Created once, before the manager and the QE both load it.
    harness = build_harness(
        make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'manager.db'}",
            **simulation_settings(tmp_path),
        )
    )
    kit = Kit(harness, simulation_pki(tmp_path))
    ca_file, cert_file, key_file = _tls_files(tmp_path / "https")
    pin = ca_pin_of(x509.load_pem_x509_certificate(ca_file.read_bytes()))
    sim_qe = start_sim_qe(tmp_path / "simulation", port=0, now=lambda: START)
    sim_qe.start_in_thread()
    try:
        with _serve_https(harness.app, cert_file, key_file) as url:
            kit.create_app(
                "vault",
                domains=("vault.demo.local",),
                secrets={},
                policy={"unsafe_allow_simulated": True, "unsafe_allow_debug": True},
                encrypted_dirs=["/data"],
            )
            yield Env(kit=kit, url=url, pin=pin, sim_qe=sim_qe, tmp=tmp_path, ca_file=ca_file)
    finally:
        sim_qe.close()
        harness.client.close()
        harness.runtime.db.dispose()


def _read_result(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("READ "))
    return dict(json.loads(line[5:]))


def test_workload_data_is_ciphertext_on_host_and_reads_back_after_restart(env: Env) -> None:
    image = env.image("one")
    env.register(image)

    first = env.launch(image, "write")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "WROTE" in first.stdout
    assert "encrypted directory /data mounted (FUSE" in first.stderr

    # The host volume holds ciphertext only: no file content, no name, no SQLite header.
    files = host_bytes(image.data)
    assert files, "the workload wrote nothing to the host volume"
    markers = [NOTE, ROW.encode(), b"BLOB-MARKER-", b"SQLite format 3", b"note.txt",
               b"ledger.db", b"nested", b"entries"]  # fmt: skip
    for name, data in files:
        for marker in markers:
            assert marker.decode() not in name
            assert marker not in data, f"{marker!r} found in clear in {name}"

    second = env.launch(image, "read")
    read = _read_result(second)
    assert read == {
        "note": NOTE.decode(),
        "blob": len(BLOB),
        "rows": [200, ROW],
        "names": ["ledger.db", "nested", "note.txt"],
    }
    # The key was created once and released to both attestations of the build.
    with env.harness.runtime.db.transaction() as session:
        keys = session.scalars(select(EncryptedDirKey)).all()
        assert [(k.path, k.version) for k in keys] == [("/data", 1)]
        assert keys[0].scope.startswith("build:")
        assert len(keys[0].sealed_key) > 32
    assert len(env.kit.audit_actions("app.encrypted_dir_key_created")) == 1


def test_non_allowlisted_build_is_refused_and_gets_no_key(env: Env) -> None:
    image = env.image("one")
    env.register(image)
    assert env.launch(image, "write").returncode == 0
    before = host_bytes(image.data)

    # The same data volume under an image whose build is registered but never approved.
    rogue = env.image("rogue")
    env.register(rogue, approve=False)
    result = env.launch(rogue, "read")
    assert result.returncode == 1
    assert "attest.build_not_allowlisted" in result.stderr
    assert "READ" not in result.stdout
    assert not os.path.ismount(image.data)
    assert host_bytes(image.data) == before
    with env.harness.runtime.db.transaction() as session:
        assert len(session.scalars(select(EncryptedDirKey)).all()) == 1


def test_same_build_policy_keeps_other_builds_out(env: Env) -> None:
    old = env.image("one")
    env.register(old)
    assert env.launch(old, "write").returncode == 0

    # An allowlisted upgrade attests fine but gets its own key, which cannot open the data.
    new = env.image("two")
    assert new.mrenclave != old.mrenclave
    env.register(new)
    result = env.launch(new, "read")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "encfs.wrong_key" in result.stderr
    assert "READ" not in result.stdout
    # The old build still reads its data.
    old = env.image("one")
    assert _read_result(env.launch(old, "read"))["rows"] == [200, ROW]


def test_app_builds_policy_lets_an_upgrade_keep_its_data(env: Env) -> None:
    harness = env.harness
    response = harness.client.put(
        harness.url("/apps/vault/encrypted-dirs/policy"),
        json={"key_policy": "app_builds"},
        headers=harness.headers(),
    )
    assert response.status_code == 200, response.text
    old = env.image("one")
    env.register(old)
    assert env.launch(old, "write").returncode == 0

    new = env.image("two")
    env.register(new)
    assert _read_result(env.launch(new, "read"))["note"] == NOTE.decode()

    # The administrator's offline copy of the key opens the same directory (audited).
    exported = harness.client.get(
        harness.url("/apps/vault/encrypted-dirs/data/key"), headers=harness.headers()
    )
    assert exported.status_code == 200, exported.text
    assert exported.headers["cache-control"] == "no-store"
    key = base64.b64decode(exported.json()["key"])
    with contextlib.closing(EncryptedDirectory.open(old.data, key, writable=False)) as directory:
        assert directory.read("/note.txt", 0, 1 << 20) == NOTE
    assert len(env.kit.audit_actions("app.encrypted_dir_key_exported")) == 1

    # The same through the CLI: `sanctum files fetch-key`, then an offline `inspect --verify`.
    config = env.tmp / "config"
    cli_env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    cli_env.pop("SANCTUM_MANAGER_URL", None)
    cli_env.pop("SANCTUM_API_KEY", None)
    with mock.patch.dict(os.environ, {"XDG_CONFIG_HOME": str(config)}):
        save_login(
            ClientConfig(url=env.url, token=harness.admin_token, account_id=harness.account_id),
            env.ca_file,
        )
    key_file = env.tmp / "data.key"
    fetched = subprocess.run(
        [sys.executable, "-m", "sanctum", "files", "fetch-key", "vault", "/data",
         str(key_file), "--json"],
        env=cli_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert json.loads(fetched.stdout)["scope"] == "app"
    assert bytes.fromhex(key_file.read_text().strip()) == key
    inspected = subprocess.run(
        [sys.executable, "-m", "sanctum", "files", "inspect", str(old.data), "-k",
         str(key_file), "--verify", "--json"],
        env=cli_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert inspected.returncode == 0, inspected.stdout + inspected.stderr
    paths = {entry["path"] for entry in json.loads(inspected.stdout)["entries"]}
    assert {"note.txt", "ledger.db", "nested/blob.bin"} <= paths
    assert len(env.kit.audit_actions("app.encrypted_dir_key_exported")) == 2


def _dirs(env: Env) -> dict[str, Any]:
    response = env.harness.client.get(
        env.harness.url("/apps/vault/encrypted-dirs"), headers=env.harness.headers()
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_rollback_of_the_whole_directory_across_restarts_is_refused(env: Env) -> None:
    image = env.image("one")
    build = env.register(image)
    first = env.launch(image, "write")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "/data: mounted reported, rollback floor" in first.stderr
    # The epoch reporter follows the directory to its final commit after the app exited: the
    # floor becomes the epoch of the copy now on the host (not only the epoch at the start).
    exported = env.harness.client.get(
        env.harness.url(f"/apps/vault/encrypted-dirs/data/key?build={build['id']}"),
        headers=env.harness.headers(),
    )
    key = base64.b64decode(exported.json()["key"])
    with contextlib.closing(EncryptedDirectory.open(image.data, key, writable=False)) as directory:
        final = directory.epoch
    deadline = time.monotonic() + 30
    while _dirs(env)["keys"][0]["min_epoch"] != final:
        assert time.monotonic() < deadline, (_dirs(env), final)
        time.sleep(0.1)
    floor = final
    snapshot = env.tmp / "snapshot"
    shutil.copytree(image.data, snapshot)

    # A later start advances the directory (and the floor) past the snapshot.
    assert _read_result(env.launch(image, "read"))["rows"] == [200, ROW]
    assert _dirs(env)["keys"][0]["min_epoch"] > floor

    # The host restores the old, perfectly authentic copy: the next start refuses it.
    shutil.rmtree(image.data)
    shutil.copytree(snapshot, image.data)
    refused = env.launch(image, "read")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "encfs.rollback" in refused.stderr
    assert "READ" not in refused.stdout
    assert not os.path.ismount(image.data)

    # Emptying the volume is a rollback too (the manager knows the directory existed).
    shutil.rmtree(image.data)
    image.data.mkdir()
    emptied = env.launch(image, "read")
    assert emptied.returncode == 1
    assert "encfs.rollback" in emptied.stderr
    reports = env.kit.audit_actions("app.encrypted_dir_epoch_reported")
    assert len(reports) >= 4  # At each start, and at each exit.


def test_a_manager_rotation_is_finished_by_the_next_start_and_retires_the_old_key(
    env: Env,
) -> None:
    harness = env.harness
    assert (
        harness.client.put(
            harness.url("/apps/vault/encrypted-dirs/policy"),
            json={"key_policy": "app_builds"},
            headers=harness.headers(),
        ).status_code
        == 200
    )
    image = env.image("one")
    env.register(image)
    assert env.launch(image, "write").returncode == 0
    rotated = harness.client.post(
        harness.url("/apps/vault/encrypted-dirs/data/rotate"), headers=harness.headers()
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["version"] == 2

    second = env.launch(image, "read")
    assert _read_result(second)["note"] == NOTE.decode()
    assert "re-encrypted from key version 1 to 2" in second.stderr
    assert "key versions [1] retired" in second.stderr
    keys = {k["version"]: k for k in _dirs(env)["keys"]}
    assert keys[1]["retired_at"] is not None
    assert keys[2]["retired_at"] is None
    assert keys[2]["min_epoch"] > 0
    # Only the new key opens the host copy now; the next start uses it directly.
    exported = harness.client.get(
        harness.url("/apps/vault/encrypted-dirs/data/key"), headers=harness.headers()
    )
    assert exported.json()["version"] == 2
    key = base64.b64decode(exported.json()["key"])
    with contextlib.closing(EncryptedDirectory.open(image.data, key, writable=False)) as directory:
        assert directory.read("/note.txt", 0, 1 << 20) == NOTE
    third = env.launch(image, "read")
    assert _read_result(third)["rows"] == [200, ROW]
    assert "re-encrypted" not in third.stderr
    assert len(env.kit.audit_actions("app.encrypted_dir_key_rotated")) == 1
    assert len(env.kit.audit_actions("app.encrypted_dir_key_retired")) == 1
