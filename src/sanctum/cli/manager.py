"""``sanctum manager``: run the Enclave Manager (``serve``), migrate its database, rotate its KEK.

With no options, ``serve`` runs the embedded developer default: the ``dev`` profile (unless a
profile is set by ``--profile``, the environment or the config file), HTTPS on 127.0.0.1:8443,
SQLite and its own TLS CA in the default data directory, and a KEK created there (with a
warning) if none is configured. The ``production`` profile refuses to start without an explicit
KEK (``kek_file``/``kek_env``; ADR 0057).
Plain HTTP (``--insecure-http``, for tests) is served only on a loopback address unless
``--unsafe-allow-insecure-http-on-network`` is given too: on a network, bearer tokens,
passwords and provisioned secrets would cross it in clear.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from sanctum.cli._base import SanctumGroup, emit_json, json_option, stderr_console
from sanctum.errors import UsageError

if TYPE_CHECKING:
    import uvicorn

    from sanctum.manager.settings import ManagerSettings

__all__ = ["group"]

_log = logging.getLogger(__name__)


def _settings(config: Path | None, **overrides: Any) -> Any:
    from sanctum.manager.settings import load_settings  # noqa: PLC0415 (keep CLI start-up fast)

    return load_settings(config, **overrides)


def _is_loopback_host(host: str) -> bool:
    """Return whether ``host`` (an address or ``localhost``) only listens on loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_plain_http_bind(host: str, *, insecure_http: bool, allow_on_network: bool) -> None:
    """Refuse to serve plain HTTP on a non-loopback address unless explicitly allowed.

    Args:
        host: The listen address.
        insecure_http: Whether plain HTTP is configured (flag, settings file or environment).
        allow_on_network: ``--unsafe-allow-insecure-http-on-network``.

    Raises:
        UsageError: Plain HTTP on a non-loopback address without the unsafe switch
            (code ``manager.insecure_http_on_network``).
    """
    if insecure_http and not allow_on_network and not _is_loopback_host(host):
        raise UsageError(
            f"refusing to serve plain HTTP on {host}, which is not a loopback address: "
            "tokens, passwords and secrets would cross the network in clear",
            code="manager.insecure_http_on_network",
            hint="serve HTTPS, bind to 127.0.0.1, or (tests on an isolated network only) add "
            "--unsafe-allow-insecure-http-on-network",
        )


@click.group(cls=SanctumGroup)
def group() -> None:
    """Run and administer the Enclave Manager service."""


_config_option = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML settings file (also SANCTUM_MANAGER_CONFIG).",
)
_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="State directory (SQLite database, TLS CA, generated KEK).",
)
_database_option = click.option(
    "--database-url", default=None, help="SQLAlchemy URL (default: SQLite in the data dir)."
)


