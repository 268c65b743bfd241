"""Intel PCS API v4 / PCCS client with an on-disk and in-memory cache.

Verification needs four pieces of Intel collateral per quote: the TCB info of the platform's
FMSPC, the QE identity, the PCK CRL of the CA that issued the PCK certificate, and the root CA
CRL. This module fetches them from Intel's Provisioning Certification Service (PCS) or from a
PCCS (the caching service a production site normally runs), derives the requests from the quote
(SGX or TDX endpoints, FMSPC and CA type from the PCK certificate), reads the issuer chains from
the response headers, and turns the responses into
:class:`~sanctum.attestation.collateral.Collateral` with
:func:`~sanctum.attestation.collateral.collateral_from_pcs` (which keeps the exact signed text;
nothing is re-serialised here).

Availability rules (see ``docs/adr/0041-pcs-client-and-collateral-cache.md``):

- Every resource is cached by URL, in memory and (optionally) on disk, together with the time it
  was fetched and the ``nextUpdate`` it declares. An entry is *fresh* while it is younger than
  ``CachePolicy.max_age`` and ``nextUpdate`` is more than ``CachePolicy.refresh_margin`` away;
  fresh entries are used without a request, so refreshes happen before ``nextUpdate``.
- A stale entry is refreshed. When the refresh fails and the entry is still valid
  (``now < nextUpdate``) it is used and the result says so (``stale``); when it has expired the
  fetch fails with ``collateral.expired_cache``.
- A response older than the cached copy (earlier ``nextUpdate``) never replaces it, so a lagging
  or replaying PCCS cannot roll collateral back (for example to before a TCB recovery).
- Requests have a timeout and bounded retries with exponential backoff (server errors, 429 and
  transport errors only); ``sleep`` and ``now`` are injected, so tests neither wait nor depend
  on the clock.

Nothing here judges the collateral: signatures, validity windows and TCB levels are checked by
:mod:`sanctum.attestation`. Cached entries are only reused, never trusted more than the verifier
trusts a fresh download.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal, Self

import httpx
from cryptography import x509

from sanctum import __version__
from sanctum.attestation.collateral import (
    Collateral,
    collateral_from_pcs,
    extract_signed_body,
    normalize_crl,
    normalize_pem_chain,
)
from sanctum.attestation.pck import parse_pck_extensions, pck_ca_type
from sanctum.attestation.quote import Quote, TeeType
from sanctum.errors import EvidenceError, UsageError
from sanctum.platforms.errors import CollateralUnavailableError

__all__ = [
    "API_KEY_HEADER",
    "INTEL_PCS_URL",
    "INTEL_ROOT_CA_CRL_URL",
    "CachePolicy",
    "CollateralFetch",
    "PcsClient",
    "PcsCollateralSource",
    "PcsEndpoints",
    "PcsRequest",
    "ResourceStatus",
    "RetryPolicy",
    "pcs_request_for_quote",
]

_log = logging.getLogger(__name__)

#: Intel's PCS (production); a PCCS URL is the usual alternative.
INTEL_PCS_URL: Final = "https://api.trustedservices.intel.com"
#: Where Intel publishes the SGX Root CA CRL (the CRL distribution point of the root).
INTEL_ROOT_CA_CRL_URL: Final = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
#: Header carrying the PCS subscription key (needed by Intel's PCS for some endpoints).
API_KEY_HEADER: Final = "Ocp-Apim-Subscription-Key"

ResourceKind = Literal["tcb_info", "qe_identity", "pck_crl", "root_ca_crl"]
CaType = Literal["processor", "platform"]
PcsTee = Literal["sgx", "tdx"]

# Response headers carrying URL-encoded PEM issuer chains (v4 name first, v3 name second).
_CHAIN_HEADERS: Final[dict[ResourceKind, tuple[str, ...]]] = {
    "tcb_info": ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"),
    "qe_identity": ("SGX-Enclave-Identity-Issuer-Chain", "Enclave-Identity-Issuer-Chain"),
    "pck_crl": ("SGX-PCK-CRL-Issuer-Chain",),
    "root_ca_crl": (),
}
_KINDS: Final[tuple[ResourceKind, ...]] = ("tcb_info", "qe_identity", "pck_crl", "root_ca_crl")
_SIGNED_KEYS: Final[dict[ResourceKind, str]] = {
    "tcb_info": "tcbInfo",
    "qe_identity": "enclaveIdentity",
}
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_CACHE_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class PcsRequest:
    """What to fetch for one quote.

    Attributes:
        tee: ``sgx`` or ``tdx`` (selects the TCB info and QE identity endpoints).
        fmspc: The platform's FMSPC, 12 hex digits (stored in lowercase).
        ca: Which PCK CA issued the PCK certificate (selects the PCK CRL).
    """

    tee: PcsTee
    fmspc: str
    ca: CaType

    def __post_init__(self) -> None:
        """Check and normalise the fields.

        Raises:
            UsageError: ``collateral.bad_request`` for an unknown TEE/CA or a malformed FMSPC.
        """
        fmspc = self.fmspc.lower()
        if len(fmspc) != 12 or any(c not in "0123456789abcdef" for c in fmspc):
            raise UsageError(
                f"FMSPC {self.fmspc!r} is not 12 hex digits", code="collateral.bad_request"
            )
        if self.tee not in ("sgx", "tdx") or self.ca not in ("processor", "platform"):
            raise UsageError(
                f"unsupported collateral request tee={self.tee!r} ca={self.ca!r}",
                code="collateral.bad_request",
            )
        object.__setattr__(self, "fmspc", fmspc)


def pcs_request_for_quote(quote: Quote) -> PcsRequest:
    """Derive the PCS request for ``quote`` from its TEE type and embedded PCK certificate.

    Raises:
        EvidenceError: The quote carries no PCK chain (``quote.pck_chain_missing``) or the
            PCK certificate is unreadable (``pck.*`` codes).
    """
    chain = quote.signature.qe.certification.pck_chain_pem()
    try:
        leaf = x509.load_pem_x509_certificate(chain[0])
    except ValueError as error:
        raise EvidenceError(
            f"the PCK certificate in the quote cannot be read: {error}", code="pck.malformed"
        ) from error
    extensions = parse_pck_extensions(leaf)
    tee: PcsTee = "tdx" if quote.tee == TeeType.TDX else "sgx"
    return PcsRequest(tee=tee, fmspc=extensions.fmspc.hex(), ca=pck_ca_type(leaf))


def _same_origin(url: str, base: str) -> bool:
    """Return whether ``url`` has the scheme, host and port of ``base``."""
    ports = {"http": 80, "https": 443}
    one, two = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (one.scheme, one.hostname, one.port or ports.get(one.scheme)) == (
        two.scheme,
        two.hostname,
        two.port or ports.get(two.scheme),
    )


@dataclass(frozen=True, slots=True)
class PcsEndpoints:
    """URLs of a PCS or PCCS (PCS API v4 paths).

    Attributes:
        base_url: ``https://api.trustedservices.intel.com`` or a PCCS such as
            ``https://pccs.example:8081``.
        root_ca_crl_url: Where to get the root CA CRL. ``None`` picks Intel's distribution
            point for Intel's PCS and ``<base>/sgx/certification/v4/rootcacrl`` for a PCCS.
    """

    base_url: str = INTEL_PCS_URL
    root_ca_crl_url: str | None = None

    def __post_init__(self) -> None:
        """Check the URLs.

        Raises:
            UsageError: ``collateral.bad_url`` when a URL is not http(s) with a host.
        """
        for url in (self.base_url, self.root_ca_crl_url):
            if url is None:
                continue
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise UsageError(
                    f"{url!r} is not an http(s) URL with a host", code="collateral.bad_url"
                )
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def url(self, kind: ResourceKind, request: PcsRequest) -> str:
        """Return the URL of one resource for ``request``."""
        base = self.base_url
        if kind == "tcb_info":
            return f"{base}/{request.tee}/certification/v4/tcb?fmspc={request.fmspc}"
        if kind == "qe_identity":
            return f"{base}/{request.tee}/certification/v4/qe/identity"
        if kind == "pck_crl":
            return f"{base}/sgx/certification/v4/pckcrl?ca={request.ca}&encoding=der"
        if self.root_ca_crl_url is not None:
            return self.root_ca_crl_url
        if urllib.parse.urlsplit(base).hostname == urllib.parse.urlsplit(INTEL_PCS_URL).hostname:
            return INTEL_ROOT_CA_CRL_URL
        return f"{base}/sgx/certification/v4/rootcacrl"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff.

    Attributes:
        attempts: Requests per resource at most (1 = no retry).
        backoff: Seconds before the first retry; doubled each time.
        max_backoff: Upper bound of one wait (also caps ``Retry-After``).
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, retry: int, retry_after: str | None) -> float:
        """Return how long to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after.strip()), self.max_backoff)
        wait: float = self.backoff * float(2**retry)
        return min(wait, self.max_backoff)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """When cached resources are refreshed.

    Attributes:
        max_age: Refresh entries older than this, even if ``nextUpdate`` is far (Intel
            updates TCB info and CRLs between ``nextUpdate`` dates, for example for a TCB
            recovery).
        refresh_margin: Refresh entries this long before their ``nextUpdate``.
    """

    max_age: timedelta = timedelta(hours=24)
    refresh_margin: timedelta = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """Where one piece of collateral came from.

    Attributes:
        kind: ``tcb_info``, ``qe_identity``, ``pck_crl`` or ``root_ca_crl``.
        url: The URL it is fetched from.
        fetched_at: When it was downloaded.
        next_update: The ``nextUpdate`` it declares.
        from_cache: True when no request was made or the request failed.
        stale: True when a refresh was due but failed and the cached copy was used.
        refresh_error: The code of the failed refresh (``collateral.unreachable``…) when
            stale, or ``collateral.rollback`` when the service served an older issue than the
            cached one (which is kept).
    """

    kind: ResourceKind
    url: str
    fetched_at: datetime
    next_update: datetime
    from_cache: bool
    stale: bool = False
    refresh_error: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form used by ``sanctum collateral fetch --json``."""
        out: dict[str, object] = {
            "kind": self.kind,
            "url": self.url,
            "fetched_at": self.fetched_at.isoformat(),
            "next_update": self.next_update.isoformat(),
            "from_cache": self.from_cache,
            "stale": self.stale,
        }
        if self.refresh_error:
            out["refresh_error"] = self.refresh_error
        return out


@dataclass(frozen=True, slots=True)
class CollateralFetch:
    """Collateral for one quote and where each part came from.

    Attributes:
        request: What was fetched.
        collateral: The collateral, unverified.
        resources: One status per resource.
    """

    request: PcsRequest
    collateral: Collateral
    resources: tuple[ResourceStatus, ...]

    @property
    def stale(self) -> bool:
        """Return whether any part is a cached copy that could not be refreshed."""
        return any(resource.stale for resource in self.resources)

    @property
    def next_update(self) -> datetime:
        """Return the earliest ``nextUpdate`` of all parts (when the set must be refreshed)."""
        return min(resource.next_update for resource in self.resources)

    def to_dict(self) -> dict[str, object]:
        """Return the JSON summary of the fetch."""
        return {
            "tee": self.request.tee,
            "fmspc": self.request.fmspc,
            "ca": self.request.ca,
            "stale": self.stale,
            "next_update": self.next_update.isoformat(),
            "resources": [resource.to_dict() for resource in self.resources],
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    """One cached response: its body, its issuer chain header and its validity."""

    url: str
    body: bytes
    issuer_chain: str | None
    fetched_at: datetime
    next_update: datetime

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": _CACHE_FORMAT,
                "url": self.url,
                "body": base64.b64encode(self.body).decode("ascii"),
                "issuer_chain": self.issuer_chain,
                "fetched_at": self.fetched_at.isoformat(),
                "next_update": self.next_update.isoformat(),
            },
            indent=1,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> _Entry:
        """Parse a cache file.

        Raises:
            ValueError: The file is not a cache entry of this format.
        """
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("format") != _CACHE_FORMAT:
            msg = "not a collateral cache entry"
            raise ValueError(msg)
        chain = document["issuer_chain"]
        return cls(
            url=str(document["url"]),
            body=base64.b64decode(document["body"], validate=True),
            issuer_chain=chain if isinstance(chain, str) else None,
            fetched_at=_aware(datetime.fromisoformat(document["fetched_at"])),
            next_update=_aware(datetime.fromisoformat(document["next_update"])),
        )


def _aware(moment: datetime) -> datetime:
    """Return ``moment`` with UTC attached if it has no time zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _Cache:
    """In-memory cache of responses, written through to a directory when one is given."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._memory: dict[str, _Entry] = {}

    def _path(self, url: str) -> Path | None:
        if self._directory is None:
            return None
        return self._directory / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")

    def get(self, url: str) -> _Entry | None:
        entry = self._memory.get(url)
        if entry is not None:
            return entry
        path = self._path(url)
        if path is None or not path.is_file():
            return None
        try:
            entry = _Entry.from_json(path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError) as error:
            _log.warning("ignoring unreadable collateral cache file %s: %s", path, error)
            return None
        if entry.url != url:
            return None
        self._memory[url] = entry
        return entry

    def put(self, entry: _Entry) -> None:
        self._memory[entry.url] = entry
        path = self._path(entry.url)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_bytes(entry.to_json())
            temporary.replace(path)
        except OSError as error:
            _log.warning("cannot write collateral cache file %s: %s", path, error)


def _bad_response(url: str, problem: str) -> CollateralUnavailableError:
    return CollateralUnavailableError(
        f"{url} returned unusable collateral: {problem}",
        code="collateral.bad_response",
        hint="Check that the URL points to an Intel PCS or a PCCS (API v4).",
        details={"url": url},
    )


def _caused_by_tls(error: BaseException) -> bool:
    """Return whether ``error`` or an exception it chains to is a TLS failure."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _next_update(kind: ResourceKind, url: str, body: bytes) -> datetime:
    """Return the ``nextUpdate`` a response declares.

    Raises:
        CollateralUnavailableError: ``collateral.bad_response`` when it cannot be read.
    """
    if kind in ("tcb_info", "qe_identity"):
        key = _SIGNED_KEYS[kind]
        try:
            document = json.loads(body)
            value = document[key]["nextUpdate"]
            return _aware(datetime.fromisoformat(str(value)))
        except (ValueError, KeyError, TypeError) as error:
            raise _bad_response(url, f"no readable {key}.nextUpdate ({error})") from error
    try:
        crl = x509.load_der_x509_crl(normalize_crl(body, kind.replace("_", " ")))
    except (EvidenceError, ValueError) as error:
        raise _bad_response(url, f"not a CRL ({error})") from error
    next_update = crl.next_update_utc
    if next_update is None:
        raise _bad_response(url, "the CRL has no nextUpdate")
    return next_update


