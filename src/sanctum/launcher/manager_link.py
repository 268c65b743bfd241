"""The launcher's HTTPS link to the Enclave Manager, authenticated by the manifest's CA pin.

The manifest carries ``manager.caPin = "sha256:" + hex(SHA-256(SubjectPublicKeyInfo DER))`` of
the manager's TLS CA, not the CA certificate itself. The launcher therefore learns the CA
certificate from an untrusted place and accepts it only if its public key matches the pin:

1. a PEM file named by ``SANCTUM_MANAGER_CA`` (optional), or
2. the certificate chain the manager presents in the TLS handshake (the manager sends its CA
   after its server certificate), read without verification.

The matching certificate becomes the **only** trust anchor of an ``ssl.SSLContext`` (hostname
checking on), and every request (challenge, attest) runs over that verified context. Nothing is
sent over the unverified first handshake: it is closed right after reading the chain.

Problem documents (RFC 9457) of the manager become typed errors: 4xx answers are refusals
(:class:`~sanctum.launcher.errors.AttestationRefusedError` carrying the manager's reason code);
connection failures, 5xx and 429 are :class:`~sanctum.launcher.errors.ManagerUnavailableError`
(retryable).

The HTTP client is the standard library's :mod:`http.client` over the pinned context, one
keep-alive connection for the challenge and the attestation (ADR 0103): the launcher starts in
every workload, and ``httpx`` cost it 30-80 ms of imports for two POST requests.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from sanctum.errors import EvidenceError
from sanctum.launcher.errors import (
    AttestationRefusedError,
    LauncherConfigError,
    ManagerUnavailableError,
)
from sanctum.launcher.policy import refusal_hint
from sanctum.protocol.messages import AttestRequest, AttestResponse, ChallengeResponse

__all__ = [
    "MAX_ANSWER_BYTES",
    "ManagerLink",
    "Response",
    "ca_pin_of",
    "find_pinned_ca",
    "peer_chain",
    "pinned_ssl_context",
]

_CODE_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.")
_RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Largest answer body read from the manager (an attestation answer is a few KiB).
MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024


def ca_pin_of(certificate: x509.Certificate) -> str:
    """Return the ``sha256:<hex>`` pin of ``certificate``'s SubjectPublicKeyInfo."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _host_port(url: str) -> tuple[str, int]:
    """Return the host and port of an https URL.

    Raises:
        LauncherConfigError: Not an https URL (``launcher.manager_url_invalid``).
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise LauncherConfigError(
            f"manager URL {url!r} is not an https:// URL", code="launcher.manager_url_invalid"
        )
    return parts.hostname, parts.port or 443


def peer_chain(url: str, *, timeout: float) -> list[x509.Certificate]:
    """Return the certificates the server at ``url`` presents, unverified, leaf first.

    Raises:
        ManagerUnavailableError: The server cannot be reached or the handshake fails.
    """
    host, port = _host_port(url)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Only to read the chain; the pin authenticates it.
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            # Python 3.13 made get_unverified_chain public; 3.10-3.12 have it on the internal
            # object. Both return certificates whose public_bytes() default to PEM.
            holder: Any = tls if hasattr(tls, "get_unverified_chain") else getattr(tls, "_sslobj")  # noqa: B009
            chain: Any = holder.get_unverified_chain()
            if not chain:
                return []
            return [
                x509.load_pem_x509_certificate(str(cert.public_bytes()).encode("ascii"))
                for cert in chain
            ]
    except OSError as error:
        raise ManagerUnavailableError(
            f"cannot reach the Enclave Manager at {host}:{port}: {error}",
            code="launcher.manager_unreachable",
            hint="check SANCTUM_MANAGER_URL and that the manager is running and reachable",
        ) from error


def find_pinned_ca(candidates: list[x509.Certificate], pin: str) -> x509.Certificate:
    """Return the candidate CA certificate whose public key matches ``pin``.

    Raises:
        EvidenceError: None matches (``launcher.ca_pin_mismatch``): whoever answered is not the
            manager this image was built for.
    """
    for certificate in candidates:
        if hmac.compare_digest(ca_pin_of(certificate), pin):
            return certificate
    seen = ", ".join(ca_pin_of(c) for c in candidates) or "no certificates"
    raise EvidenceError(
        f"no CA certificate presented by the manager matches the manifest's pin {pin} "
        f"(seen: {seen})",
        code="launcher.ca_pin_mismatch",
        hint="the image was converted for another manager, or something intercepts the "
        "connection; set SANCTUM_MANAGER_URL to the manager named at conversion",
    )


def pinned_ssl_context(ca: x509.Certificate) -> ssl.SSLContext:
    """Return a client context that trusts ``ca`` only (hostname checking on)."""
    return ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode("ascii")
    )


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer of the manager.

    Attributes:
        status_code: The HTTP status.
        content: The body (at most :data:`MAX_ANSWER_BYTES`).
    """

    status_code: int
    content: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON.

        Raises:
            ValueError: The body is not JSON.
        """
        return json.loads(self.content)


def _problem(response: Response) -> tuple[str | None, str, str | None]:
    """Return (code, detail, hint) of a problem document (missing parts are None/generic)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return None, f"the manager answered HTTP {response.status_code}", None
    code = body.get("code")
    valid = isinstance(code, str) and "." in code and set(code) <= _CODE_CHARS
    detail = body.get("detail")
    hint = body.get("hint")
    return (
        code if valid else None,
        str(detail) if detail else f"the manager answered HTTP {response.status_code}",
        str(hint) if isinstance(hint, str) else None,
    )


