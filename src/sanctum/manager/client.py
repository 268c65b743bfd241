"""A small HTTP client of the manager API for the CLI (httpx, pinned to the manager's CA).

``sanctum login`` stores the manager URL, a bearer token, the default account and a copy of the
manager's CA certificate in ``$XDG_CONFIG_HOME/sanctum/`` (mode 0600 files in a 0700 directory).
Automation can skip ``login`` by setting ``SANCTUM_API_KEY`` (exchanged for a token per run),
with ``SANCTUM_MANAGER_URL`` and ``SANCTUM_MANAGER_CA`` naming the manager and its CA. Problem
documents from the API come back as the matching :mod:`sanctum.errors` types, with their codes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from sanctum.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SanctumError,
    UnavailableError,
    UsageError,
)

__all__ = ["ClientConfig", "ManagerClient", "config_dir", "load_client", "save_login"]


def config_dir() -> Path:
    """Return the CLI's configuration directory (``$XDG_CONFIG_HOME/sanctum``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sanctum"


@dataclass
class ClientConfig:
    """What ``sanctum login`` remembers."""

    url: str
    token: str | None = None
    expires_at: str | None = None
    account_id: str | None = None
    ca_file: str | None = None


def _config_path() -> Path:
    return config_dir() / "manager.json"


def _read_config() -> ClientConfig | None:
    path = _config_path()
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return ClientConfig(**{k: data.get(k) for k in ClientConfig.__dataclass_fields__})


def save_login(config: ClientConfig, ca_source: Path | None) -> Path:
    """Store ``config`` (and a copy of the CA) in the config directory; return the file."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if ca_source is not None:
        target = directory / "manager-ca.pem"
        shutil.copyfile(ca_source, target)
        config.ca_file = str(target)
    path = _config_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # The mode of os.open applies only when it creates the file: tighten an existing one
    # before the token is written into it.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(config), handle, indent=2)
    return path


_ERRORS: Mapping[int, type[SanctumError]] = {
    400: UsageError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UsageError,
    429: AuthenticationError,
}


def _raise_problem(response: httpx.Response) -> None:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("code") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    cls = _ERRORS.get(response.status_code, UnavailableError)
    message = str(detail or f"the manager answered HTTP {response.status_code}")
    if code == "request.invalid" and isinstance(body.get("errors"), list):
        message += ": " + "; ".join(
            f"{'.'.join(e.get('loc', []))}: {e.get('msg')}" for e in body["errors"]
        )
    try:
        raise cls(message, code=str(code) if code else None)
    except ValueError:
        raise cls(message) from None


class ManagerClient:
    """Calls the manager API with a bearer token."""

    def __init__(
        self, url: str, *, token: str | None, ca_file: str | None, account_id: str | None = None
    ) -> None:
        """Prepare a client for ``url`` that trusts ``ca_file`` (or the system roots)."""
        self.url = url.rstrip("/")
        self.token = token
        self.account_id = account_id
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if ca_file else True
        )
        self._http = httpx.Client(base_url=self.url, verify=verify, timeout=30.0)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def account(self, account_id: str | None) -> str:
        """Return ``account_id`` or the default account from ``login``.

        Raises:
            UsageError: Neither is known (``client.account_missing``).
        """
        chosen = account_id or self.account_id
        if not chosen:
            raise UsageError(
                "name an account with --account (or log in again)", code="client.account_missing"
            )
        return chosen

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call the API and return the decoded JSON (``None`` for 204).

        Raises:
            SanctumError: The API's problem document, as the matching error type.
            UnavailableError: The manager could not be reached (``client.unreachable``).
        """
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path, json=json_body, params=clean, headers=headers
            )
        except httpx.HTTPError as error:
            raise UnavailableError(
                f"cannot reach the manager at {self.url}: {type(error).__name__}",
                code="client.unreachable",
            ) from error
        if response.status_code >= 400:
            _raise_problem(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @contextmanager
    def stream(self, path: str, params: Mapping[str, Any]) -> Iterator[Iterator[bytes]]:
        """Stream a response body (exports).

        Raises:
            SanctumError: The API refused the request.
        """
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        clean = {k: v for k, v in params.items() if v is not None}
        with self._http.stream("GET", path, params=clean, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                _raise_problem(response)
            yield response.iter_bytes()

    def exchange(
        self, *, api_key: str | None = None, email: str | None = None, password: str | None = None
    ) -> dict[str, Any]:
        """Exchange credentials for a bearer token (and keep it)."""
        body = {"api_key": api_key} if api_key else {"email": email, "password": password}
        result: dict[str, Any] = self.request("POST", "/v1/auth/token", json_body=body)
        self.token = str(result["access_token"])
        return result


def load_client(url: str | None = None) -> ManagerClient:
    """Return a client from the stored login, overridden by the environment.

    Raises:
        UsageError: Nothing says which manager to call (``client.not_logged_in``) or the stored
            token has expired with no API key to renew it (``client.token_expired``).
    """
    config = _read_config()
    url = url or os.environ.get("SANCTUM_MANAGER_URL") or (config.url if config else None)
    if not url:
        raise UsageError("no manager known: run `sanctum login` first", code="client.not_logged_in")
    ca_file = os.environ.get("SANCTUM_MANAGER_CA") or (config.ca_file if config else None)
    api_key = os.environ.get("SANCTUM_API_KEY")
    client = ManagerClient(
        url,
        token=config.token if config else None,
        ca_file=ca_file,
        account_id=config.account_id if config else None,
    )
    if api_key:
        client.exchange(api_key=api_key)
        if client.account_id is None:
            whoami = client.request("GET", "/v1/auth/whoami")
            client.account_id = whoami.get("account_id")
        return client
    if config and config.expires_at:
        expires = dt.datetime.fromisoformat(config.expires_at)
        if expires <= dt.datetime.now(dt.UTC):
            raise UsageError(
                "the stored token has expired: run `sanctum login` again",
                code="client.token_expired",
            )
    return client
