"""``sanctum manager serve --insecure-http`` stays on loopback unless explicitly allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import sanctum.manager.app
from sanctum.cli.main import cli
from sanctum.cli.manager import check_plain_http_bind
from sanctum.errors import UsageError


class _ReachedError(Exception):
    """Raised by the stand-in app factory: the bind check let the command through."""


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    def refuse_to_build(*_args: object, **_kwargs: object) -> None:
        raise _ReachedError

    monkeypatch.setattr(sanctum.manager.app, "create_app", refuse_to_build)
    for name in ("SANCTUM_MANAGER_INSECURE_HTTP", "SANCTUM_MANAGER_HOST", "SANCTUM_MANAGER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def _serve(runner: CliRunner, tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    return runner.invoke(
        cli,
        ["manager", "serve", "--data-dir", str(tmp_path / "data"), *args],
        env=env,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "manager.example"])
def test_plain_http_on_a_network_address_is_refused(
    runner: CliRunner, tmp_path: Path, host: str
) -> None:
    result = _serve(runner, tmp_path, "--insecure-http", "--host", host)
    assert result.exit_code == 2, result.output
    assert "manager.insecure_http_on_network" in result.output


def test_plain_http_from_the_environment_is_refused_too(runner: CliRunner, tmp_path: Path) -> None:
    result = _serve(
        runner,
        tmp_path,
        "--host",
        "0.0.0.0",
        env={"SANCTUM_MANAGER_INSECURE_HTTP": "true"},
    )
    assert result.exit_code == 2, result.output
    assert "manager.insecure_http_on_network" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--insecure-http"],
        ["--insecure-http", "--host", "localhost"],
        ["--insecure-http", "--host", "::1"],
        ["--insecure-http", "--host", "0.0.0.0", "--unsafe-allow-insecure-http-on-network"],
        ["--host", "0.0.0.0"],
    ],
)
def test_loopback_https_or_the_unsafe_switch_go_through(
    runner: CliRunner, tmp_path: Path, args: list[str]
) -> None:
    result = _serve(runner, tmp_path, *args)
    assert isinstance(result.exception, _ReachedError), result.output


def test_the_check_itself() -> None:
    check_plain_http_bind("127.0.0.5", insecure_http=True, allow_on_network=False)
    check_plain_http_bind("0.0.0.0", insecure_http=False, allow_on_network=False)
    check_plain_http_bind("0.0.0.0", insecure_http=True, allow_on_network=True)
    with pytest.raises(UsageError) as info:
        check_plain_http_bind("10.0.0.1", insecure_http=True, allow_on_network=False)
    assert info.value.code == "manager.insecure_http_on_network"