class ManagerLink:
    """Calls ``/v1/attest/challenge`` and ``/v1/attest`` over the pinned TLS context.

    One HTTPS connection is opened on first use and kept alive between requests (the manager
    closes it when it wants; the next request then reconnects).
    """

    def __init__(self, url: str, context: ssl.SSLContext, *, timeout: float = 15.0) -> None:
        """Prepare a link to ``url`` trusting only ``context``'s anchors.

        Raises:
            LauncherConfigError: ``url`` is not an https URL (``launcher.manager_url_invalid``).
        """
        self.url = url.rstrip("/")
        self._host, self._port = _host_port(self.url)
        self._prefix = urlsplit(self.url).path.rstrip("/")
        self._context = context
        self._timeout = timeout
        self._connection: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def post(self, path: str, body: dict[str, Any] | None) -> Response:
        """POST ``body`` as JSON and return the response, mapping failures to typed errors.

        Raises:
            ManagerUnavailableError: Transport failure, 5xx, 429 and friends.
            AttestationRefusedError: Any other 4xx (a refusal with the manager's code).
            EvidenceError: The answer is larger than :data:`MAX_ANSWER_BYTES`
                (``launcher.answer_invalid``).
        """
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        try:
            if self._connection is None:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            self._connection.request("POST", self._prefix + path, body=data, headers=headers)
            answer = self._connection.getresponse()
            content = answer.read(MAX_ANSWER_BYTES + 1)
            response = Response(answer.status, content)
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise ManagerUnavailableError(
                f"request to {self.url}{path} failed: {str(error) or type(error).__name__}",
                code="launcher.manager_unreachable",
            ) from error
        if len(content) > MAX_ANSWER_BYTES:
            self.close()
            raise EvidenceError(
                f"the manager's answer to {path} exceeds {MAX_ANSWER_BYTES} bytes",
                code="launcher.answer_invalid",
            )
        if response.status_code < 400:
            return response
        code, detail, hint = _problem(response)
        if response.status_code in _RETRYABLE_STATUS:
            raise ManagerUnavailableError(
                f"{detail} (HTTP {response.status_code})",
                code=code or "launcher.manager_unavailable",
                hint=hint,
            )
        final = code or "attest.refused"
        raise AttestationRefusedError(
            detail,
            code=final,
            hint=hint or refusal_hint(final),
            details={"status": response.status_code},
        )

    def challenge(self) -> ChallengeResponse:
        """Return a fresh challenge.

        Raises:
            ManagerUnavailableError: The manager cannot answer now.
            AttestationRefusedError: The manager refuses to issue one.
            EvidenceError: The answer is malformed (``launcher.answer_invalid``).
        """
        response = self.post("/v1/attest/challenge", None)
        try:
            return ChallengeResponse.model_validate_json(response.content)
        except ValidationError as error:
            raise EvidenceError(
                f"the manager's challenge is malformed: {error.error_count()} errors",
                code="launcher.answer_invalid",
            ) from error

    def attest(self, request: AttestRequest) -> AttestResponse:
        """Send the attestation and return the manager's answer.

        Raises:
            ManagerUnavailableError: The manager cannot answer now.
            AttestationRefusedError: The manager refused (its reason code).
            EvidenceError: The answer is malformed (``launcher.answer_invalid``).
        """
        response = self.post("/v1/attest", request.model_dump(mode="json", exclude_none=True))
        try:
            return AttestResponse.model_validate_json(response.content)
        except ValidationError as error:
            raise EvidenceError(
                f"the manager's attestation answer is malformed: {error.error_count()} errors",
                code="launcher.answer_invalid",
            ) from error
