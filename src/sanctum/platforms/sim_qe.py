"""The simulated quoting service: a host-side stand-in for the Quoting Enclave (SIMULATED).

On SGX hardware the Quoting Enclave (QE) is a host service: an enclave hands it a hardware
REPORT, the QE checks it and signs a quote with a key certified by Intel. The simulated platform
follows the same split, so that **the simulation PKI's private keys never enter a workload
image**: a small service on the host holds the :class:`~sanctum.platforms.simulated.SimulationPki`
and one :class:`~sanctum.platforms.simulated.SimulatedPlatform`, and returns quotes over a Unix
socket or a loopback HTTP port. The launcher's simulated evidence source
(:class:`SimQeEvidenceSource`) calls it.

What simulation cannot give (see ``docs/adr/0100-simulated-quoting-service.md``): there is no
hardware to measure the caller, so the workload *states* its identity (MRENCLAVE, MRSIGNER,
ISVPRODID, ISVSVN, DEBUG) and the service signs whatever it is told. Anyone who can reach the
service can obtain a quote for any identity. That is why every answer says ``simulated: true``,
why the quotes verify only against the simulation root CA, and why managers refuse simulated
evidence unless an app explicitly sets ``unsafe_allow_simulated``.

Protocol (JSON over HTTP/1.1)::

    POST /v1/quote   {"report_data": b64, "identity": {"mr_enclave": hex, "mr_signer": hex,
                      "isv_prod_id": int, "isv_svn": int, "debug": bool}}
      -> 200 {"simulated": true, "tee": "sgx", "quote": b64, "collateral": {...}}
    GET /v1/info     -> 200 {"simulated": true, "tee": "sgx", "fmspc": hex, "root_ca_pem": ...}

The client half (:class:`SimQeEvidenceSource`) imports only the standard library
(:mod:`http.client` over a Unix socket or loopback TCP), so the launcher starts fast and its
frozen form stays small (ADR 0103); the server half imports the simulation PKI lazily.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from sanctum.errors import EvidenceError, UnavailableError, UsageError
from sanctum.platforms.evidence import REPORT_DATA_SIZE, PlatformInfo

if TYPE_CHECKING:
    from sanctum.platforms.simulated import SimulatedPlatform

__all__ = [
    "SIM_QE_ENV",
    "QuoteIdentity",
    "SimQeEvidenceSource",
    "SimQeServer",
    "SimulatedQuote",
    "collateral_from_bundle",
    "default_socket_path",
    "start_sim_qe",
]

#: Environment variable the launcher reads to find the service (``unix:PATH`` or ``http://…``).
SIM_QE_ENV: Final = "SANCTUM_SIM_QE"
_MAX_BODY: Final = 16 * 1024
#: Largest answer read from the service (a quote and its collateral are ~20 KiB).
_MAX_ANSWER: Final = 1024 * 1024
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QuoteIdentity:
    """The enclave identity a workload states to the simulated QE (hardware would measure it).

    Attributes:
        mr_enclave: The enclave measurement (32 bytes).
        mr_signer: SHA-256 of the enclave signing key's modulus (32 bytes).
        isv_prod_id: ISV product ID (0-65535).
        isv_svn: ISV security version (0-65535).
        debug: Whether the enclave is a debug enclave.
    """

    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    debug: bool

    def __post_init__(self) -> None:
        """Check sizes and ranges.

        Raises:
            UsageError: A field is out of range (``sim_qe.request_invalid``).
        """
        if len(self.mr_enclave) != 32 or len(self.mr_signer) != 32:
            raise UsageError(
                "mr_enclave and mr_signer must be 32 bytes", code="sim_qe.request_invalid"
            )
        for name in ("isv_prod_id", "isv_svn"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
                raise UsageError(f"{name} must be in 0-65535", code="sim_qe.request_invalid")

    def to_json(self) -> dict[str, object]:
        """Return the wire form."""
        return {
            "mr_enclave": self.mr_enclave.hex(),
            "mr_signer": self.mr_signer.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "debug": self.debug,
        }

    @classmethod
    def from_json(cls, doc: object) -> QuoteIdentity:
        """Parse the wire form.

        Raises:
            UsageError: The document is malformed (``sim_qe.request_invalid``).
        """
        if not isinstance(doc, dict):
            raise UsageError("identity must be an object", code="sim_qe.request_invalid")
        try:
            return cls(
                mr_enclave=bytes.fromhex(str(doc["mr_enclave"])),
                mr_signer=bytes.fromhex(str(doc["mr_signer"])),
                isv_prod_id=doc["isv_prod_id"],
                isv_svn=doc["isv_svn"],
                debug=bool(doc["debug"]),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise UsageError(
                f"identity is malformed: {error}", code="sim_qe.request_invalid"
            ) from error


@dataclass(frozen=True, slots=True)
class SimulatedQuote:
    """A quote from the simulated QE and its collateral bundle.

    Attributes:
        quote: The SGX v3 quote bytes.
        collateral: The collateral bundle (JSON object, dcap-qvl field names, hex blobs).
    """

    quote: bytes
    collateral: Mapping[str, str]


# Server --------------------------------------------------------------------------------------


class _QuoteService:
    """Turns stated identities and report data into quotes (the pure part of the server)."""

    def __init__(
        self, platform: SimulatedPlatform, root_pem: str, now: Callable[[], datetime]
    ) -> None:
        self._platform = platform
        self._root_pem = root_pem
        self._now = now
        self._lock = threading.Lock()

    def info(self) -> dict[str, object]:
        info = self._platform.info
        return {
            "simulated": True,
            "tee": info.tee,
            "details": dict(info.details),
            "root_ca_pem": self._root_pem,
        }

    def quote(self, identity: QuoteIdentity, report_data: bytes) -> dict[str, object]:
        from sanctum.platforms.simulated import SgxIdentity  # noqa: PLC0415
        from sanctum.platforms.simulated.quote import encode_sgx_report_body  # noqa: PLC0415

        if len(report_data) > REPORT_DATA_SIZE:
            raise UsageError(
                f"report data is {len(report_data)} bytes; at most {REPORT_DATA_SIZE} fit",
                code="sim_qe.request_invalid",
            )
        sgx = SgxIdentity(
            mr_enclave=identity.mr_enclave,
            mr_signer=identity.mr_signer,
            isv_prod_id=identity.isv_prod_id,
            isv_svn=identity.isv_svn,
        ).with_debug(identity.debug)
        body = encode_sgx_report_body(
            sgx, cpu_svn=self._platform.platform_tcb.cpu_svn, report_data=report_data
        )
        with self._lock:
            quote = self._platform.quoting_enclave.quote_v3(body)
            collateral = json.loads(self._platform.collateral_json(now=self._now()))
        return {
            "simulated": True,
            "tee": "sgx",
            "quote": base64.b64encode(quote).decode("ascii"),
            "collateral": collateral,
        }


def _parse_quote_request(body: bytes) -> tuple[QuoteIdentity, bytes]:
    """Parse the body of ``POST /v1/quote``.

    Raises:
        UsageError: The body is empty, too large or malformed (``sim_qe.request_invalid``).
    """
    try:
        doc = json.loads(body)
    except ValueError as error:
        raise UsageError(
            "the request body is missing, too large or not JSON", code="sim_qe.request_invalid"
        ) from error
    if not isinstance(doc, dict):
        raise UsageError("the request must be a JSON object", code="sim_qe.request_invalid")
    try:
        report_data = base64.b64decode(str(doc["report_data"]), validate=True)
    except (KeyError, binascii.Error) as error:
        raise UsageError("report_data must be base64", code="sim_qe.request_invalid") from error
    return QuoteIdentity.from_json(doc.get("identity")), report_data


class _Handler(BaseHTTPRequestHandler):
    """HTTP handler of the simulated QE (``server.service`` holds the :class:`_QuoteService`)."""

    server_version = "sanctum-sim-qe"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        """Route access logs to the module logger at debug level."""
        _log.debug("sim-qe: " + format, *args)

    def address_string(self) -> str:
        """Return a printable peer (Unix sockets have no address)."""
        return "local"

    def _reply(self, status: int, doc: Mapping[str, object]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _service(self) -> _QuoteService:
        service = getattr(self.server, "service", None)
        if not isinstance(service, _QuoteService):  # pragma: no cover (set by SimQeServer)
            msg = "sim-qe server without a quote service"
            raise TypeError(msg)
        return service

    def do_GET(self) -> None:
        """Answer ``GET /v1/info``."""
        if self.path != "/v1/info":
            self._reply(404, {"code": "sim_qe.not_found", "detail": "unknown path"})
            return
        self._reply(200, self._service().info())

    def do_POST(self) -> None:
        """Answer ``POST /v1/quote``."""
        if self.path != "/v1/quote":
            self._reply(404, {"code": "sim_qe.not_found", "detail": "unknown path"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0") or "0")
            identity, report_data = _parse_quote_request(
                self.rfile.read(length) if 0 < length <= _MAX_BODY else b""
            )
            answer = self._service().quote(identity, report_data)
        except UsageError as error:
            self._reply(400, {"code": error.code, "detail": error.message})
            return
        self._reply(200, answer)


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threading HTTP server on a Unix socket."""

    daemon_threads = True
    service: _QuoteService | None = None


