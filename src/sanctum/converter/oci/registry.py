"""A client for the OCI distribution API v2 (registries), on httpx, streaming with bounded memory.

What it does:

- **Auth**: anonymous, HTTP Basic, and bearer tokens (the ``WWW-Authenticate: Bearer realm=...``
  challenge is answered at the token endpoint, with Basic credentials when there are some, or
  an OAuth2 refresh token). Credentials are passed in (:class:`RegistryAuth`) or read from a
  docker ``config.json`` (inline ``auths``, ``identitytoken``, or a credential helper).
- **Reads**: manifests by tag or digest (an index resolves to linux/amd64), Docker schema 2 and
  OCI media types. Manifest bytes are kept exactly; blobs are streamed and verified at EOF.
- **Writes**: monolithic (``POST`` + ``PUT``) and chunked (``PATCH`` with ``Content-Range``)
  uploads, skipping blobs the registry already has (``HEAD``), cross-repository mounts.

Transport security: HTTPS with certificate verification. Plain HTTP is used only for loopback
registries (``127.0.0.0/8``, ``::1``, ``localhost``) that do not answer TLS (Docker does the
same), or when the caller sets ``unsafe_plain_http``. Credentials are never logged and never
follow a redirect to another host. ``Authorization`` is attached only to URLs of the registry's
own origin (scheme, host and port), whatever ``Location`` an upload session names; credentials
go to a token realm only over HTTPS (plain HTTP only when the registry itself is a loopback or
``unsafe_plain_http`` one and the realm is too), and a refresh token is never replayed to a
redirect target.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import io
import ipaddress
import json
import logging
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

import httpx

from sanctum.converter.errors import ImageError, RegistryAuthError, RegistryUnavailable
from sanctum.converter.oci.http11 import Http11Transport
from sanctum.converter.oci.model import (
    ALL_MANIFEST_MEDIA_TYPES,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    check_digest,
    digest_of,
    parse_manifest_or_index,
)
from sanctum.converter.oci.reference import DOCKER_HUB, RegistryReference
from sanctum.converter.oci.store import (
    CHUNK_SIZE,
    MAX_MANIFEST_SIZE,
    BaseImageSource,
    BlobReader,
    Closing,
    ProgressCallback,
    verifying_reader,
)
from sanctum.errors import UsageError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "NO_RETRY",
    "RegistryAuth",
    "RegistryClient",
    "RegistrySink",
    "RegistrySource",
    "RetryPolicy",
    "auth_from_docker_config",
    "default_transport",
    "is_transient",
    "parse_www_authenticate",
    "run_credential_helper",
]

_log = logging.getLogger(__name__)

#: Blobs up to this size are uploaded in one PUT; larger ones in PATCH chunks of this size.
DEFAULT_CHUNK_SIZE: Final = 64 << 20
_ACCEPT: Final = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST_LIST}"
_CHALLENGE_PARAM_RE: Final = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_DOCKER_HUB_CONFIG_KEYS: Final = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


#: Methods retried on transient failures: they change nothing on the registry.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how patiently, transient registry failures are retried.

    Transient means: the connection failed or broke (not a TLS certificate failure), the
    registry answered 429 (too many requests) or a 5xx server error, or it lost a blob upload
    session. GET and HEAD requests are repeated; a blob upload is restarted from scratch (a new
    session) when its content can be read again; a download that breaks mid-way resumes with a
    ``Range`` request. Authentication and validation answers (401, 403, other 4xx) are never
    retried. After :attr:`attempts` tries the last failure is raised as
    :class:`~sanctum.converter.errors.RegistryUnavailable`.

    Attributes:
        attempts: Tries in total (1 = no retry).
        backoff: Wait before the second try, in seconds; doubled before each later one.
        max_backoff: Longest wait computed by the doubling.
        max_retry_after: Longest wait a ``Retry-After`` header may ask for (longer asks are
            cut to this).
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            sanctum.errors.UsageError: A value is out of range.
        """
        if self.attempts < 1 or self.backoff < 0 or self.max_backoff < 0:
            raise UsageError("invalid registry retry policy", code="usage.invalid")
        if self.max_retry_after < 0:
            raise UsageError("invalid registry retry policy", code="usage.invalid")

    def delay(self, attempt: int, retry_after: str | None = None, *, now: float = 0.0) -> float:
        """Return how long to wait after failed try number ``attempt`` (1-based).

        Args:
            attempt: The try that just failed.
            retry_after: The response's ``Retry-After`` header (seconds or an HTTP date).
            now: The current time (seconds since the epoch), for an HTTP-date header.
        """
        computed = float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
        asked = _parse_retry_after(retry_after, now) if retry_after else None
        if asked is None:
            return computed
        return min(max(asked, 0.0), self.max_retry_after)


#: No retries: every failure is raised at once.
NO_RETRY: Final = RetryPolicy(attempts=1)


def _parse_retry_after(value: str, now: float) -> float | None:
    """Return the seconds a ``Retry-After`` value asks for, None when it is not valid."""
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - now


