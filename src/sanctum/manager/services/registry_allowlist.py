"""Which hosts the manager's conversions may contact: an allowlist of ``host[:port]`` patterns.

A conversion job makes the manager itself fetch from and push to registries named in an API
request. Without a limit, anyone with the editor role could point the manager at any address it
can reach (an internal service, a cloud metadata endpoint): a server-side request forgery. The
``converter_registry_allowlist`` setting therefore names the hosts server-side conversions may
contact; it is empty in production (conversions need explicit configuration) and allows the
loopback registries in the ``dev`` profile (``sanctum demo``). See ADR 0076.

The check happens twice, always before any network I/O:

- when a conversion is requested and when its job starts, on the registry of each image
  reference (:meth:`RegistryAllowlist.check_registry`), so a refusal is a clear, typed error
  (``conversion.registry_not_allowed``) before anything is queued or opened;
- on **every HTTP request** the registry client sends, by :class:`AllowlistTransport`, an httpx
  transport that wraps the real one. Redirects (a blob served from a storage host), upload
  ``Location`` URLs and the bearer-token realm a registry names in its ``WWW-Authenticate``
  challenge all pass through it, so none of them can reach a host off the allowlist: a
  registry's token server or blob storage host must be listed too.

Patterns (see :func:`parse_host_pattern`): ``registry.example.com`` (the scheme's default port
only), ``registry.example.com:5000``, ``registry.example.com:*`` (any port),
``*.example.com`` (any sub-domain, not the apex), ``10.1.2.3:5000``, ``[fd00::1]:5000``.
Matching is on the host as written in the URL, lower-cased, in ASCII (IDNA) form: a name is not
resolved, so an allowed name that resolves to an internal address is the operator's choice.
Because the registry client gets an explicit transport, httpx does not apply the environment's
``HTTP(S)_PROXY`` variables to conversions: they connect directly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import httpx

from sanctum.errors import PermissionDeniedError

__all__ = [
    "LOOPBACK_PATTERNS",
    "AllowlistTransport",
    "HostPattern",
    "RegistryAllowlist",
    "RegistryNotAllowedError",
    "parse_host_pattern",
]

#: The patterns the ``dev`` profile allows by default: registries on this machine only.
LOOPBACK_PATTERNS: Final = ("localhost:*", "127.0.0.1:*", "[::1]:*")
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HINT: Final = (
    "add the host (and the hosts of its token server and blob storage, if any) to the "
    "converter_registry_allowlist setting of the manager"
)


class RegistryNotAllowedError(PermissionDeniedError):
    """A conversion would contact a host that is not on the registry allowlist."""

    default_code = "conversion.registry_not_allowed"


def _host_text(host: str) -> str:
    """Return ``host`` as matched: lower case, no trailing dot, IPv6 without brackets."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _valid_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
    return True


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One allowlist entry.

    Attributes:
        host: Lower-case host name or IP address (IPv6 without brackets); with ``wildcard``,
            the domain whose sub-domains match.
        wildcard: The pattern was ``*.host``: any sub-domain of ``host`` matches (not ``host``).
        port: The port that matches, or ``None`` for the scheme's default port (443 or 80).
        any_port: The pattern ended in ``:*``: every port matches.
    """

    host: str
    wildcard: bool = False
    port: int | None = None
    any_port: bool = False

    def matches(self, host: str, port: int | None) -> bool:
        """Return whether ``host`` (as :func:`_host_text` gives it) and ``port`` match.

        ``port`` is ``None`` for the scheme's default port.
        """
        if self.wildcard:
            if not host.endswith("." + self.host):
                return False
        elif host != self.host:
            return False
        return self.any_port or port == self.port

    def __str__(self) -> str:
        """Return the pattern as written in the settings (normalised)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"*.{host}" if self.wildcard else host
        if self.any_port:
            return f"{text}:*"
        return text if self.port is None else f"{text}:{self.port}"