class _TcpHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server on loopback TCP."""

    daemon_threads = True
    service: _QuoteService | None = None


class SimQeServer:
    """A running simulated QE: its address, and how to stop it."""

    def __init__(
        self, server: socketserver.BaseServer, address: str, socket_path: Path | None
    ) -> None:
        """Wrap a bound server (use :func:`start_sim_qe`)."""
        self._server = server
        self._socket_path = socket_path
        self.address = address
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve until :meth:`close` is called from another thread (or a signal)."""
        self._server.serve_forever(poll_interval=0.2)

    def start_in_thread(self) -> None:
        """Serve in a daemon thread (tests, the demo)."""
        self._thread = threading.Thread(target=self.serve_forever, name="sim-qe", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and remove the socket file."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        if self._socket_path is not None:
            self._socket_path.unlink(missing_ok=True)


def start_sim_qe(
    state_dir: Path,
    *,
    socket_path: Path | None = None,
    port: int | None = None,
    now: Callable[[], datetime] | None = None,
) -> SimQeServer:
    """Load (or create) the simulation PKI in ``state_dir`` and bind the simulated QE.

    Exactly one of ``socket_path`` (a Unix socket, mode 0660) and ``port`` (127.0.0.1 only;
    0 picks a free port) is given.

    Args:
        state_dir: Directory of ``simulation-pki.json`` (created here on first use); point the
            manager's ``simulation_pki_dir`` at it so the quotes chain to the root it trusts.
        socket_path: Unix socket to listen on.
        port: Loopback TCP port to listen on.
        now: Clock (UTC); the collateral is issued at this time for every quote.

    Returns:
        The bound server; call ``serve_forever`` or ``start_in_thread``.

    Raises:
        UsageError: Neither or both of ``socket_path`` and ``port`` (``sim_qe.option_invalid``).
        SimulationPkiError: The PKI file is unusable.
        OSError: The socket cannot be bound.
    """
    from sanctum.platforms.simulated import (  # noqa: PLC0415
        SimulatedPlatform,
        load_or_create_simulation_pki,
    )

    if (socket_path is None) == (port is None):
        raise UsageError(
            "give exactly one of a socket path or a port", code="sim_qe.option_invalid"
        )
    clock = now or (lambda: datetime.now(UTC))
    pki = load_or_create_simulation_pki(state_dir, now=clock())
    platform = SimulatedPlatform(pki, tee="sgx", now=clock())
    service = _QuoteService(platform, pki.root_pem(), clock)
    server: _UnixHTTPServer | _TcpHTTPServer
    if socket_path is not None:
        socket_path.unlink(missing_ok=True)
        server = _UnixHTTPServer(str(socket_path), _Handler)
        socket_path.chmod(0o660)
        address = f"unix:{socket_path}"
    else:
        server = _TcpHTTPServer(("127.0.0.1", port or 0), _Handler)
        address = f"http://127.0.0.1:{server.server_address[1]}"
    server.service = service
    _log.info("simulated quoting service listening on %s (SIMULATED evidence)", address)
    return SimQeServer(server, address, socket_path)


# Client (the launcher's evidence source) -----------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP/1.1 connection over a Unix socket."""

    def __init__(self, path: str, *, timeout: float) -> None:
        super().__init__("sim-qe", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connect to the socket file."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection_for(address: str, timeout: float) -> http.client.HTTPConnection:
    """Return a connection to ``unix:PATH`` or ``http://127.0.0.1:PORT`` (not yet connected).

    Raises:
        UsageError: The address is neither (``sim_qe.address_invalid``).
    """
    if address.startswith("unix:"):
        return _UnixConnection(address[len("unix:") :], timeout=timeout)
    if address.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
        parts = urlsplit(address)
        if parts.hostname and parts.port:
            return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    raise UsageError(
        f"{SIM_QE_ENV}={address!r} is not unix:PATH or a loopback http:// URL",
        code="sim_qe.address_invalid",
        hint="start one with `sanctum platform sim-qe serve --socket PATH` on the host",
    )


def collateral_from_bundle(bundle: Mapping[str, str]) -> dict[str, object]:
    """Convert a collateral bundle (hex blobs) into the wire ``Collateral`` fields (bytes).

    Raises:
        EvidenceError: A field is missing or not hex (``sim_qe.answer_invalid``).
    """
    binary = {"root_ca_crl", "pck_crl", "tcb_info_signature", "qe_identity_signature"}
    text = {
        "pck_crl_issuer_chain",
        "tcb_info_issuer_chain",
        "tcb_info",
        "qe_identity_issuer_chain",
        "qe_identity",
    }
    out: dict[str, object] = {}
    try:
        for name in binary:
            out[name] = bytes.fromhex(bundle[name])
        for name in text:
            out[name] = str(bundle[name])
    except (KeyError, ValueError, TypeError) as error:
        raise EvidenceError(
            f"the simulated QE's collateral is malformed: {error}", code="sim_qe.answer_invalid"
        ) from error
    if "pck_certificate_chain" in bundle:
        out["pck_certificate_chain"] = str(bundle["pck_certificate_chain"])
    return out


class SimQeEvidenceSource:
    """An evidence source that asks the host's simulated QE for quotes (SIMULATED).

    The identity is stated by the caller (the launcher derives it from the verified manifest
    and SIGSTRUCT); nothing measures it. See the module docstring.
    """

    def __init__(self, address: str, identity: QuoteIdentity, *, timeout: float = 10.0) -> None:
        """Prepare a client of the simulated QE at ``address`` (``unix:PATH`` or loopback URL).

        Raises:
            UsageError: The address is not supported (``sim_qe.address_invalid``).
        """
        _connection_for(address, timeout)  # Checks the address now, not at the first quote.
        self._address = address
        self._identity = identity
        self._timeout = timeout
        self.last_collateral: Mapping[str, str] | None = None

    @property
    def info(self) -> PlatformInfo:
        """Describe the platform: always simulated."""
        return PlatformInfo(
            name="simulated",
            tee="sgx",
            simulated=True,
            details={"quoting_service": self._address},
        )

    def close(self) -> None:
        """Release resources (each quote uses its own short connection; nothing stays open)."""

    def quote_with_collateral(self, report_data: bytes) -> SimulatedQuote:
        """Return a simulated quote of ``report_data`` and its collateral.

        Raises:
            UsageError: ``report_data`` is longer than 64 bytes.
            UnavailableError: The service cannot be reached or fails (``sim_qe.unavailable``).
            EvidenceError: The service's answer is malformed (``sim_qe.answer_invalid``).
        """
        if len(report_data) > REPORT_DATA_SIZE:
            raise UsageError(
                f"report data is {len(report_data)} bytes; at most {REPORT_DATA_SIZE} fit",
                code="platform.report_data_too_long",
            )
        request = {
            "report_data": base64.b64encode(report_data).decode("ascii"),
            "identity": self._identity.to_json(),
        }
        connection = _connection_for(self._address, self._timeout)
        try:
            connection.request(
                "POST",
                "/v1/quote",
                body=json.dumps(request).encode(),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            status, body = response.status, response.read(_MAX_ANSWER)
        except (OSError, http.client.HTTPException) as error:
            raise UnavailableError(
                f"the simulated quoting service at {self._address} cannot be reached: {error}",
                code="sim_qe.unavailable",
                hint="start it on the host: sanctum platform sim-qe serve --socket PATH "
                "(and bind-mount the socket into the container)",
            ) from error
        finally:
            connection.close()
        if status != 200:
            raise UnavailableError(
                f"the simulated quoting service answered HTTP {status}: "
                f"{body[:200].decode('utf-8', 'replace')}",
                code="sim_qe.unavailable",
            )
        try:
            doc = json.loads(body)
            quote = base64.b64decode(doc["quote"], validate=True)
            collateral = doc["collateral"]
            if doc.get("simulated") is not True or not isinstance(collateral, dict):
                raise ValueError("not a simulated answer")  # noqa: TRY301 (one error path)
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise EvidenceError(
                f"the simulated quoting service's answer is malformed: {error}",
                code="sim_qe.answer_invalid",
            ) from error
        self.last_collateral = {str(k): str(v) for k, v in collateral.items()}
        return SimulatedQuote(quote=quote, collateral=self.last_collateral)

    def quote(self, report_data: bytes) -> bytes:
        """Return a simulated quote of ``report_data`` (the ``EvidenceSource`` method).

        Raises:
            UsageError: ``report_data`` is longer than 64 bytes.
            UnavailableError: The service cannot be reached (``sim_qe.unavailable``).
            EvidenceError: The answer is malformed (``sim_qe.answer_invalid``).
        """
        return self.quote_with_collateral(report_data).quote


def default_socket_path() -> Path:
    """Return the default socket path (``$XDG_RUNTIME_DIR`` or ``/tmp``)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"  # noqa: S108 (a socket, mode 0660)
    return Path(base) / "sanctum-sim-qe.sock"
