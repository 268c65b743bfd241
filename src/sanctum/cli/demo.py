"""``sanctum demo``: the whole product in one command (``make demo``).

Steps (each printed with its timing; any failure is reported with its code and stops the run):

1. start the Enclave Manager with embedded defaults under ``./.sanctum/demo/`` (SQLite, its own
   TLS CA, HTTPS on 127.0.0.1, the simulated platform trusted for the ``demo`` account only) and
   the host's simulated quoting service (ADR 0100); print the URL and the one-time credentials;
2. build a small sample backend image locally from Debian packages already on the machine: a toy
   account-balance HTTPS API served by ``openssl s_server -WWW`` (the ``openssl`` binary and its
   shared libraries copied from the host) with ``busybox`` as its shell; no registry downloads;
   push it to a loopback ``docker-registry`` it starts (OCI layouts when that is not installed);
3. create the app (domain ``bank.demo.local``, secret ``DB_PASSWORD``, certificate paths) and
   approve its domain task as a second administrator (four-eyes); convert the image with the
   manager's conversion job (``POST .../apps/{id}/convert``, a progress bar fed by
   ``GET .../jobs/{id}``): the manager signs with the account's key, ships the static launcher,
   fills in its URL and CA pin, and registers the build as ``pending`` with its allowlisting
   task, which the second member approves;
4. run the shielded image with podman (host network, the quoting service's socket mounted), or
   without podman with bwrap on the unpacked image (``--runner``): the launcher attests,
   receives its certificate and secret, and execs the server;
5. call the service with the account CA as the only trust anchor and show the verified
   certificate, its attested claims, the attestation result token and the audit entries; run the
   memory inspection on the server process and report the honest simulated result;
6. show that a tampered image (one file changed) and a non-allowlisted build are refused, with
   their reason codes;
7. leave everything running until Ctrl-C (``--no-wait``: stop everything and exit 0 only if every
   step succeeded).

State is reset at every run (``.sanctum/demo`` is recreated), so running it twice works. Design
notes: ``docs/adr/0102-end-to-end-demo.md``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click
import httpx
from cryptography import x509
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from sanctum.cli._base import SanctumCommand
from sanctum.errors import SanctumError, UnavailableError, UsageError

__all__ = ["command", "run_demo"]

_ACCOUNT: Final = "demo"
_ADMIN: Final = "admin@demo.local"
_APPROVER: Final = "approver@demo.local"
_DOMAIN: Final = "bank.demo.local"
_CONTAINERS_CONF: Final = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "host"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""
_BALANCE: Final = (
    b'{"account": "ACME-0042", "owner": "Ada", "balance": "1234.56", "currency": "EUR"}\n'
)
_APP_SCRIPT: Final = (
    "cd /srv && exec /usr/bin/openssl s_server -quiet -accept 127.0.0.1:$BANK_PORT "
    "-cert /run/tls/cert.pem -cert_chain /run/tls/chain.pem -key /run/tls/key.pem -WWW"
)


class DemoError(UnavailableError):
    """A demo step failed (the message says which and why)."""

    default_code = "demo.step_failed"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(pem: bytes) -> str:
    from sanctum.launcher.manager_link import ca_pin_of  # noqa: PLC0415

    return ca_pin_of(x509.load_pem_x509_certificate(pem))


@dataclass
class _Step:
    number: int
    title: str
    ok: bool = False
    seconds: float = 0.0
    error: str = ""


@dataclass
class Demo:
    """State of one demo run."""

    root: Path
    console: Console
    launcher: Path
    steps: list[_Step] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cleanups: list[Callable[[], object]] = field(default_factory=list)
    url: str = ""
    account_id: str = ""
    admin_token: str = ""
    approver_token: str = ""
    app_id: str = ""
    manager_ca: Path = field(default_factory=Path)
    signing_key: Path = field(default_factory=Path)
    image_ref: str = ""
    shielded_ref: str = ""
    mrenclave: str = ""
    db_password: str = field(default_factory=lambda: "demo-" + secrets.token_hex(8))
    bank_port: int = 0
    container: str = ""
    sim_qe_socket: Path = field(default_factory=Path)
    podman: list[str] = field(default_factory=list)
    podman_env: dict[str, str] = field(default_factory=dict)
    images_link: Path = field(default_factory=Path)
    registry: str = ""
    runner: str = "podman"
    bwrap: str = ""
    rootfs: dict[str, Path] = field(default_factory=dict)
    workload: subprocess.Popen[bytes] | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    # Output --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[_Step]:
        """Run one numbered step; record and print its outcome."""
        record = _Step(len(self.steps) + 1, title)
        self.steps.append(record)
        self.console.rule(f"[bold cyan]{record.number}. {title}")
        started = time.perf_counter()
        try:
            yield record
        except SanctumError as error:
            record.error = f"{error.message} [{error.code}]"
            self.console.print(f"[bold red]✗ {title}:[/] {record.error}")
            if error.hint:
                self.console.print(f"[yellow]hint:[/] {error.hint}")
            raise
        record.ok = True
        record.seconds = time.perf_counter() - started
        self.console.print(f"[green]✓[/] {title} [dim]({record.seconds:.1f} s)[/]")

    def say(self, text: str) -> None:
        """Print an indented detail line."""
        self.console.print(f"  {text}")

    # HTTP ----------------------------------------------------------------------------------

    def http(self) -> httpx.Client:
        """Return a client of the manager trusting only its TLS CA."""
        return httpx.Client(base_url=self.url, verify=str(self.manager_ca), timeout=30)

    def api(self, method: str, path: str, *, token: str | None = None, body: Any = None) -> Any:
        """Call the manager API and return the JSON answer.

        Raises:
            DemoError: The manager answered with an error.
        """
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        with self.http() as client:
            response = client.request(method, path, json=body, headers=headers)
        if response.status_code >= 400:
            raise DemoError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def account(self, suffix: str) -> str:
        """Return the account-scoped API path for ``suffix``."""
        return f"/v1/accounts/{self.account_id}{suffix}"

    # Lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything the demo started: processes first (newest first), then clean up.

        Processes go first so that nothing (podman in particular) writes into a directory
        after it has been removed.
        """
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        self.processes.clear()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self.cleanups.clear()