def parse_host_pattern(text: str) -> HostPattern:
    """Parse one ``host[:port]`` pattern of the allowlist.

    Raises:
        ValueError: Not a valid pattern (``*`` alone is refused: it would allow every host,
            internal ones included).
    """
    raw = text.strip().lower()
    if raw in {"*", "*:*"}:
        msg = "'*' would allow every host, internal ones included: list the registries"
        raise ValueError(msg)
    port_text: str | None = None
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            msg = f"registry pattern {text!r}: unclosed '['"
            raise ValueError(msg)
        host, rest = raw[: end + 1], raw[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                msg = f"registry pattern {text!r}: expected ':port' after ']'"
                raise ValueError(msg)
            port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    elif ":" in raw:
        msg = f"registry pattern {text!r}: write IPv6 addresses in brackets ([::1]:5000)"
        raise ValueError(msg)
    else:
        host = raw
    wildcard = host.startswith("*.")
    host = _host_text(host[2:] if wildcard else host)
    if not host or not _valid_name(host) or (wildcard and ":" in host):
        msg = f"registry pattern {text!r}: {host!r} is not a host name or IP address"
        raise ValueError(msg)
    if port_text is None:
        return HostPattern(host, wildcard)
    if port_text == "*":
        return HostPattern(host, wildcard, any_port=True)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        msg = f"registry pattern {text!r}: the port must be 1-65535 or '*'"
        raise ValueError(msg)
    return HostPattern(host, wildcard, int(port_text))


def _url_host_port(url: httpx.URL) -> tuple[str, int | None]:
    """Return the host (ASCII form) and port (``None`` = the default) of an absolute URL."""
    host = _host_text(url.raw_host.decode("ascii", errors="replace"))
    port = url.port
    if port == {"https": 443, "http": 80}.get(url.scheme):
        port = None
    return host, port


@dataclass(frozen=True, slots=True)
class RegistryAllowlist:
    """The hosts server-side conversions may contact (pure: no I/O)."""

    patterns: tuple[HostPattern, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> RegistryAllowlist:
        """Return the allowlist of ``patterns``.

        Raises:
            ValueError: A pattern is invalid.
        """
        return cls(tuple(parse_host_pattern(p) for p in patterns))

    def allows(self, host: str, port: int | None) -> bool:
        """Return whether ``host``:``port`` (``None`` = default port) is on the allowlist."""
        host = _host_text(host)
        return any(pattern.matches(host, port) for pattern in self.patterns)

    def _refuse(self, what: str) -> RegistryNotAllowedError:
        configured = ", ".join(str(p) for p in self.patterns) or "nothing"
        return RegistryNotAllowedError(
            f"{what} is not on the manager's registry allowlist (allowed: {configured})",
            hint=_HINT,
        )

    def check_registry(self, registry: str, *, field: str) -> None:
        """Refuse a registry (``host[:port]`` as written in an image reference).

        Raises:
            RegistryNotAllowedError: It is not allowed (``conversion.registry_not_allowed``).
        """
        try:
            host, port = _url_host_port(httpx.URL(f"https://{registry}/"))
        except (httpx.InvalidURL, ValueError):
            raise self._refuse(f"the registry of {field} ({registry})") from None
        if not self.allows(host, port):
            raise self._refuse(f"the registry of {field} ({registry})")

    def check_url(self, url: httpx.URL) -> None:
        """Refuse a URL the registry client is about to request.

        Raises:
            RegistryNotAllowedError: Its host is not allowed, or it is not http(s)
                (``conversion.registry_not_allowed``).
        """
        host, port = _url_host_port(url)
        if url.scheme not in {"http", "https"} or not self.allows(host, port):
            # The path and query of a URL may carry signed tokens: name the origin only.
            shown = f"[{host}]" if ":" in host else host
            shown = f"{shown}:{port}" if port is not None else shown
            raise self._refuse(f"a request to {url.scheme}://{shown}")


class AllowlistTransport(httpx.BaseTransport):
    """An httpx transport that refuses requests off the allowlist before they are sent.

    Every request of an httpx client goes through its transport, redirects included, so no
    redirect, upload location or token realm can lead the registry client elsewhere.
    """

    def __init__(self, inner: httpx.BaseTransport, allowlist: RegistryAllowlist) -> None:
        """Guard ``inner`` (owned: closed with this transport) with ``allowlist``."""
        self._inner = inner
        self._allowlist = allowlist

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` if its host is allowed.

        Raises:
            RegistryNotAllowedError: The host is not allowed; nothing was sent.
        """
        self._allowlist.check_url(request.url)
        return self._inner.handle_request(request)

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()