def is_transient(error: RegistryUnavailable) -> bool:
    """Return whether repeating the failed operation from scratch may succeed.

    True for a failed or broken connection, a lost upload session, and a 429 or 5xx answer;
    False for a TLS certificate failure and any other unexpected answer (a 4xx, a 202 where
    201 was due): those would fail the same way again.
    """
    if error.code in {"registry.unreachable", "registry.upload_lost"}:
        return True
    status = error.details.get("status")
    return (
        error.code == "registry.http_error"
        and isinstance(status, int)
        and (status == 429 or status >= 500)
    )


class _TransientStatusError(Exception):
    """A 429 or 5xx answer that may be retried (internal to :meth:`RegistryClient.request`)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    """Credentials for a registry (sent as Basic auth, or to the token endpoint).

    Attributes:
        username: User name.
        password: Password or access token; never shown in ``repr``.
        identity_token: An OAuth2 refresh token (``identitytoken`` in a docker config, or a
            credential helper's ``<token>`` answer); when set, bearer tokens are obtained with
            ``grant_type=refresh_token`` instead of Basic credentials. Never shown in ``repr``.
    """

    username: str
    password: str = field(repr=False)
    identity_token: str | None = field(default=None, repr=False)

    def basic_header(self) -> str:
        """Return the ``Authorization: Basic`` header value."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


_HELPER_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HELPER_TIMEOUT: Final = 30.0


def _config_key_host(key: str) -> str:
    host = key.removeprefix("https://").removeprefix("http://")
    return host.split("/", 1)[0]


def _bad_config(path: Path, why: str) -> UsageError:
    return UsageError(f"docker config {path}: {why}", code="registry.bad_docker_config")


def run_credential_helper(helper: str, server: str) -> RegistryAuth | None:
    """Ask ``docker-credential-HELPER get`` for the credentials of ``server``.

    Returns:
        The credentials, or None when the helper has none for ``server``.

    Raises:
        sanctum.errors.UsageError: The helper is missing, fails or answers nonsense
            (code ``registry.credential_helper_failed``).
    """

    def failed(why: str) -> UsageError:
        return UsageError(
            f"credential helper docker-credential-{helper} {why}",
            code="registry.credential_helper_failed",
        )

    if not _HELPER_NAME_RE.fullmatch(helper):
        raise failed("has an invalid name")
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        raise failed("is not on PATH")
    try:
        result = subprocess.run(
            [program, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise failed(f"could not run: {type(exc).__name__}") from None
    if result.returncode != 0:
        if b"credentials not found" in result.stdout + result.stderr:
            return None
        raise failed(f"exited with status {result.returncode}")
    try:
        doc = json.loads(result.stdout)
        username, secret = doc["Username"], doc["Secret"]
    except (ValueError, KeyError, TypeError):
        raise failed("printed no Username/Secret JSON") from None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise failed("printed no Username/Secret JSON")
    if username == "<token>":
        return RegistryAuth("", "", identity_token=secret)
    return RegistryAuth(username, secret)


def _from_auths_entry(path: Path, key: str, entry: object) -> RegistryAuth | None:
    if not isinstance(entry, dict):
        raise _bad_config(path, f"entry {key!r} is malformed")
    user, password = "", ""
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = (
                base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise _bad_config(path, f"the 'auth' of {key!r} is not base64 'user:password'")
    elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        user, password = entry["username"], entry["password"]
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return RegistryAuth(user, password, identity_token=token)
    if user or password:
        return RegistryAuth(user, password)
    return None


def auth_from_docker_config(path: Path, registry: str) -> RegistryAuth | None:
    """Return the credentials a docker ``config.json`` gives for ``registry``, if any.

    As with Docker: a ``credHelpers`` entry for the registry, else ``credsStore``, runs
    ``docker-credential-NAME get``; otherwise (or when the helper has nothing) the ``auths``
    entry is used (``auth`` = base64 ``user:password``, or ``username``/``password``, and
    ``identitytoken``).

    Raises:
        sanctum.errors.UsageError: The file cannot be read or is malformed
            (``registry.bad_docker_config``), or a credential helper failed
            (``registry.credential_helper_failed``).
    """
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise _bad_config(path, f"cannot be read: {exc}") from None
    if not isinstance(doc, dict):
        raise _bad_config(path, "the top level is not an object")
    hub = registry == DOCKER_HUB
    wanted = {registry} | (set(_DOCKER_HUB_CONFIG_KEYS) if hub else set())
    helpers = doc.get("credHelpers") or {}
    if not isinstance(helpers, dict):
        raise _bad_config(path, "'credHelpers' is not an object")
    helper = next((v for k, v in helpers.items() if k in wanted), None) or doc.get("credsStore")
    if helper is not None:
        if not isinstance(helper, str):
            raise _bad_config(path, "a credential helper name is not a string")
        server = _DOCKER_HUB_CONFIG_KEYS[0] if hub else registry
        found = run_credential_helper(helper, server)
        if found is not None:
            return found
    auths = doc.get("auths") or {}
    if not isinstance(auths, dict):
        raise _bad_config(path, "'auths' is not an object")
    for key, entry in auths.items():
        if _config_key_host(key) in wanted or key in wanted:
            found = _from_auths_entry(path, key, entry)
            if found is not None:
                return found
    return None


def parse_www_authenticate(header: str) -> tuple[str, dict[str, str]]:
    """Parse a ``WWW-Authenticate`` challenge into its scheme and parameters.

    Returns:
        The scheme in lower case (``basic`` or ``bearer``) and its parameters.
    """
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = value.replace('\\"', '"')
    return scheme.lower(), params


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.find("]")]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Return the origin (scheme, host, port with defaults filled in) of an absolute URL."""
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


def _is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@functools.cache
def _default_tls_context() -> ssl.SSLContext:
    """Return httpx's default verifying TLS context, built once per process.

    Loading the CA bundle takes 35-50 ms of CPU; a conversion opens two clients (source and
    sink), and an :class:`ssl.SSLContext` may be shared by any number of connections.
    """
    return httpx.create_ssl_context(verify=True)


def default_transport(verify: ssl.SSLContext | bool = True) -> httpx.BaseTransport:
    """Return the transport a :class:`RegistryClient` uses when given none.

    It is :class:`~sanctum.converter.oci.http11.Http11Transport`, which reads and sends blob
    bodies without copying them in Python (ADR 0125). A caller that guards requests (the
    manager's registry allowlist) wraps this transport in its own.

    Args:
        verify: True (the default CA bundle), False (no verification: tests only), or an
            :class:`ssl.SSLContext`.
    """
    if verify is True:
        context = _default_tls_context()
    elif verify is False:
        context = httpx.create_ssl_context(verify=False)
    else:
        context = verify
    return Http11Transport(context)


class RegistryClient:
    """An authenticated HTTP session with one repository of one registry."""

    def __init__(
        self,
        reference: RegistryReference,
        *,
        auth: RegistryAuth | None = None,
        push: bool = False,
        unsafe_plain_http: bool = False,
        verify: bool | str = True,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare a session (no request is made yet).

        Args:
            reference: The registry and repository.
            auth: Credentials, or None for anonymous access.
            push: Ask for push rights as well as pull.
            unsafe_plain_http: Use plain HTTP for a non-loopback registry.
            verify: TLS verification (True, or a CA bundle path).
            timeout: Network timeout in seconds.
            transport: An httpx transport (tests use a mock one).
            retry: Retries of transient failures (default :class:`RetryPolicy`).
            sleep: Waits between retries (tests pass a fake).
            clock: The current time, for ``Retry-After`` dates (tests pass a fake).

        Raises:
            sanctum.errors.UsageError: The CA bundle ``verify`` names cannot be loaded
                (code ``registry.bad_ca_bundle``).
        """
        self.reference = reference
        self.repository = reference.repository
        # Loopback registries are tried over HTTPS first and fall back to plain HTTP (as Docker
        # does for its default insecure registries); others use HTTPS unless told otherwise.
        self._probe_tls = _is_loopback(reference.api_host) and not unsafe_plain_http
        plain = unsafe_plain_http
        self.base_url = f"{'http' if plain else 'https'}://{reference.api_host}"
        self._auth = auth
        self.retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._unsafe_plain_http = unsafe_plain_http
        self._actions = "pull,push" if push else "pull"
        self._extra_scopes: set[str] = set()
        # Blobs may be copied from several threads sharing this client.
        self._lock = threading.Lock()
        self._authorization: str | None = None
        try:
            tls: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
            )
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"cannot load the CA bundle {verify}: {exc}", code="registry.bad_ca_bundle"
            ) from None
        self._client = httpx.Client(
            base_url=self.base_url,
            verify=tls,
            timeout=timeout,
            follow_redirects=True,
            transport=transport if transport is not None else default_transport(tls),
            # Identity encoding: digests are over the exact bytes, so nothing may be re-encoded.
            headers={"User-Agent": "sanctum-converter", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _choose_scheme(self) -> None:
        """For a loopback registry, use HTTPS if it answers TLS, else plain HTTP."""
        self._probe_tls = False
        try:
            self._client.get("/v2/").close()
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if _is_certificate_error(exc):
                # A TLS server whose certificate fails: never downgrade to plain HTTP.
                raise RegistryUnavailable(
                    f"the TLS certificate of {self.reference.registry} does not verify: {exc}",
                    code="registry.tls_error",
                    hint="pass the registry's CA bundle (verify=PATH)",
                ) from None
            self.base_url = self.base_url.replace("https://", "http://", 1)
            self._client.base_url = httpx.URL(self.base_url)
            _log.debug("registry %s does not speak TLS; using plain HTTP", self.base_url)

    def _scopes(self, challenge_scope: str | None) -> list[str]:
        with self._lock:
            extra = set(self._extra_scopes)
        scopes = {f"repository:{self.repository}:{self._actions}", *extra}
        if challenge_scope:
            scopes.update(challenge_scope.split())
        return sorted(scopes)

    def _same_origin(self, url: httpx.URL) -> bool:
        """Return whether ``url`` (absolute) is on the registry's own scheme, host and port."""
        return _origin(url) == _origin(httpx.URL(self.base_url))

    def _check_realm(self, realm: str) -> None:
        """Refuse to send credentials to a token realm that would expose them.

        Credentials (Basic or an identity token) go to an HTTPS realm. A plain HTTP realm is
        accepted only when the registry itself is reached over plain HTTP (a loopback registry
        without TLS, or ``unsafe_plain_http``) and the realm is loopback or the caller set
        ``unsafe_plain_http``: an HTTPS registry never downgrades its credentials to HTTP.

        Raises:
            RegistryAuthError: The realm is not HTTPS (code ``registry.insecure_token_realm``).
        """
        url = httpx.URL(realm)
        if url.scheme == "https":
            return
        registry_plain = self.base_url.startswith("http://")
        realm_ok = self._unsafe_plain_http or _is_loopback(url.netloc.decode("ascii"))
        if url.scheme == "http" and registry_plain and realm_ok:
            return
        raise RegistryAuthError(
            f"the token realm of {self.reference.registry} is not HTTPS; "
            "refusing to send credentials to it",
            code="registry.insecure_token_realm",
            details={"realm_scheme": url.scheme, "realm_host": url.host},
        )

    def _fetch_token(self, params: dict[str, str]) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError("the registry's bearer challenge names no token realm")
        if self._auth is not None:
            self._check_realm(realm)
        query: list[tuple[str, str | int | float | bool | None]] = [
            ("scope", s) for s in self._scopes(params.get("scope"))
        ]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        attempt = 1
        while True:
            try:
                response = self._token_request_once(realm, params, query)
            except httpx.TransportError as exc:
                if _is_certificate_error(exc) or attempt >= self.retry.attempts:
                    raise RegistryUnavailable(
                        f"the token endpoint {realm} is unreachable: {exc}",
                        details={"attempts": attempt},
                    ) from None
                wait = self.retry.delay(attempt)
            else:
                transient = response.status_code == 429 or response.status_code >= 500
                if not transient or attempt >= self.retry.attempts:
                    break
                header = response.headers.get("Retry-After")
                wait = self.retry.delay(attempt, header, now=self._clock())
            self._sleep(wait)
            attempt += 1
        if response.status_code in {401, 403}:
            raise RegistryAuthError(
                f"the token endpoint refused the credentials (HTTP {response.status_code})",
                hint="check the user name and password for this registry",
            )
        if response.status_code != 200:
            raise RegistryUnavailable(
                f"the token endpoint answered HTTP {response.status_code}",
                code="registry.http_error",
                details={"status": response.status_code, "attempts": attempt},
            )
        try:
            doc = response.json()
        except ValueError:
            doc = None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError("the token endpoint returned no token")
        return token

    def _token_request_once(
        self,
        realm: str,
        params: dict[str, str],
        query: list[tuple[str, str | int | float | bool | None]],
    ) -> httpx.Response:
        """Send one token request (a refresh-token POST or a GET with Basic credentials).

        Raises:
            httpx.HTTPError: The request failed.
        """
        try:
            if self._auth is not None and self._auth.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": self._auth.identity_token,
                    "client_id": "sanctum",
                    "scope": " ".join(str(v) for k, v in query if k == "scope"),
                }
                if params.get("service"):
                    form["service"] = params["service"]
                # No redirects: a 307/308 would replay the refresh token to wherever it points.
                response = self._client.post(realm, data=form, follow_redirects=False)
            else:
                headers = {"Authorization": self._auth.basic_header()} if self._auth else {}
                # httpx drops Authorization when a redirect leaves the realm's origin.
                response = self._client.get(realm, params=query, headers=headers)
        except httpx.TransportError:
            raise
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"the token endpoint {realm} is unreachable: {exc}") from None
        return response

    def _answer_challenge(self, response: httpx.Response) -> None:
        scheme, params = parse_www_authenticate(response.headers.get("WWW-Authenticate", ""))
        if scheme == "bearer":
            self._authorization = "Bearer " + self._fetch_token(params)
        elif scheme == "basic" and self._auth is not None:
            self._authorization = self._auth.basic_header()
        else:
            raise RegistryAuthError(
                f"{self.reference.registry} requires authentication and no credentials were given",
                hint="pass credentials or a docker config.json that has them",
            )

    def add_scope(self, scope: str) -> None:
        """Ask for an extra token scope from now on (``repository:other:pull`` for mounts)."""
        with self._lock:
            if scope in self._extra_scopes:
                return
            self._extra_scopes.add(scope)
        if self._authorization and self._authorization.startswith("Bearer "):
            self._authorization = None

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request, answering one authentication challenge when the body is replayable.

        ``Authorization`` is attached only when ``url`` resolves to the registry's own origin;
        a URL elsewhere (an upload ``Location`` naming another host, port or plain HTTP) is
        sent without credentials, and its authentication challenges are not answered.

        GET and HEAD are retried per :attr:`retry` on connection failures, 429 and 5xx
        answers; other methods are sent once (their callers restart whole operations).

        Raises:
            RegistryUnavailable: The registry is unreachable (``registry.unreachable``) or
                answered with a server error or 429 (``registry.http_error``), after the
                retries for GET and HEAD.
            RegistryAuthError: The registry refused the credentials.
        """
        attempts = self.retry.attempts if method in _IDEMPOTENT else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._request_once(
                    method, url, headers=headers, content=content, stream=stream
                )
            except _TransientStatusError as failure:
                response = failure.response
                if attempt == attempts:
                    raise RegistryUnavailable(
                        f"{self.reference.registry} answered HTTP {response.status_code} "
                        f"to {method} {response.request.url.path}"
                        + (f" ({attempt} tries)" if attempt > 1 else ""),
                        code="registry.http_error",
                        details={"status": response.status_code, "attempts": attempt},
                    ) from None
                header = response.headers.get("Retry-After")
                wait = self.retry.delay(attempt, header, now=self._clock())
            except RegistryUnavailable as error:
                if error.code == "registry.tls_error" or attempt == attempts:
                    raise
                wait = self.retry.delay(attempt)
            _log.debug("retrying %s %s in %.1f s", method, httpx.URL(str(url)).path, wait)
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover (the loop returns or raises)

    def _request_once(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: dict[str, str] | None,
        content: bytes | Iterator[bytes] | None,
        stream: bool,
    ) -> httpx.Response:
        """Send a request once (answering one authentication challenge).

        Raises:
            RegistryUnavailable: The registry is unreachable.
            RegistryAuthError: The registry refused the credentials.
            _TransientStatusError: It answered 429 or a server error (the response is closed).
        """
        if self._probe_tls:
            self._choose_scheme()
        replayable = content is None or isinstance(content, bytes)
        for attempt in (1, 2):
            try:
                request = self._client.build_request(
                    method, url, headers=dict(headers or {}), content=content
                )
                same_origin = self._same_origin(request.url)
                if self._authorization and same_origin:
                    request.headers["Authorization"] = self._authorization
                response = self._client.send(request, stream=stream)
            except httpx.HTTPError as exc:
                tls = _is_certificate_error(exc)
                raise RegistryUnavailable(
                    f"registry {self.reference.registry} is unreachable: {exc}",
                    code="registry.tls_error" if tls else "registry.unreachable",
                    details={"registry": self.reference.registry},
                ) from None
            if response.status_code != 401:
                break
            response.close()
            if attempt == 2 or not replayable or not same_origin:
                raise RegistryAuthError(
                    f"{self.reference.registry} refused the credentials for {self.repository}",
                    hint="check the credentials and their rights on this repository",
                )
            self._answer_challenge(response)
        if response.status_code == 403:
            response.close()
            raise RegistryAuthError(
                f"{self.reference.registry} denied access to {self.repository} (HTTP 403)",
                code="registry.auth_failed",
            )
        if response.status_code >= 500 or response.status_code == 429:
            response.close()
            raise _TransientStatusError(response)
        return response

    def path(self, kind: str, ref: str) -> str:
        """Return the API path of ``kind`` (manifests, blobs) ``ref`` in the repository."""
        return f"/v2/{self.repository}/{kind}/{ref}"

    def head_blob(self, digest: str) -> bool:
        """Return whether the repository has blob ``digest``.

        Raises:
            RegistryUnavailable: The registry is unreachable or failed.
            RegistryAuthError: Access was refused.
        """
        response = self.request("HEAD", self.path("blobs", check_digest(digest)))
        response.close()
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise _unexpected(response, "HEAD blob")

    def __enter__(self) -> Self:
        """Return the client itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the client."""
        self.close()


def _error_codes(response: httpx.Response) -> list[str]:
    try:
        doc = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    return [str(e.get("code")) for e in errors if isinstance(e, dict)]


def _unexpected(response: httpx.Response, what: str) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"unexpected HTTP {response.status_code} from the registry for {what}",
        code="registry.http_error",
        details={"status": response.status_code},
    )


class RegistrySource(BaseImageSource):
    """Read an image from a registry."""

    def __init__(self, reference: RegistryReference, client: RegistryClient) -> None:
        """Read ``reference`` through ``client`` (owned: closed with the source)."""
        super().__init__()
        self.reference = reference
        self.client = client

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.close()

    def _top_level(self) -> tuple[bytes, str | None]:
        ref = self.reference.reference
        response = self.client.request(
            "GET", self.client.path("manifests", ref), headers={"Accept": _ACCEPT}, stream=True
        )
        try:
            if response.status_code == 404:
                raise ImageError(f"{self.reference} was not found", code="image.not_found")
            if response.status_code != 200:
                raise _unexpected(response, "GET manifest")
            raw = b""
            for chunk in response.iter_raw(CHUNK_SIZE):
                raw += chunk
                if len(raw) > MAX_MANIFEST_SIZE:
                    raise ImageError(
                        f"the manifest of {self.reference} exceeds {MAX_MANIFEST_SIZE} bytes",
                        code="image.malformed",
                    )
        except httpx.TransportError as exc:
            raise RegistryUnavailable(
                f"the manifest download from {self.reference.registry} broke: {exc}",
                code="registry.unreachable",
            ) from None
        finally:
            response.close()
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip() or None
        expected = self.reference.digest or response.headers.get("Docker-Content-Digest")
        if expected:
            check_digest(expected, "manifest digest")
            actual = digest_of(raw, expected.partition(":")[0])
            if actual != expected:
                raise ImageError(
                    f"the manifest of {self.reference} has digest {actual}, expected {expected}",
                    code="image.digest_mismatch",
                )
        return raw, media_type if media_type in ALL_MANIFEST_MEDIA_TYPES else None

    def _open(
        self, kind: str, descriptor: Descriptor, progress: ProgressCallback | None
    ) -> BlobReader:
        headers = {"Accept": descriptor.media_type} if kind == "manifests" else None
        response = self.client.request(
            "GET", self.client.path(kind, descriptor.digest), headers=headers, stream=True
        )
        if response.status_code != 200:
            response.close()
            if response.status_code == 404:
                raise ImageError(
                    f"{kind[:-1]} {descriptor.digest} was not found in {self.reference}",
                    code="image.not_found",
                )
            raise _unexpected(response, f"GET {kind[:-1]}")
        body = _ResumableBody(self.client, self.client.path(kind, descriptor.digest), response)
        return BlobReader(
            _coalesced(iter(body), CHUNK_SIZE), descriptor, on_close=body.close, progress=progress
        )

    def _manifest_bytes(self, descriptor: Descriptor) -> bytes:
        if descriptor.size > MAX_MANIFEST_SIZE:
            raise ImageError(f"manifest {descriptor.digest} is too large", code="image.malformed")
        with self._open("manifests", descriptor, None) as reader:
            return reader.readall()

    def open_blob(
        self, descriptor: Descriptor, *, progress: ProgressCallback | None = None
    ) -> BlobReader:
        """Open a streamed, verified download of a blob.

        Raises:
            ImageError: The blob does not exist (``image.not_found``).
            RegistryUnavailable: The registry is unreachable or failed.
            RegistryAuthError: Access was refused.
        """
        return self._open("blobs", descriptor, progress)

    def blob_exists(self, digest: str) -> bool:
        """Return whether the repository has blob ``digest``.

        Raises:
            RegistryUnavailable: The registry is unreachable or failed.
            RegistryAuthError: Access was refused.
        """
        return self.client.head_blob(digest)


class _ResumableBody:
    """The body of a blob download that resumes with a ``Range`` request when it breaks.

    A connection that fails mid-way is re-opened (per the client's :class:`RetryPolicy`) asking
    for the bytes not received yet. A ``206`` answer must start exactly there; a registry that
    ignores ``Range`` answers ``200`` with the whole blob, whose first bytes are skipped. The
    blob's digest is checked over everything yielded, whichever connection delivered it.
    """

    def __init__(self, client: RegistryClient, path: str, response: httpx.Response) -> None:
        self._client = client
        self._path = path
        self._response: httpx.Response | _PrefixedResponse = response
        self._offset = 0

    def close(self) -> None:
        """Close the current response."""
        self._response.close()

    def __iter__(self) -> Iterator[bytes]:
        """Yield the body's bytes, resuming after broken connections.

        Raises:
            RegistryUnavailable: The download broke more often than the policy allows, or a
                resumed request failed.
            RegistryAuthError: Access was refused when resuming.
        """
        policy = self._client.retry
        attempt = 1
        while True:
            try:
                for part in self._response.iter_raw():
                    self._offset += len(part)
                    yield part
            except httpx.TransportError as exc:
                self._response.close()
                if attempt >= policy.attempts:
                    raise RegistryUnavailable(
                        f"the download of {self._path} broke after {self._offset} bytes: {exc}",
                        code="registry.unreachable",
                        details={"attempts": attempt},
                    ) from None
            else:
                return
            self._client._sleep(policy.delay(attempt))  # noqa: SLF001 (the client's own wait)
            attempt += 1
            if not self._resume():
                return

    def _resume(self) -> bool:
        """Ask for the rest of the blob; position the new response at :attr:`_offset`.

        Returns:
            False when there is nothing more to read: the registry answered 416 (the connection
            broke after the last byte); the reader's size and digest checks decide the rest.

        Raises:
            RegistryUnavailable: The answer is neither the rest (206) nor the whole blob (200).
        """
        response = self._client.request(
            "GET", self._path, headers={"Range": f"bytes={self._offset}-"}, stream=True
        )
        self._response = response
        if response.status_code == 416 and self._offset > 0:
            response.close()
            return False
        if response.status_code == 206:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ")
            if start.partition("-")[0].strip() == str(self._offset):
                return True
        elif response.status_code == 200:
            skip = self._offset
            raw = response.iter_raw()
            while skip > 0:
                part = next(raw, b"")
                if not part:
                    break
                if len(part) > skip:
                    # Hand the rest of this part out first, then the rest of the stream.
                    rest = part[skip:]
                    self._response = _PrefixedResponse(response, rest, raw)
                    return True
                skip -= len(part)
            if skip == 0:
                self._response = _PrefixedResponse(response, b"", raw)
                return True
        response.close()
        raise _unexpected(response, "resumed blob download")


class _PrefixedResponse:
    """A response whose raw body starts with bytes already taken from its iterator."""

    def __init__(self, response: httpx.Response, first: bytes, rest: Iterator[bytes]) -> None:
        self._response = response
        self._first = first
        self._rest = rest

    def iter_raw(self) -> Iterator[bytes]:
        """Yield the held bytes, then the rest of the body."""
        if self._first:
            yield self._first
        yield from self._rest

    def close(self) -> None:
        """Close the response."""
        self._response.close()


def _coalesced(parts: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Yield ``parts`` joined into chunks of at least ``size`` bytes (the last may be shorter).

    httpx hands out a response body as the socket delivers it (64 KiB at a time); consumers
    work per chunk, so fewer, larger chunks cost less. Joining copies each byte once (httpx's
    own ``iter_raw(chunk_size)`` re-buffers and copies several times, which profiling showed).
    """
    held: list[bytes] = []
    count = 0
    for part in parts:
        held.append(part)
        count += len(part)
        if count >= size:
            yield held[0] if len(held) == 1 else b"".join(held)
            held.clear()
            count = 0
    if count:
        yield b"".join(held)


def _rewind_point(stream: IO[bytes] | BlobReader) -> int | None:
    """Return where a restarted upload reads ``stream`` from again, None if it cannot.

    A verifying :class:`BlobReader` (a download from another store) cannot be read twice; a
    seekable file or buffer can.
    """
    if isinstance(stream, BlobReader) or not isinstance(stream, io.IOBase):
        return None
    try:
        return stream.tell() if stream.seekable() else None
    except (OSError, ValueError):
        return None


def _limited(reader: BlobReader, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        chunk = reader.read(min(left, CHUNK_SIZE))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


class RegistrySink(Closing):
    """Write an image to a registry.

    Attributes:
        chunk_size: Blobs up to this size go in one PUT; larger ones in PATCH chunks this big.
        stats: Counters of what was uploaded, mounted or skipped (for progress and tests).
    """

    def __init__(
        self,
        reference: RegistryReference,
        client: RegistryClient,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        """Write to ``reference`` through ``client`` (owned: closed with the sink).

        Raises:
            sanctum.errors.UsageError: ``chunk_size`` is not positive.
        """
        if chunk_size <= 0:
            raise UsageError("the upload chunk size must be positive", code="usage.invalid")
        self.reference = reference
        self.client = client
        self.chunk_size = chunk_size
        self.stats: dict[str, int] = {"uploaded": 0, "chunks": 0, "mounted": 0}
        self._stats_lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.close()

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def has_blob(self, digest: str) -> bool:
        """Return whether the repository already has blob ``digest``.

        Raises:
            RegistryUnavailable: The registry is unreachable or failed.
            RegistryAuthError: Access was refused.
        """
        return self.client.head_blob(digest)

    def _start_upload(self) -> str:
        response = self.client.request("POST", f"/v2/{self.client.repository}/blobs/uploads/")
        response.close()
        if response.status_code != 202 or "Location" not in response.headers:
            raise _unexpected(response, "starting a blob upload")
        return response.headers["Location"]

    def _cancel(self, location: str) -> None:
        try:
            self.client.request("DELETE", location).close()
        except (RegistryUnavailable, RegistryAuthError) as exc:
            # The query of an upload URL may hold a signed session state: log the path only.
            _log.debug("could not cancel upload %s: %s", httpx.URL(location).path, exc.code)

    def _check(self, response: httpx.Response, expected: int, what: str) -> None:
        if response.status_code == expected:
            return
        response.read()
        codes = _error_codes(response)
        if "DIGEST_INVALID" in codes or "SIZE_INVALID" in codes:
            raise ImageError(
                f"the registry rejected the {what}: content does not match its digest",
                code="image.digest_mismatch",
            )
        if "MANIFEST_BLOB_UNKNOWN" in codes or "BLOB_UNKNOWN" in codes:
            raise ImageError(
                f"the registry rejected the {what}: it references unknown blobs",
                code="image.incomplete",
            )
        if "MANIFEST_INVALID" in codes:
            raise ImageError(f"the registry rejected the {what} as invalid", code="image.malformed")
        if "BLOB_UPLOAD_UNKNOWN" in codes or (response.status_code == 404 and what != "manifest"):
            # The registry lost the upload session (restarted, or expired it): transient.
            raise RegistryUnavailable(
                f"the registry lost the upload session during the {what}",
                code="registry.upload_lost",
                details={"status": response.status_code},
            )
        raise _unexpected(response, what)

    def put_blob(
        self,
        descriptor: Descriptor,
        stream: IO[bytes] | BlobReader,
        *,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Upload a blob (monolithic up to ``chunk_size``, chunked above), verified on the way.

        Nothing is committed unless the streamed bytes match ``descriptor``: the final ``PUT``
        is sent only after the local digest check, and the registry checks again.

        Raises:
            ImageError: The bytes do not match ``descriptor`` (``image.digest_mismatch``).
            RegistryUnavailable: The registry is unreachable or failed.
            RegistryAuthError: Access was refused.
        """
        start = _rewind_point(stream)
        policy = self.client.retry
        attempt = 1
        while True:
            reader = verifying_reader(stream, descriptor, progress)
            try:
                self._upload_once(descriptor, reader)
                break
            except RegistryUnavailable as error:
                # A transient failure (or a lost session): start again from the first byte,
                # in a new session, when the content can be read again or was not read yet
                # (the session could not be opened).
                untouched = reader.bytes_read == 0
                if not is_transient(error) or attempt >= policy.attempts:
                    raise
                if start is None and not untouched:
                    raise
                wait = policy.delay(attempt)
                _log.debug("restarting the upload of %s in %.1f s", descriptor.digest, wait)
                self.client._sleep(wait)  # noqa: SLF001 (the client's own waiting function)
                if start is not None:
                    stream.seek(start)
                attempt += 1
        self._count("uploaded")

    def _upload_once(self, descriptor: Descriptor, reader: BlobReader) -> None:
        """Upload ``reader`` in one new session (cancelled when anything fails).

        Raises:
            ImageError: The bytes do not match the descriptor.
            RegistryUnavailable: The registry failed or lost the session.
            RegistryAuthError: Access was refused.
        """
        location = self._start_upload()
        try:
            if descriptor.size <= self.chunk_size:
                url = httpx.URL(location).copy_add_param("digest", descriptor.digest)
                response = self.client.request(
                    "PUT",
                    url,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(descriptor.size),
                    },
                    content=reader.chunks(),
                )
                response.close()
                self._check(response, 201, "blob upload")
            else:
                self._put_chunked(descriptor, reader, location)
        except BaseException:
            self._cancel(location)
            raise

    def _put_chunked(self, descriptor: Descriptor, reader: BlobReader, location: str) -> None:
        offset = 0
        while offset < descriptor.size:
            length = min(self.chunk_size, descriptor.size - offset)
            response = self.client.request(
                "PATCH",
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                content=_limited(reader, length),
            )
            response.close()
            self._check(response, 202, "blob chunk")
            location = response.headers.get("Location", location)
            offset += length
            self._count("chunks")
        reader.finish()
        url = httpx.URL(location).copy_add_param("digest", descriptor.digest)
        response = self.client.request("PUT", url, headers={"Content-Length": "0"}, content=b"")
        response.close()
        self._check(response, 201, "blob upload")

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Link blob ``digest`` from ``from_repository`` on the same registry.

        Returns:
            True when the registry mounted it; False when it declined (the caller uploads).

        Raises:
            RegistryUnavailable: The registry is unreachable or failed.
            RegistryAuthError: Access was refused.
        """
        self.client.add_scope(f"repository:{from_repository}:pull")
        url = httpx.URL(f"/v2/{self.client.repository}/blobs/uploads/").copy_merge_params(
            {"mount": check_digest(digest), "from": from_repository}
        )
        policy = self.client.retry
        attempt = 1
        while True:
            try:
                response = self.client.request("POST", url)
                break
            except RegistryUnavailable as error:
                # No body and no state yet: asking again is safe.
                if not is_transient(error) or attempt >= policy.attempts:
                    raise
                self.client._sleep(policy.delay(attempt))  # noqa: SLF001
                attempt += 1
        response.close()
        if response.status_code == 201:
            self._count("mounted")
            return True
        if response.status_code == 202 and "Location" in response.headers:
            self._cancel(response.headers["Location"])
            return False
        raise _unexpected(response, "blob mount")

    def put_manifest(self, manifest_bytes: bytes, media_type: str, tag: str | None = None) -> str:
        """Upload the exact manifest bytes and return their digest.

        ``tag`` defaults to the reference's tag; with neither, the manifest is pushed by digest.

        Raises:
            ImageError: The manifest is malformed, or the registry rejected it.
            RegistryUnavailable: The registry is unreachable or failed.
            RegistryAuthError: Access was refused.
        """
        parsed = parse_manifest_or_index(manifest_bytes, media_type)
        response = self.client.request(
            "PUT",
            self.client.path("manifests", tag or self.reference.tag or parsed.digest),
            headers={"Content-Type": parsed.media_type},
            content=manifest_bytes,
        )
        response.close()
        self._check(response, 201, "manifest")
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != parsed.digest:
            raise ImageError(
                f"the registry stored the manifest as {echoed}, not {parsed.digest}",
                code="image.digest_mismatch",
            )
        return parsed.digest