@group.command()
@_config_option
@_data_dir_option
@_database_option
@click.option("--host", default=None, help="Listen address [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Listen port [default: 8443].")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--kek-file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--kek-env", default=None, help="Name of an environment variable holding the KEK.")
@click.option(
    "--profile",
    type=click.Choice(["production", "dev"]),
    default=None,
    help="Settings profile [default: dev, the embedded developer default; production needs a KEK].",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    default=None,
    help="Serve plain HTTP (tests only; loopback addresses only).",
)
@click.option(
    "--unsafe-allow-insecure-http-on-network",
    is_flag=True,
    default=False,
    help="Allow plain HTTP on a non-loopback address (isolated test networks only).",
)
def serve(
    *,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    host: str | None,
    port: int | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    kek_file: Path | None,
    kek_env: str | None,
    profile: str | None,
    insecure_http: bool | None,
    unsafe_allow_insecure_http_on_network: bool,
) -> None:
    """Serve the manager API (HTTPS by default).

    Raises:
        UsageError: Plain HTTP on a non-loopback address without the unsafe switch.
    """
    import uvicorn  # noqa: PLC0415 (heavy; only for this command)

    from sanctum.manager.app import RequestIdFilter, create_app  # noqa: PLC0415
    from sanctum.manager.clock import SystemClock  # noqa: PLC0415
    from sanctum.manager.tls import ensure_server_tls  # noqa: PLC0415

    settings = _settings(
        config,
        data_dir=data_dir,
        database_url=database_url,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        kek_file=kek_file,
        kek_env=kek_env,
        insecure_http=insecure_http,
        profile=profile,
    )
    if "profile" not in settings.model_fields_set:
        settings = _settings(
            config,
            data_dir=data_dir,
            database_url=database_url,
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            kek_file=kek_file,
            kek_env=kek_env,
            insecure_http=insecure_http,
            profile="dev",
        )
        _log.warning(
            "no profile set: running the embedded developer default ('dev' profile). "
            "Production sets profile = 'production' and kek_file or kek_env"
        )
    check_plain_http_bind(
        settings.host,
        insecure_http=settings.insecure_http,
        allow_on_network=unsafe_allow_insecure_http_on_network,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    sanctum_logger = logging.getLogger("sanctum")
    previous_level = sanctum_logger.level
    if logging.getLogger().level > logging.INFO:
        # Warnings (generated KEK, bootstrap) and the audit stream must reach the operator.
        sanctum_logger.setLevel(logging.INFO)
    try:
        app = create_app(settings)
    except BaseException:
        sanctum_logger.setLevel(previous_level)  # In-process callers keep their log levels.
        raise
    console = stderr_console()
    result = app.state.bootstrap
    if result is not None and result.generated_password is not None:
        console.print(
            f"[bold yellow]First start:[/] administrator [bold]{result.email}[/] with password "
            f"[bold]{result.generated_password}[/] (shown once; change it after signing in)"
        )
        app.state.bootstrap = None
    ssl: dict[str, Any] = {}
    scheme = "http"
    if settings.insecure_http:
        _log.warning("serving plain HTTP (--insecure-http): for tests only")
    else:
        scheme = "https"
        if settings.tls_cert is not None and settings.tls_key is not None:
            ssl = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        else:
            files = ensure_server_tls(
                settings.data_dir,
                [settings.host],
                SystemClock().now(),
                keyring=app.state.runtime.box.keyring,
            )
            ssl = {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}
            console.print(f"TLS CA for clients: {files.ca}")
    console.print(f"Sanctum manager on {scheme}://{settings.host}:{settings.port}")
    console.file.flush()  # Standard error is block-buffered when redirected to a file.
    uvicorn.Server(server_config(app, settings, ssl)).run()


def server_config(app: Any, settings: ManagerSettings, ssl: dict[str, Any]) -> uvicorn.Config:
    """Return the uvicorn configuration ``sanctum manager serve`` runs ``app`` with.

    Raises:
        TypeError: ``ssl`` holds a keyword uvicorn does not know (a programming error).
    """
    import uvicorn  # noqa: PLC0415 (the CLI imports the server only when it serves)

    loop, http = server_implementations()
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        # The app reads X-Forwarded-For itself, and only when `trust_forwarded_for` is set
        # (rightmost hop). uvicorn's own handling, on by default for connections from
        # 127.0.0.1, would let any local process choose its rate-limit bucket and the
        # source address written to the audit log.
        proxy_headers=False,
        loop=loop,
        http=http,
        **ssl,
    )


def server_implementations() -> tuple[Literal["uvloop", "auto"], Literal["httptools", "auto"]]:
    """Return the uvicorn event loop and HTTP parser to serve with (ADR 0084).

    uvloop and httptools (C implementations, much cheaper per request than asyncio's loop and
    h11) when they are installed, else uvicorn's automatic choice.
    """
    loop: Literal["uvloop", "auto"] = (
        "uvloop" if importlib.util.find_spec("uvloop") is not None else "auto"
    )
    http: Literal["httptools", "auto"] = (
        "httptools" if importlib.util.find_spec("httptools") is not None else "auto"
    )
    return loop, http


@group.command()
@_config_option
@_data_dir_option
@_database_option
@json_option
def migrate(
    config: Path | None, data_dir: Path | None, database_url: str | None, as_json: bool
) -> None:
    """Apply pending database migrations."""
    from sanctum.manager.db import Database  # noqa: PLC0415

    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    db = Database(settings.resolved_database_url())
    try:
        before = db.current_revision()
        after = db.migrate()
    finally:
        db.dispose()
    if as_json:
        emit_json({"from": before, "to": after})
    else:
        click.echo(f"database at revision {after} (was {before})")


@group.command("rotate-kek")
@_config_option
@_data_dir_option
@_database_option
@click.option(
    "--kek-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The current (old) KEK file (default: the settings' KEK).",
)
@click.option("--new-kek-file", type=click.Path(path_type=Path, dir_okay=False), required=True)
@json_option
def rotate_kek(
    *,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    kek_file: Path | None,
    new_kek_file: Path,
    as_json: bool,
) -> None:
    """Re-wrap every data key under a new KEK (replicas keep both until restarted)."""
    from sanctum.manager.app import resolve_key_provider  # noqa: PLC0415
    from sanctum.manager.db import Database  # noqa: PLC0415
    from sanctum.manager.secretbox import Keyring, load_kek_file, rotate_kek  # noqa: PLC0415

    settings = _settings(config, data_dir=data_dir, database_url=database_url, kek_file=kek_file)
    old, created = resolve_key_provider(settings)
    if created:
        raise UsageError("there is no current KEK to rotate from", code="kek.missing")
    new = load_kek_file(new_kek_file)
    db = Database(settings.resolved_database_url())
    try:
        with db.transaction() as session:
            changed = rotate_kek(session, Keyring(new, [old]))
    finally:
        db.dispose()
    if as_json:
        emit_json({"rewrapped": changed, "kek_id": new.kek_id})
    else:
        click.echo(f"re-wrapped {changed} data keys under {new.kek_id}")