class PcsClient:
    """Fetches collateral from a PCS or PCCS, with retries and a cache.

    Args:
        endpoints: Where the service is.
        api_key: Optional PCS subscription key, sent as ``Ocp-Apim-Subscription-Key`` to
            the ``base_url`` origin only (not to another CRL host) and never across a redirect.
        timeout: Seconds for connecting and for each read.
        retry: Retry policy.
        cache_policy: When cached entries are refreshed.
        cache_dir: Directory of the on-disk cache (memory only when None).
        sleep: Called with the seconds to wait between retries (``time.sleep`` by default).
        http: An httpx client to use (one is created and owned otherwise).
        verify_tls: Verify the server's TLS certificate. False only for an explicit
            ``unsafe_skip_tls_verify`` by the caller; prefer ``tls_ca_file``.
        tls_ca_file: PEM file of the CA(s) that issued the PCCS's certificate (a PCCS installs
            with a self-signed one), used instead of the system's trust store.

    Raises:
        UsageError: ``collateral.bad_tls_option`` when ``tls_ca_file`` is given with
            ``verify_tls=False`` or cannot be loaded.
    """

    def __init__(
        self,
        endpoints: PcsEndpoints,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        cache_policy: CachePolicy | None = None,
        cache_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        http: httpx.Client | None = None,
        verify_tls: bool = True,
        tls_ca_file: Path | None = None,
    ) -> None:
        """Create a client; no request is made until :meth:`fetch`."""
        verify: bool | ssl.SSLContext = verify_tls
        if tls_ca_file is not None:
            if not verify_tls:
                raise UsageError(
                    "a TLS CA file and skipping TLS verification exclude each other",
                    code="collateral.bad_tls_option",
                )
            try:
                verify = ssl.create_default_context(cafile=str(tls_ca_file))
            except (OSError, ssl.SSLError) as error:
                raise UsageError(
                    f"cannot load the TLS CA file {tls_ca_file}: {error}",
                    code="collateral.bad_tls_option",
                ) from error
        self.endpoints = endpoints
        self._api_key = api_key
        self._retry = retry or RetryPolicy()
        self._policy = cache_policy or CachePolicy()
        self._cache = _Cache(cache_dir)
        self._sleep = sleep
        self._owns_http = http is None
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(timeout),
            verify=verify,
            follow_redirects=True,
            headers={"User-Agent": f"sanctum/{__version__}"},
        )
        self._built: dict[PcsRequest, tuple[tuple[_Entry, ...], Collateral]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP connections this client owns."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        """Return the client itself."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the client."""
        self.close()

    def fetch(self, request: PcsRequest, *, now: datetime) -> CollateralFetch:
        """Return the collateral for ``request`` as of ``now``.

        Raises:
            CollateralUnavailableError: ``collateral.unreachable`` (connection failed or timed
                out), ``collateral.http_error`` (unexpected status), ``collateral.not_found``
                (404, for example an FMSPC Intel does not know), ``collateral.unauthorized``
                (401/403, API key), ``collateral.tls_error`` (the server's certificate is not
                trusted), ``collateral.bad_response`` (a body or header is unusable) or
                ``collateral.expired_cache`` (the service failed and the cached copy is past
                its ``nextUpdate``).
        """
        now = _aware(now)
        with self._lock:
            entries: dict[ResourceKind, _Entry] = {}
            statuses: list[ResourceStatus] = []
            for kind in _KINDS:
                entry, status = self._resource(kind, self.endpoints.url(kind, request), now)
                entries[kind] = entry
                statuses.append(status)
            parts = tuple(entries[kind] for kind in _KINDS)
            built = self._built.get(request)
            if built is not None and all(a is b for a, b in zip(built[0], parts, strict=True)):
                # Same responses as last time: reuse the parsed collateral.
                collateral = built[1]
            else:
                collateral = self._build(entries)
                self._built[request] = (parts, collateral)
        return CollateralFetch(request=request, collateral=collateral, resources=tuple(statuses))

    def _build(self, entries: Mapping[ResourceKind, _Entry]) -> Collateral:
        """Turn the four responses into collateral.

        Raises:
            CollateralUnavailableError: ``collateral.bad_response``.
        """
        try:
            return collateral_from_pcs(
                tcb_info_body=entries["tcb_info"].body,
                tcb_info_issuer_chain=entries["tcb_info"].issuer_chain or "",
                qe_identity_body=entries["qe_identity"].body,
                qe_identity_issuer_chain=entries["qe_identity"].issuer_chain or "",
                pck_crl=entries["pck_crl"].body,
                pck_crl_issuer_chain=entries["pck_crl"].issuer_chain or "",
                root_ca_crl=entries["root_ca_crl"].body,
            )
        except EvidenceError as error:
            raise _bad_response(self.endpoints.base_url, error.message) from error

    def _fresh(self, entry: _Entry, now: datetime) -> bool:
        return (
            entry.fetched_at <= now < entry.fetched_at + self._policy.max_age
            and now < entry.next_update - self._policy.refresh_margin
        )

    def _resource(
        self, kind: ResourceKind, url: str, now: datetime
    ) -> tuple[_Entry, ResourceStatus]:
        """Return one resource from the cache or the service, following the cache rules.

        Raises:
            CollateralUnavailableError: The service failed and no valid cached copy exists.
        """
        cached = self._cache.get(url)
        if cached is not None and self._fresh(cached, now):
            return cached, ResourceStatus(
                kind, url, cached.fetched_at, cached.next_update, from_cache=True
            )
        try:
            entry = self._download(kind, url, now)
        except CollateralUnavailableError as error:
            if cached is None:
                raise
            if now >= cached.next_update:
                raise CollateralUnavailableError(
                    f"cannot refresh {kind.replace('_', ' ')} from {url} ({error.message}) and "
                    f"the cached copy expired at {cached.next_update.isoformat()}",
                    code="collateral.expired_cache",
                    hint="Restore access to the PCS/PCCS; expired collateral is never used.",
                    details={
                        "url": url,
                        "cause": error.code,
                        "next_update": cached.next_update.isoformat(),
                    },
                ) from error
            _log.warning(
                "using cached %s from %s fetched at %s: refresh failed (%s)",
                kind,
                url,
                cached.fetched_at.isoformat(),
                error.code,
            )
            return cached, ResourceStatus(
                kind,
                url,
                cached.fetched_at,
                cached.next_update,
                from_cache=True,
                stale=True,
                refresh_error=error.code,
            )
        if cached is not None and entry.next_update < cached.next_update:
            # The service answered with an older issue than the one already held (a PCCS that
            # lags behind, or one replaying old but still signed collateral, for example from
            # before a TCB recovery). Newer collateral is never replaced by older.
            _log.warning(
                "%s from %s declares nextUpdate %s, older than the cached %s; keeping the cached",
                kind,
                url,
                entry.next_update.isoformat(),
                cached.next_update.isoformat(),
            )
            return cached, ResourceStatus(
                kind,
                url,
                cached.fetched_at,
                cached.next_update,
                from_cache=True,
                refresh_error="collateral.rollback",
            )
        self._cache.put(entry)
        return entry, ResourceStatus(
            kind, url, entry.fetched_at, entry.next_update, from_cache=False
        )

    def _download(self, kind: ResourceKind, url: str, now: datetime) -> _Entry:
        """Download and check one resource.

        Raises:
            CollateralUnavailableError: See :meth:`fetch`.
        """
        response = self._get(url)
        chain: str | None = None
        if _CHAIN_HEADERS[kind]:
            for name in _CHAIN_HEADERS[kind]:
                value = response.headers.get(name)
                if value:
                    chain = urllib.parse.unquote(value)
                    break
            else:
                raise _bad_response(url, f"the response lacks the {_CHAIN_HEADERS[kind][0]} header")
        body = response.content
        # Check now what assembling the collateral will need, so nothing unusable is cached.
        try:
            if chain is not None:
                chain = normalize_pem_chain(chain, f"{kind.replace('_', ' ')} issuer chain")
            if kind in _SIGNED_KEYS:
                extract_signed_body(body, _SIGNED_KEYS[kind])
        except EvidenceError as error:
            raise _bad_response(url, error.message) from error
        return _Entry(
            url=url,
            body=body,
            issuer_chain=chain,
            fetched_at=now,
            next_update=_next_update(kind, url, body),
        )

    def _get(self, url: str) -> httpx.Response:
        """GET ``url`` with bounded retries.

        Raises:
            CollateralUnavailableError: See :meth:`fetch`.
        """
        # The API key goes only to the PCS/PCCS itself (not to a CRL distribution point on
        # another host), and never follows a redirect: httpx keeps custom headers across one.
        key = self._api_key if _same_origin(url, self.endpoints.base_url) else None
        headers: Mapping[str, str] = {API_KEY_HEADER: key} if key else {}
        failure: CollateralUnavailableError | None = None
        retry_after: str | None = None
        for attempt in range(max(1, self._retry.attempts)):
            if attempt:
                self._sleep(self._retry.delay(attempt - 1, retry_after))
                retry_after = None
            try:
                response = self._http.get(url, headers=headers, follow_redirects=not key)
            except httpx.TimeoutException as error:
                failure = CollateralUnavailableError(
                    f"{url} did not answer in time: {error}",
                    code="collateral.unreachable",
                    details={"url": url, "reason": "timeout"},
                )
            except httpx.ConnectError as error:
                if _caused_by_tls(error):
                    # Retrying cannot fix a certificate the client does not trust.
                    raise CollateralUnavailableError(
                        f"TLS with {url} failed: {error}",
                        code="collateral.tls_error",
                        hint="Give the PCCS's CA certificate (--pccs-ca-file); a default PCCS "
                        "install uses a self-signed certificate.",
                        details={"url": url},
                    ) from error
                failure = CollateralUnavailableError(
                    f"cannot reach {url}: {error}",
                    code="collateral.unreachable",
                    details={"url": url, "reason": type(error).__name__},
                )
            except httpx.HTTPError as error:
                failure = CollateralUnavailableError(
                    f"cannot reach {url}: {error}",
                    code="collateral.unreachable",
                    details={"url": url, "reason": type(error).__name__},
                )
            else:
                if response.status_code == httpx.codes.OK:
                    return response
                failure = self._status_error(url, response)
                retry_after = response.headers.get("Retry-After")
                if response.status_code not in _RETRY_STATUSES:
                    raise failure
        if failure is None:  # pragma: no cover (the loop runs at least once)
            msg = "no request was made"
            raise AssertionError(msg)
        raise failure

    @staticmethod
    def _status_error(url: str, response: httpx.Response) -> CollateralUnavailableError:
        status = response.status_code
        request_id = response.headers.get("Request-ID", "")
        details: dict[str, object] = {"url": url, "status": status}
        if request_id:
            details["request_id"] = request_id
        if status == httpx.codes.NOT_FOUND:
            return CollateralUnavailableError(
                f"{url} has no such collateral (HTTP 404)",
                code="collateral.not_found",
                hint="Intel may not know this FMSPC, or the URL is not a PCS/PCCS v4 API.",
                details=details,
            )
        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            return CollateralUnavailableError(
                f"{url} refused the request (HTTP {status})",
                code="collateral.unauthorized",
                hint="Check the PCS API key ($SANCTUM_PCS_API_KEY or --api-key-file).",
                details=details,
            )
        return CollateralUnavailableError(
            f"{url} answered HTTP {status}",
            code="collateral.http_error",
            details=details,
        )


@dataclass
class PcsCollateralSource:
    """A :class:`~sanctum.platforms.collateral_source.CollateralSource` backed by a PCS/PCCS.

    Attributes:
        client: The PCS client (owns the cache).
        last_fetch: The last fetch, for callers that report staleness.
    """

    client: PcsClient
    last_fetch: CollateralFetch | None = field(default=None, init=False)

    def fetch_for_quote(self, quote: Quote, *, now: datetime) -> CollateralFetch:
        """Return the collateral for ``quote`` and where each part came from.

        Raises:
            EvidenceError: The quote carries no readable PCK certificate.
            CollateralUnavailableError: See :meth:`PcsClient.fetch`.
        """
        result = self.client.fetch(pcs_request_for_quote(quote), now=now)
        self.last_fetch = result
        return result

    def for_quote(self, quote: Quote, *, now: datetime) -> Collateral:
        """Return the collateral for ``quote`` (staleness is logged and kept in ``last_fetch``).

        Raises:
            EvidenceError: The quote carries no readable PCK certificate.
            CollateralUnavailableError: See :meth:`PcsClient.fetch`.
        """
        return self.fetch_for_quote(quote, now=now).collateral