# Step 1: manager and quoting service -------------------------------------------------------


def _start_manager(demo: Demo) -> None:
    data = demo.root / "manager"
    port = _free_port()
    password = secrets.token_urlsafe(12)
    env = dict(
        os.environ,
        SANCTUM_MANAGER_PROFILE="dev",
        SANCTUM_MANAGER_BOOTSTRAP_PASSWORD=password,
        SANCTUM_MANAGER_BOOTSTRAP_ACCOUNT_NAME=_ACCOUNT,
        SANCTUM_MANAGER_BOOTSTRAP_ADMIN_EMAIL=_ADMIN,
        SANCTUM_MANAGER_SIMULATION_ENABLED="true",
        SANCTUM_MANAGER_SIMULATION_ACCOUNTS=json.dumps([_ACCOUNT]),
        SANCTUM_MANAGER_SIMULATION_PKI_DIR=str(demo.root / "simulation"),
        SANCTUM_MANAGER_UNSAFE_FAST_PASSWORD_HASHING="true",  # noqa: S106 (a switch, not a secret)
        SANCTUM_MANAGER_PUBLIC_URL=f"https://127.0.0.1:{port}",
        # Conversion jobs ship the static launcher; the dev profile's registry allowlist
        # admits the loopback registry of step 2 (and nothing else).
        SANCTUM_MANAGER_LAUNCHER_PATH=str(demo.launcher.resolve()),
    )
    log = (demo.root / "manager.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "sanctum", "manager", "serve", "--data-dir", str(data),
         "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    demo.processes.append(process)
    demo.url = f"https://127.0.0.1:{port}"
    demo.manager_ca = data / "tls" / "ca.pem"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the manager exited; see {demo.root / 'manager.log'}")
        if demo.manager_ca.is_file():
            with contextlib.suppress(httpx.HTTPError, ssl.SSLError, OSError), demo.http() as c:
                if c.get("/healthz").status_code == 200:
                    break
        time.sleep(0.2)
    else:
        raise DemoError("the manager did not become ready within 60 s")
    with demo.http() as client:
        token = client.post("/v1/auth/token", json={"email": _ADMIN, "password": password})
        token.raise_for_status()
        demo.admin_token = token.json()["access_token"]
        accounts = client.get(
            "/v1/accounts", headers={"Authorization": f"Bearer {demo.admin_token}"}
        ).json()
    demo.account_id = next(a["id"] for a in accounts if a["name"] == _ACCOUNT)
    demo.say(f"manager: [bold]{demo.url}[/]  (API docs: {demo.url}/docs)")
    demo.say(f"administrator: [bold]{_ADMIN}[/]  password: [bold]{password}[/] (one-time)")
    demo.say(f"TLS CA: {demo.manager_ca}  pin {_pin(demo.manager_ca.read_bytes())[:23]}…")
    # A second administrator approves tasks (the requester may not approve their own).
    invited = demo.api(
        "POST",
        demo.account("/users"),
        body={"email": _APPROVER, "name": "Approver", "role": "editor"},
    )
    approver_password = secrets.token_urlsafe(16)
    with demo.http() as client:
        client.post(
            "/v1/invitations/accept",
            json={"token": invited["invitation_token"], "password": approver_password},
        ).raise_for_status()
        answer = client.post(
            "/v1/auth/token", json={"email": _APPROVER, "password": approver_password}
        )
        answer.raise_for_status()
        demo.approver_token = answer.json()["access_token"]
    demo.say(f"second member {_APPROVER} (editor) approves tasks (four-eyes)")


def _start_quoting_service(demo: Demo) -> None:
    from sanctum.platforms.sim_qe import start_sim_qe  # noqa: PLC0415

    short = Path(tempfile.mkdtemp(prefix="sanctum-demo-", dir="/tmp"))
    demo.cleanups.append(lambda: shutil.rmtree(short, ignore_errors=True))
    demo.sim_qe_socket = short / "qe.sock"
    # The platform side owns the simulation PKI (created here, before the manager starts);
    # the manager reads only its root certificate.
    server = start_sim_qe(demo.root / "simulation", socket_path=demo.sim_qe_socket)
    server.start_in_thread()
    demo.cleanups.append(server.close)
    demo.say(f"simulated quoting service (SIMULATED, host side): unix:{demo.sim_qe_socket}")


# Step 2: the sample image ------------------------------------------------------------------


def _library_closure(binary: Path) -> dict[str, Path]:
    """Return the shared libraries ``binary`` loads (ldd), by the path the loader uses."""
    output = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found: dict[str, Path] = {}
    for line in output.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found[parts[2]] = Path(parts[2]).resolve()
        elif parts and parts[0].startswith("/"):
            found[parts[0]] = Path(parts[0]).resolve()
    return found


def _write_layout(layout: Path, files: dict[str, tuple[bytes, int]], config: dict[str, Any]) -> str:
    """Write a one-layer OCI image layout; return its reference."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()
        for path, (data, mode) in sorted(files.items()):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                directory = "/".join(parts[:i])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    layer = buffer.getvalue()
    layer_digest = blob(layer)
    image_config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "sanctum demo: openssl + busybox from the host's packages"}],
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blob(image_config), "size": len(image_config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    }).encode()  # fmt: skip
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": blob(manifest), "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    }))  # fmt: skip
    return f"oci:{layout}:v1"


def _start_registry(demo: Demo) -> None:
    """Start Debian's docker-registry on a loopback port (skipped with a note when missing)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        demo.say("[yellow]docker-registry is not installed: images stay in OCI layouts[/]")
        return
    port = _free_port()
    config = demo.root / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {demo.root / 'registry'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)],
        env=dict(os.environ, REGISTRY_HTTP_SECRET=secrets.token_hex(16)),
        stdout=subprocess.DEVNULL, stderr=(demo.root / "registry.log").open("wb"),
    )  # fmt: skip
    demo.processes.append(process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                demo.registry = f"127.0.0.1:{port}"
                demo.say(f"loopback registry: http://{demo.registry}")
                return
        time.sleep(0.1)
    raise DemoError("the loopback registry did not start within 20 s")


def _image(demo: Demo, name: str) -> str:
    """Return where the shielded image ``name`` goes (registry, else an OCI layout)."""
    if demo.registry:
        return f"docker://{demo.registry}/bank:{name}"
    return f"oci:{demo.root / 'images' / ('bank-' + name)}:v1"


def _build_sample(demo: Demo) -> None:
    openssl, busybox = Path("/usr/bin/openssl"), Path("/bin/busybox")
    for tool, package in ((openssl, "openssl"), (busybox, "busybox-static")):
        if not tool.is_file():
            raise DemoError(f"{tool} is missing: apt-get install -y {package}")
    files: dict[str, tuple[bytes, int]] = {
        "/usr/bin/openssl": (openssl.read_bytes(), 0o755),
        "/bin/busybox": (busybox.read_bytes(), 0o755),
        "/srv/balance.json": (_BALANCE, 0o644),
        "/etc/passwd": (b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
    }
    for loader_path, real in _library_closure(openssl).items():
        files[loader_path] = (real.read_bytes(), 0o755)
    demo.image_ref = _write_layout(
        demo.root / "images" / "bank",
        files,
        {
            "Entrypoint": ["/bin/busybox", "sh", "-c"],
            "Cmd": [_APP_SCRIPT],
            "Env": ["PATH=/usr/bin:/bin"],
            "WorkingDir": "/srv",
        },
    )
    size = sum(len(data) for data, _ in files.values()) / 1e6
    demo.say(f"sample backend image: {len(files)} files, {size:.1f} MB")
    _start_registry(demo)
    if demo.registry:
        from sanctum.converter.oci import open_sink, open_source  # noqa: PLC0415
        from sanctum.converter.oci.copy import copy_image  # noqa: PLC0415

        pushed = f"docker://{demo.registry}/bank:v1"
        with open_source(demo.image_ref) as source, open_sink(pushed) as sink:
            copy_image(source, sink)
        demo.image_ref = pushed
    demo.say(f"pushed to {demo.image_ref}")
    demo.say("app: openssl s_server -WWW serving /srv/balance.json over HTTPS (busybox shell)")


# Step 3: app, conversion, build -------------------------------------------------------------


def _approve_all(demo: Demo, tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        demo.api("POST", demo.account(f"/tasks/{task['id']}/approve"), token=demo.approver_token)
        demo.say(f"approved task {task.get('type', '')} {task['id'][:8]}…")


def _create_app(demo: Demo) -> None:
    app = demo.api(
        "POST",
        demo.account("/apps"),
        body={
            "name": "bank",
            "description": "Toy account-balance API (sanctum demo)",
            "domains": [_DOMAIN],
            "secrets": {"DB_PASSWORD": {"value": demo.db_password, "delivery": "env"}},
            "policy": {"unsafe_allow_simulated": True},
        },
    )
    demo.app_id = app["id"]
    demo.say(f"app [bold]bank[/] ({demo.app_id[:8]}…): domain {_DOMAIN}, secret DB_PASSWORD")
    _approve_all(demo, app.get("tasks", []))


def _conversion_fields(extra_env: dict[str, str] | None) -> dict[str, Any]:
    """Return the conversion options of the demo app (Data Shield's field names)."""
    return {
        "target": "simulated",
        "hostEnvPassthrough": ["BANK_PORT"],
        "manifestEnv": extra_env or {},
        "certificates": [{
            "keyPath": "/run/tls/key.pem", "certPath": "/run/tls/cert.pem",
            "chainPath": "/run/tls/chain.pem", "subject": _DOMAIN, "altNames": [_DOMAIN],
        }],
        "caCertificates": [{"caPath": "/run/tls/ca.pem"}],
    }  # fmt: skip


def _follow_job(demo: Demo, job: dict[str, Any]) -> dict[str, Any]:
    """Follow a conversion job (``GET .../jobs/{id}``) with a progress bar; return its result.

    Raises:
        DemoError: The job failed (with its code) or did not end within five minutes.
    """
    path = demo.account(f"/jobs/{job['id']}")
    with Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=demo.console,
    ) as bar:
        task = bar.add_task("queued", total=None)
        deadline = time.monotonic() + 300
        while job["status"] in {"queued", "running"}:
            if time.monotonic() > deadline:
                raise DemoError(f"conversion job {job['id']} did not end within 5 minutes")
            time.sleep(0.2)
            job = demo.api("GET", path)
            progress = job.get("progress") or {}
            layers = (progress.get("layers") or {}).values()
            total = sum(int(layer.get("size", 0)) for layer in layers) or None
            done = sum(int(layer.get("done", 0)) for layer in layers)
            step = str(progress.get("step") or job["status"])
            bar.update(task, description=step[:48], total=total, completed=done)
        if job["status"] == "succeeded":
            bar.update(task, description="done", completed=bar.tasks[0].total or 0)
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise DemoError(
            f"conversion job {job['id']} failed: {error.get('message')} [{error.get('code')}]"
        )
    result: dict[str, Any] = dict(job["result"]) | {"jobId": job["id"]}
    return result


def _convert(demo: Demo, *, output: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Convert the sample image for the app: a manager job (registry), else locally.

    With the loopback registry the manager converts, as the product intends: ``POST
    .../apps/{id}/convert`` queues a job that signs with the account's key, fills in the
    manager's URL and CA pin, registers the build as ``pending`` and opens its allowlisting
    task. Without a registry (OCI layouts on this machine) the conversion runs here and the
    build is registered with ``POST .../builds``.
    """
    if demo.registry:
        job = demo.api(
            "POST",
            demo.account(f"/apps/{demo.app_id}/convert"),
            body={
                "inputImageName": demo.image_ref.removeprefix("docker://"),
                "outputImageName": output.removeprefix("docker://"),
                **_conversion_fields(extra_env),
            },
        )
        demo.say(f"conversion job {job['id'][:8]}… queued: POST /v1/accounts/…/apps/bank/convert")
        return _follow_job(demo, job)
    return _convert_locally(demo, output=output, extra_env=extra_env)


def _convert_locally(
    demo: Demo, *, output: str, extra_env: dict[str, str] | None
) -> dict[str, Any]:
    from sanctum.converter.convert import ConvertRequest, PemSigningKey, convert  # noqa: PLC0415
    from sanctum.converter.keys import generate_signing_key, signing_key_pem  # noqa: PLC0415
    from sanctum.converter.oci import open_sink, open_source  # noqa: PLC0415

    if not demo.signing_key.is_file():
        demo.signing_key = demo.root / "signing-key.pem"
        demo.signing_key.write_bytes(signing_key_pem(generate_signing_key()))
        demo.signing_key.chmod(0o600)
    request = ConvertRequest.model_validate({
        "inputImageName": demo.image_ref,
        "outputImageName": output,
        "app": "bank",
        "managerUrl": demo.url,
        "managerCaPin": _pin(demo.manager_ca.read_bytes()),
        "signingKey": PemSigningKey(pem=SecretStr(demo.signing_key.read_text())),
        **_conversion_fields(extra_env),
    })  # fmt: skip
    with open_source(request.input_image_name) as source, open_sink(output) as sink:
        response = convert(
            request, source=source, sink=sink, launcher_asset=demo.launcher.read_bytes(),
            gramine_tools=None,
        )  # fmt: skip
    result = dict(response.model_dump(by_alias=True, mode="json"))
    created = demo.api(
        "POST",
        demo.account("/builds"),
        body={
            "app": "bank", "tee": "sgx", "measurement": result["mrenclave"],
            "signer": result["mrsigner"], "isvprodid": result["isvprodid"],
            "isvsvn": result["isvsvn"], "simulated": True, "image_name": output,
        },
    )  # fmt: skip
    result |= {
        "buildId": created["build"]["id"],
        "buildStatus": created["build"]["status"],
        "taskId": (created.get("task") or {}).get("id"),
        "managerUrl": demo.url,
        "managerCaPin": request.manager_ca_pin,
    }
    return result


def _convert_and_register(demo: Demo) -> None:
    demo.shielded_ref = _image(demo, "shielded")
    if not demo.registry:
        demo.say("[yellow]no registry: converting here and registering with POST /builds[/]")
    started = time.perf_counter()
    result = _convert(demo, output=demo.shielded_ref)
    demo.mrenclave = result["mrenclave"]
    demo.say(
        f"converted in {time.perf_counter() - started:.1f} s: mrenclave [bold]{demo.mrenclave}[/]"
    )
    demo.say(f"mrsigner {result['mrsigner']}  target {result.get('target', 'simulated')}")
    demo.say(
        f"manifest pins the manager: {result.get('managerUrl')}  CA "
        f"{str(result.get('managerCaPin'))[:23]}…"
    )
    demo.say(
        f"build {result['buildId'][:8]}… registered, status [bold]{result['buildStatus']}[/] "
        "until its allowlisting task is approved"
    )
    demo.summary["conversion"] = {
        "via": "manager-job" if "jobId" in result else "local",
        "job_id": result.get("jobId"),
        "registered_status": result["buildStatus"],
        "manager_url": result.get("managerUrl"),
        "manager_ca_pin": result.get("managerCaPin"),
    }
    task = demo.api("GET", demo.account(f"/tasks/{result['taskId']}"))
    _approve_all(demo, [task])
    build = demo.api("GET", demo.account(f"/builds/{result['buildId']}"))
    demo.say(f"build {build['id'][:8]}… is now [bold green]{build['status']}[/]")


# Step 4: run ----------------------------------------------------------------------------------


def _podman(demo: Demo) -> None:
    podman = shutil.which("podman")
    if podman is None:
        raise DemoError(
            "podman is not installed; the demo runs the shielded image with podman",
            hint="apt-get install -y podman runc (see requirements/apt.txt)",
        )
    conf = demo.root / "containers.conf"
    conf.write_text(_CONTAINERS_CONF)
    runroot = Path(tempfile.mkdtemp(prefix="sanctum-demo-run-", dir="/tmp"))
    demo.cleanups.append(lambda: shutil.rmtree(runroot, ignore_errors=True))
    demo.podman = [podman, "--root", str(demo.root / "podman"), "--runroot", str(runroot),
                   "--storage-driver", "vfs"]  # fmt: skip
    demo.podman_env = dict(os.environ, CONTAINERS_CONF=str(conf))
    # podman derives an image name from an oci: path and refuses components such as ".sanctum":
    # give it a clean path to the same layouts.
    (runroot / "images").symlink_to(demo.root / "images")
    demo.images_link = runroot / "images"


def _podman_ref(demo: Demo, ref: str) -> str:
    if ref.startswith("docker://"):
        return ref.removeprefix("docker://")
    return ref.replace(str(demo.root / "images"), str(demo.images_link), 1)


def _unpack(demo: Demo, ref: str) -> Path:
    """Unpack image ``ref`` into a rootfs for bwrap (cached per reference)."""
    from sanctum.converter.oci import open_source  # noqa: PLC0415

    if ref in demo.rootfs:
        return demo.rootfs[ref]
    root = demo.root / "rootfs" / hashlib.sha256(ref.encode()).hexdigest()[:12]
    root.mkdir(parents=True)
    with open_source(ref) as source:
        for layer in source.manifest().layers:
            data = source.open_blob(layer).readall()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(root, filter="tar")
    (root / "run" / "sanctum").mkdir(parents=True, exist_ok=True)
    (root / "run" / "sanctum" / "qe.sock").touch()
    demo.rootfs[ref] = root
    return root


def _workload_command(
    demo: Demo,
    ref: str,
    *,
    env: dict[str, str],
    binds: list[tuple[Path, str]],
    name: str | None = None,
) -> list[str]:
    """Return the command that runs image ``ref`` with the launcher as entrypoint."""
    env = {
        "SANCTUM_PLATFORM": "simulated",
        "SANCTUM_SIM_QE": "unix:/run/sanctum/qe.sock",
        "SANCTUM_MANAGER_URL": demo.url,
        **env,
    }
    if demo.runner == "podman":
        command = [
            *demo.podman, "run", "--rm", "--tls-verify=false",
            "--tmpfs", "/tmp:rw,exec,mode=1777",  # noqa: S108
            "-v", f"{demo.sim_qe_socket}:/run/sanctum/qe.sock",
        ]  # fmt: skip
        for key, value in env.items():
            command += ["-e", f"{key}={value}"]
        for host, target in binds:
            command += ["-v", f"{host}:{target}"]
        if name:
            command += ["--name", name]
        return [*command, _podman_ref(demo, ref)]
    root = _unpack(demo, ref)
    command = [
        demo.bwrap, "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp",  # noqa: S108 (a private tmpfs inside the sandbox)
        "--unshare-all", "--share-net", "--die-with-parent", "--clearenv",
        "--bind", str(demo.sim_qe_socket), "/run/sanctum/qe.sock",
    ]  # fmt: skip
    for key, value in env.items():
        command += ["--setenv", key, value]
    for host, target in binds:
        if not (root / target.lstrip("/")).exists():
            (root / target.lstrip("/")).mkdir(parents=True)
        command += ["--bind", str(host), target]
    return [*command, "/sanctum/launcher"]


def _prepare_runner(demo: Demo) -> None:
    if demo.runner == "podman":
        _podman(demo)
        demo.say("runner: podman (scratch-like image, host network, quoting socket mounted)")
        return
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise DemoError(
            "neither podman nor bwrap is installed",
            hint="apt-get install -y podman runc bubblewrap",
        )
    demo.bwrap = bwrap
    demo.say("runner: bwrap on the unpacked image (podman not used)")


def _start_workload(demo: Demo) -> None:
    _prepare_runner(demo)
    demo.bank_port = _free_port()
    demo.container = f"sanctum-demo-bank-{secrets.token_hex(3)}"
    out = demo.root / "out"
    out.mkdir(exist_ok=True)
    log = (demo.root / "workload.log").open("wb")
    process = subprocess.Popen(
        _workload_command(
            demo,
            demo.shielded_ref,
            env={
                "BANK_PORT": str(demo.bank_port),
                "SANCTUM_TOKEN_FILE": "/run/sanctum-out/token.jwt",
            },
            binds=[(out, "/run/sanctum-out")],
            name=demo.container,
        ),
        env=demo.podman_env or None, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    demo.processes.append(process)
    demo.workload = process
    if demo.runner == "podman":
        demo.cleanups.append(
            lambda: subprocess.run(
                [*demo.podman, "rm", "-f", "-t", "2", demo.container],
                env=demo.podman_env,
                capture_output=True,
                timeout=60,
                check=False,
            )
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (demo.root / "workload.log").read_text(errors="replace")[-2000:]
            raise DemoError(f"the workload exited ({process.returncode}):\n{tail}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", demo.bank_port), timeout=0.5),
        ):
            break
        time.sleep(0.3)
    else:
        raise DemoError("the workload did not start serving within 90 s")
    for line in (demo.root / "workload.log").read_text(errors="replace").splitlines():
        if line.startswith("sanctum-launcher:"):
            demo.say(f"[dim]{line}[/]")


# Step 5: call it, show evidence ----------------------------------------------------------------


def _call_service(demo: Demo) -> None:
    ca = demo.api("GET", demo.account("/ca"))
    anchor = ca["root"]
    context = ssl.create_default_context(cadata=anchor)
    with socket.create_connection(("127.0.0.1", demo.bank_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=_DOMAIN) as tls:  # fmt: skip
        tls.sendall(b"GET /balance.json HTTP/1.0\r\nHost: bank.demo.local\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        leaf_der = tls.getpeercert(binary_form=True)
    body = answer.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
    demo.say(f"GET https://{_DOMAIN}/balance.json (account CA as the only trust anchor) →")
    demo.say(f"  [bold green]{body}[/]")
    if leaf_der is None:
        raise DemoError("the service presented no certificate")
    leaf = x509.load_der_x509_certificate(leaf_der)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    root = x509.load_pem_x509_certificate(anchor.encode())
    names = sans.get_values_for_type(x509.DNSName)
    demo.say(f"verified chain: {leaf.subject.rfc4514_string()}  SAN {names}")
    demo.say(f"  issued by {leaf.issuer.rfc4514_string()}")
    demo.say(f"  root (the trust anchor) {root.subject.rfc4514_string()}")
    try:
        from sanctum.manager.ca.extension import read_attestation_extension  # noqa: PLC0415

        claims = read_attestation_extension(leaf)
        demo.say("attested identity in the certificate (Sanctum extension):")
        demo.say(f"  mrenclave {claims.measurement.hex()}  mrsigner {claims.signer.hex()[:16]}…")
        demo.say(
            f"  tee {claims.tee}  isvprodid {claims.isvprodid}  isvsvn {claims.isvsvn}  "
            f"tcb {claims.tcb_status}  debug {claims.debug}  simulated {claims.simulated}"
        )
        demo.summary["claims"] = {"simulated": claims.simulated, "tcb": claims.tcb_status}
    except (ImportError, SanctumError, ValueError) as error:
        demo.say(f"[yellow]attestation extension not readable: {error}[/]")
    token_file = demo.root / "out" / "token.jwt"
    if token_file.is_file():
        payload = token_file.read_text().split(".")[1]
        claims_doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        demo.say("attestation result token (EAR JWT, keys at /.well-known/jwks.json):")
        demo.say(f"  iss {claims_doc.get('iss')}  status [bold]{claims_doc.get('ear_status')}[/]")
        for name, submod in (claims_doc.get("submods") or {}).items():
            verifier = submod.get("ear_verifier_claims", {})
            vector = submod.get("ear_trustworthiness_vector")
            demo.say(
                f"  {name}: tcb {verifier.get('tcb_status')}, simulated "
                f"{verifier.get('simulated')}, trust vector {vector}"
            )
        demo.say("  [dim](simulated evidence is never 'affirming': nothing protects it)[/]")
        demo.summary["token_status"] = claims_doc.get("ear_status")
    entries = demo.api("GET", demo.account("/audit?limit=8"))["entries"]
    demo.say("latest audit entries:")
    for entry in entries[:8]:
        demo.say(f"  {entry['time'][11:19]}  {entry['action']:<28} {entry['outcome']}")
    demo.summary["body"] = body


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def _inspect_memory(demo: Demo) -> None:
    from sanctum.cli.inspect import read_process, verdict  # noqa: PLC0415

    top = demo.workload.pid if demo.workload is not None else 0
    if demo.runner == "podman":
        result = subprocess.run(
            [*demo.podman, "inspect", "--format", "{{.State.Pid}}", demo.container],
            env=demo.podman_env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0 or not result.stdout.strip().isdigit():
            raise DemoError(f"cannot find the workload's process: {result.stderr.strip()}")
        top = int(result.stdout.strip())
    server = [
        pid for pid in _descendants(top)
        if Path(f"/proc/{pid}/comm").read_text().strip() == "openssl"
    ]  # fmt: skip
    if not server:
        raise DemoError("the server process (openssl) was not found in the container")
    scan = read_process(server[0], demo.db_password)
    head, explanation = verdict(scan)
    demo.say(f"sanctum inspect memory --pid {server[0]} --find <DB_PASSWORD value>")
    demo.say(f"  [bold {'red' if scan.found else 'green'}]{head}[/]")
    demo.say(f"  [yellow]{explanation}[/]")
    demo.summary["memory_found"] = scan.found
    if not scan.found:
        raise DemoError("the secret should be visible on the simulated platform but was not")


# Step 6: refusals ------------------------------------------------------------------------------


def _expect_refusal(
    demo: Demo, label: str, ref: str, binds: list[tuple[Path, str]], code: str
) -> None:
    result = subprocess.run(
        _workload_command(demo, ref, env={"BANK_PORT": "1"}, binds=binds),
        env=demo.podman_env or None, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    refused = [line for line in result.stderr.splitlines() if "refused:" in line]
    if result.returncode == 0 or f"[{code}]" not in result.stderr:
        raise DemoError(f"{label} was not refused with {code}: {result.stderr[-1500:]}")
    # The reason ends in "[code]", which rich would read as markup: escape it so it shows.
    reason = escape(refused[0].split("refused:", 1)[1].strip())
    demo.say(f"{label}: [bold red]refused[/] → {reason}")
    demo.summary.setdefault("refusals", []).append(code)


def _refusals(demo: Demo) -> None:
    tampered = demo.root / "tampered-balance.json"
    tampered.write_bytes(_BALANCE.replace(b"1234.56", b"9999999.00"))
    _expect_refusal(
        demo,
        "tampered image (/srv/balance.json changed)",
        demo.shielded_ref,
        [(tampered, "/srv/balance.json")],
        "launcher.trusted_file_mismatch",
    )
    other = _image(demo, "unapproved")
    response = _convert(demo, output=other, extra_env={"FEATURE": "unreviewed"})
    demo.say(
        f"rebuilt with one more variable: mrenclave {response['mrenclave'][:16]}…, build "
        f"{response['buildStatus']} (its task is left unapproved)"
    )
    _expect_refusal(demo, "non-allowlisted build", other, [], "attest.build_not_allowlisted")


# Driver ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt while waiting, so cleanup always runs."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(
    workdir: Path,
    *,
    launcher: Path,
    no_wait: bool,
    runner: str = "auto",
    console: Console | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Run the demo; return whether every step succeeded and a summary.

    Raises:
        UsageError: The static launcher has not been built.
    """
    if not launcher.is_file():
        raise UsageError(
            f"the launcher executable {launcher} is missing", code="demo.launcher_missing",
            hint="build it with `make launcher` (make demo does it for you)",
        )  # fmt: skip
    root = workdir / ".sanctum" / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    demo = Demo(
        root=root, console=console or Console(highlight=False, soft_wrap=True), launcher=launcher
    )
    if runner == "auto":
        runner = "podman" if shutil.which("podman") and shutil.which("runc") else "bwrap"
    demo.runner = runner
    steps: list[tuple[str, list[Callable[[Demo], None]]]] = [
        ("Start the Enclave Manager and the simulated quoting service",
         [_start_quoting_service, _start_manager]),
        ("Build a sample backend image from local Debian packages", [_build_sample]),
        ("Create the app, convert the image, approve build and domain",
         [_create_app, _convert_and_register]),
        ("Run the shielded image: attest, provision, serve", [_start_workload]),
        ("Call it with the account CA; claims, token, audit, memory",
         [_call_service, _inspect_memory]),
        ("Refusals: a tampered image and a non-allowlisted build", [_refusals]),
    ]  # fmt: skip
    ok = True
    try:
        try:
            for title, actions in steps:
                with demo.step(title):
                    for action in actions:
                        action(demo)
        except SanctumError:
            ok = False
        except (
            OSError,
            subprocess.SubprocessError,
            httpx.HTTPError,
            ValueError,
            KeyError,
        ) as error:
            ok = False
            demo.console.print(
                f"[bold red]✗ unexpected failure:[/] {type(error).__name__}: {error}"
            )
        except KeyboardInterrupt:
            ok = False
            demo.console.print("[yellow]interrupted: stopping everything the demo started[/]")
        done = sum(step.ok for step in demo.steps)
        demo.console.rule("[bold]Summary")
        demo.console.print(
            f"{done}/{len(steps)} steps succeeded" + ("" if ok else " [red](failed)[/]")
        )
        if ok and not no_wait:
            demo.console.print(
                f"\n[bold]Still running:[/] the manager at {demo.url} and the bank service on "
                f"https://127.0.0.1:{demo.bank_port} (TLS name {_DOMAIN}).\nTry: "
                f"[cyan]sanctum login --url {demo.url} --ca-file {demo.manager_ca} "
                f"--email {_ADMIN}[/], then [cyan]sanctum apps list[/], "
                f"[cyan]sanctum audit list[/]; API docs at {demo.url}/docs.\n"
                "Press Ctrl-C to stop everything."
            )
            with contextlib.suppress(KeyboardInterrupt), _stop_on_sigterm():
                while all(p.poll() is None for p in demo.processes):
                    time.sleep(1)
    finally:
        demo.stop()
    summary = {
        "ok": ok,
        "runner": demo.runner,
        "steps": [vars(step) for step in demo.steps],
        **demo.summary,
    }
    return ok, summary


@click.command(cls=SanctumCommand)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Stop everything at the end; exit 0 only if all steps succeeded.",
)
@click.option(
    "--launcher",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("build/launcher/sanctum-launcher"),
    show_default=True,
    help="The static launcher executable (make launcher).",
)
@click.option(
    "--runner",
    type=click.Choice(["auto", "podman", "bwrap"]),
    default="auto",
    show_default=True,
    help="How to run the shielded image (auto: podman when installed, else bwrap).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def command(no_wait: bool, launcher: Path, runner: str, as_json: bool) -> None:
    """Run the end-to-end demo: convert, attest, provision, serve, refuse (state in ./.sanctum)."""
    ok, summary = run_demo(Path.cwd(), launcher=launcher, no_wait=no_wait, runner=runner)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    if not ok:
        sys.exit(1)
