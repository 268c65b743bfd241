"""End to end over real HTTPS: ``sanctum manager serve`` in a subprocess, driven by the CLI
(``login``, ``accounts``, ``users``, ``apikeys``, ``tasks``, ``audit``)."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from sanctum.cli.main import cli
from sanctum.manager.app import create_app
from sanctum.manager.db import Database
from sanctum.manager.settings import ManagerSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, ca: Path, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()}")
        if ca.is_file():
            try:
                if (
                    httpx.get(
                        f"{url}/readyz",
                        verify=ssl.create_default_context(cafile=str(ca)),
                        timeout=2,
                    ).status_code
                    == 200
                ):
                    return
            except (httpx.HTTPError, ssl.SSLError):
                pass
        time.sleep(0.1)
    process.terminate()
    raise AssertionError(f"the manager did not become ready: {log.read_text()}")


@pytest.fixture
def served(tmp_path):
    port = _free_port()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sanctum",
            "manager",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        env=env,
    )
    url = f"https://127.0.0.1:{port}"
    ca = data_dir / "tls" / "ca.pem"
    try:
        _wait_ready(url, ca, process, log_path)
        yield url, ca, data_dir, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _run(*args: str, stdin: str | None = None) -> dict:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.slow
def test_serve_https_and_cli(served, tmp_path, monkeypatch):
    url, ca, data_dir, log_path = served
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SANCTUM_API_KEY", "SANCTUM_MANAGER_URL", "SANCTUM_MANAGER_CA"):
        monkeypatch.delenv(name, raising=False)
    # HTTPS only: plain HTTP on the port fails, the CA verifies the server certificate.
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https", "http") + "/healthz", timeout=2)
    with pytest.raises((httpx.ConnectError, ssl.SSLError)):
        httpx.get(f"{url}/healthz", timeout=2)  # System roots do not know our CA.
    assert (data_dir / "kek.b64").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "tls" / "server.key").stat().st_mode & 0o777 == 0o600
    # The generated bootstrap password was printed once on standard error.
    banner = log_path.read_text()  # Printed before the server started listening.
    assert banner.count("with password") == 1
    match = re.search(r"administrator (\S+) with password (\S+)", banner)
    assert match, banner
    email, password = match.groups()
    login = _run(
        "login",
        "--url",
        url,
        "--ca-file",
        str(ca),
        "--email",
        email,
        "--password-stdin",
        "--json",
        stdin=password + "\n",
    )
    config = tmp_path / "config" / "sanctum"
    assert (config / "manager.json").stat().st_mode & 0o777 == 0o600
    assert (config / "manager-ca.pem").read_bytes() == ca.read_bytes()
    accounts = _run("accounts", "list", "--json")
    assert accounts[0]["id"] == login["account_id"]
    assert accounts[0]["role"] == "administrator"
    invited = _run(
        "users", "invite", "eve@example.org", "--name", "Eve", "--role", "editor", "--json"
    )
    assert invited["invitation_token"]
    users = _run("users", "list", "--json")
    assert {u["email"] for u in users} == {email, "eve@example.org"}
    key = _run("apikeys", "create", "robot", "--role", "viewer", "--json")
    assert key["secret"].startswith("snk_")
    opened = _run("accounts", "update", "--quorum", "1", "--allow-self-approval", "--json")
    task_id = opened["task"]["id"]
    listed = _run("tasks", "list", "--status", "pending", "--json")
    assert [t["id"] for t in listed] == [task_id]
    refused = CliRunner().invoke(cli, ["tasks", "approve", task_id, "--json"])
    assert refused.exit_code == 2
    assert json.loads(refused.output)["error"]["code"] == "task.self_approval"
    assert _run("tasks", "deny", task_id, "--comment", "no", "--json")["status"] == "denied"
    shown = _run("tasks", "show", task_id, "--json")
    assert shown["votes"][0]["comment"] == "no"
    assert [v["email"] for v in shown["voters"]] == [email]
    human_task = CliRunner().invoke(cli, ["tasks", "show", task_id], env={"COLUMNS": "250"})
    assert "Eligible voters" in human_task.output
    revoked = _run("apikeys", "revoke", key["key"]["id"], "--json")
    assert revoked["revoked_at"]
    entries = _run("audit", "list", "--family", "apikey", "--json")["entries"]
    assert [e["action"] for e in entries] == ["apikey.revoked", "apikey.created"]
    assert _run("audit", "verify", "--json")["intact"] is True
    exported = CliRunner().invoke(cli, ["audit", "export", "--format", "csv"])
    assert exported.exit_code == 0
    assert exported.output.startswith("id,time,chain,seq,action")
    # Human output renders tables.
    human = CliRunner().invoke(cli, ["users", "list"], env={"COLUMNS": "250"})
    assert "eve@example.org" in human.output
    # An API key in the environment works without login state.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-config"))
    monkeypatch.setenv("SANCTUM_MANAGER_URL", url)
    monkeypatch.setenv("SANCTUM_MANAGER_CA", str(ca))
    bot = CliRunner().invoke(
        cli, ["apikeys", "list", "--json"], env={"SANCTUM_API_KEY": key["secret"]}
    )
    assert bot.exit_code == 2
    assert json.loads(bot.output)["error"]["code"] == "auth.invalid_credentials"


def test_cli_without_login_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("SANCTUM_API_KEY", "SANCTUM_MANAGER_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["accounts", "list", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.output)["error"]["code"] == "client.not_logged_in"


def test_migrate_command(tmp_path):
    result = CliRunner().invoke(cli, ["manager", "migrate", "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    head = Database(f"sqlite:///{tmp_path / 'x.db'}").head_revision()
    assert json.loads(result.output) == {"from": None, "to": head}


def test_rotate_kek_command(tmp_path):
    old = tmp_path / "old.kek"
    new = tmp_path / "new.kek"
    old.write_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    new.write_text("ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=")
    pw = tmp_path / "pw"
    pw.write_text("rotate-password-0123")
    settings = ManagerSettings(
        data_dir=tmp_path,
        kek_file=old,
        bootstrap_password_file=pw,
        audit_sign_interval_seconds=3600,
    )
    app = create_app(settings)
    app.state.runtime.db.dispose()
    result = CliRunner().invoke(
        cli,
        [
            "manager",
            "rotate-kek",
            "--data-dir",
            str(tmp_path),
            "--kek-file",
            str(old),
            "--new-kek-file",
            str(new),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rewrapped"] >= 1
    # The manager now starts with the new KEK alone, and its keys still open.
    rotated = create_app(settings.model_copy(update={"kek_file": new}))
    assert rotated.state.runtime.token_key == app.state.runtime.token_key
    rotated.state.runtime.db.dispose()
    with pytest.raises(Exception) as refused:
        create_app(settings)
    assert "kek" in str(refused.value)


def test_uvicorn_never_rewrites_the_client_address_from_forwarded_headers(tmp_path):
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default; the manager decides itself
    # (`trust_forwarded_for`), so a local process cannot pick its rate-limit bucket or the
    # source address of its audit entries.
    from sanctum.cli.manager import server_config  # noqa: PLC0415

    config = server_config(object(), ManagerSettings(data_dir=tmp_path), {})
    assert config.proxy_headers is False
    assert config.server_header is False
