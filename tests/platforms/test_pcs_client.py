from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pcs_server import VECTORS, LoopbackPcs, Route, site_routes

from sanctum.attestation.collateral import load_collateral_bundle
from sanctum.attestation.quote import parse_quote
from sanctum.errors import EvidenceError, UsageError
from sanctum.platforms.errors import CollateralUnavailableError
from sanctum.platforms.pcs import (
    API_KEY_HEADER,
    INTEL_ROOT_CA_CRL_URL,
    CachePolicy,
    PcsClient,
    PcsCollateralSource,
    PcsEndpoints,
    PcsRequest,
    RetryPolicy,
    pcs_request_for_quote,
)

CASES = VECTORS.parent / "dcap" / "cases"
SGX = PcsRequest(tee="sgx", fmspc="00606A000000", ca="platform")
TDX = PcsRequest(tee="tdx", fmspc="00806f050000", ca="platform")
# Inside every validity window of the SGX site; its earliest nextUpdate is the QE identity's,
# 2025-09-14T04:36:46Z.
SGX_NOW = datetime.fromtimestamp(1756530546, UTC)
SGX_QE_NEXT_UPDATE = datetime(2025, 9, 14, 4, 36, 46, tzinfo=UTC)
TDX_NOW = datetime.fromtimestamp(1753175614, UTC)
SGX_PATHS = [
    "/sgx/certification/v4/tcb?fmspc=00606a000000",
    "/sgx/certification/v4/qe/identity",
    "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
    "/sgx/certification/v4/rootcacrl",
]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sgx_pcs() -> Iterator[LoopbackPcs]:
    with LoopbackPcs(site_routes("sgx-00606a")) as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def _client(server: LoopbackPcs, sleeps: Sleeps, cache_dir: Path | None = None, **kw) -> PcsClient:
    return PcsClient(
        PcsEndpoints(server.url),
        timeout=2.0,
        sleep=sleeps,
        cache_dir=cache_dir,
        **kw,
    )


def _bundle(case: str):
    return load_collateral_bundle((CASES / f"{case}.collateral.json").read_bytes())


def test_fetch_from_a_pccs_yields_the_reference_collateral(sgx_pcs, sleeps) -> None:
    with _client(sgx_pcs, sleeps) as client:
        result = client.fetch(SGX, now=SGX_NOW)
    assert sgx_pcs.paths() == SGX_PATHS
    assert result.collateral == _bundle("sgx-v3-automata-00606a")
    assert not result.stale
    assert [r.kind for r in result.resources] == [
        "tcb_info",
        "qe_identity",
        "pck_crl",
        "root_ca_crl",
    ]
    assert not any(r.from_cache for r in result.resources)
    assert result.next_update == SGX_QE_NEXT_UPDATE
    assert sleeps == []


def test_fetch_tdx_from_pcs_paths_with_root_crl_from_its_distribution_point(sleeps) -> None:
    with LoopbackPcs(site_routes("tdx-00806f050000")) as server:
        endpoints = PcsEndpoints(server.url, root_ca_crl_url=f"{server.url}/IntelSGXRootCA.der")
        with PcsClient(endpoints, sleep=sleeps, timeout=2.0) as client:
            result = client.fetch(TDX, now=TDX_NOW)
        assert server.paths() == [
            "/tdx/certification/v4/tcb?fmspc=00806f050000",
            "/tdx/certification/v4/qe/identity",
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            "/IntelSGXRootCA.der",
        ]
    assert result.collateral == _bundle("tdx-v4-automata-0725")


def test_api_key_header_is_sent_only_when_configured(sgx_pcs, sleeps) -> None:
    with _client(sgx_pcs, sleeps, api_key="k3y") as client:
        client.fetch(SGX, now=SGX_NOW)
    with _client(sgx_pcs, sleeps) as client:
        client.fetch(SGX, now=SGX_NOW)
    keys = [headers.get(API_KEY_HEADER) for _, headers in sgx_pcs.requests]
    assert keys == ["k3y"] * 4 + [None] * 4


def test_cache_hit_makes_no_request(sgx_pcs, sleeps) -> None:
    with _client(sgx_pcs, sleeps) as client:
        first = client.fetch(SGX, now=SGX_NOW)
        second = client.fetch(SGX, now=SGX_NOW + timedelta(hours=1))
    assert len(sgx_pcs.requests) == 4
    # Unchanged responses are not parsed again.
    assert second.collateral is first.collateral
    assert all(r.from_cache and not r.stale for r in second.resources)
    assert all(r.fetched_at == SGX_NOW for r in second.resources)


def test_entries_older_than_max_age_are_refreshed(sgx_pcs, sleeps) -> None:
    with _client(sgx_pcs, sleeps) as client:
        first = client.fetch(SGX, now=SGX_NOW)
        later = SGX_NOW + timedelta(hours=25)
        result = client.fetch(SGX, now=later)
    assert sgx_pcs.paths() == SGX_PATHS * 2
    assert result.collateral is not first.collateral
    assert result.collateral == first.collateral
    assert all(r.fetched_at == later and not r.from_cache for r in result.resources)


def test_entries_are_refreshed_before_next_update(sgx_pcs, sleeps) -> None:
    policy = CachePolicy(max_age=timedelta(days=365), refresh_margin=timedelta(hours=12))
    with _client(sgx_pcs, sleeps, cache_policy=policy) as client:
        client.fetch(SGX, now=SGX_NOW)
        client.fetch(SGX, now=SGX_QE_NEXT_UPDATE - timedelta(hours=13))
        assert len(sgx_pcs.requests) == 4
        client.fetch(SGX, now=SGX_QE_NEXT_UPDATE - timedelta(hours=11))
    # At 17:36:46 the day before, the QE identity (nextUpdate 04:36:46) and the TCB info
    # (05:08:18) are within 12 hours of their nextUpdate; the PCK CRL (05:41:26) and the root
    # CRL (2026) are not yet.
    assert sgx_pcs.paths()[4:] == SGX_PATHS[:2]


def test_disk_cache_survives_the_process_and_the_server(sgx_pcs, sleeps, tmp_path) -> None:
    with _client(sgx_pcs, sleeps, cache_dir=tmp_path / "cache") as client:
        client.fetch(SGX, now=SGX_NOW)
    sgx_pcs.stop()
    with _client(sgx_pcs, sleeps, cache_dir=tmp_path / "cache") as client:
        result = client.fetch(SGX, now=SGX_NOW + timedelta(hours=2))
    assert result.collateral == _bundle("sgx-v3-automata-00606a")
    assert all(r.from_cache and not r.stale for r in result.resources)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4


def test_unreadable_disk_cache_file_is_ignored(sgx_pcs, sleeps, tmp_path) -> None:
    cache = tmp_path / "cache"
    with _client(sgx_pcs, sleeps, cache_dir=cache) as client:
        client.fetch(SGX, now=SGX_NOW)
    for path in cache.glob("*.json"):
        path.write_text("{broken")
    with _client(sgx_pcs, sleeps, cache_dir=cache) as client:
        result = client.fetch(SGX, now=SGX_NOW)
    assert not any(r.from_cache for r in result.resources)
    assert len(sgx_pcs.requests) == 8


def test_server_gone_valid_cache_is_used_and_reported_stale_then_expires(sgx_pcs, sleeps) -> None:
    with _client(sgx_pcs, sleeps) as client:
        client.fetch(SGX, now=SGX_NOW)
        sgx_pcs.stop()
        later = SGX_NOW + timedelta(days=3)
        result = client.fetch(SGX, now=later)
        assert result.stale
        assert result.collateral == _bundle("sgx-v3-automata-00606a")
        assert {r.refresh_error for r in result.resources} == {"collateral.unreachable"}
        assert all(r.fetched_at == SGX_NOW for r in result.resources)
        # Each resource was tried three times with exponential backoff.
        assert sleeps == [0.5, 1.0] * 4
        # Just before the earliest nextUpdate the cached set is still usable, stale.
        assert client.fetch(SGX, now=SGX_QE_NEXT_UPDATE - timedelta(seconds=1)).stale
        with pytest.raises(CollateralUnavailableError) as expired:
            client.fetch(SGX, now=SGX_QE_NEXT_UPDATE)
    error = expired.value
    assert error.code == "collateral.expired_cache"
    assert error.retryable
    assert error.details["cause"] == "collateral.unreachable"


def test_no_cache_and_no_server_fails_cleanly(sleeps) -> None:
    server = LoopbackPcs({}).start()
    server.stop()
    with (
        _client(server, sleeps, retry=RetryPolicy(attempts=2, backoff=0.25)) as client,
        pytest.raises(CollateralUnavailableError) as caught,
    ):
        client.fetch(SGX, now=SGX_NOW)
    assert caught.value.code == "collateral.unreachable"
    assert sleeps == [0.25]


def test_server_errors_are_retried_with_backoff_then_succeed(sgx_pcs, sleeps) -> None:
    sgx_pcs.fail(SGX_PATHS[0], Route(b"busy", status=503), Route(b"busy", status=500))
    with _client(sgx_pcs, sleeps) as client:
        result = client.fetch(SGX, now=SGX_NOW)
    assert result.collateral == _bundle("sgx-v3-automata-00606a")
    assert sgx_pcs.paths()[:3] == [SGX_PATHS[0]] * 3
    assert sleeps == [0.5, 1.0]


def test_retry_after_is_honoured_but_capped(sgx_pcs, sleeps) -> None:
    sgx_pcs.fail(
        SGX_PATHS[1],
        Route(b"", {"Retry-After": "3"}, status=429),
        Route(b"", {"Retry-After": "3600"}, status=429),
    )
    with _client(sgx_pcs, sleeps, retry=RetryPolicy(attempts=3, max_backoff=5.0)) as client:
        client.fetch(SGX, now=SGX_NOW)
    assert sleeps == [3.0, 5.0]


def test_persistent_server_error_is_an_http_error_after_bounded_attempts(sgx_pcs, sleeps) -> None:
    sgx_pcs.fail(SGX_PATHS[0], *[Route(b"down", status=502)] * 5)
    with (
        _client(sgx_pcs, sleeps, retry=RetryPolicy(attempts=4)) as client,
        pytest.raises(CollateralUnavailableError) as caught,
    ):
        client.fetch(SGX, now=SGX_NOW)
    assert caught.value.code == "collateral.http_error"
    assert caught.value.details["status"] == 502
    assert sgx_pcs.paths() == [SGX_PATHS[0]] * 4
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "collateral.not_found"),
        (401, "collateral.unauthorized"),
        (400, "collateral.http_error"),
    ],
)
def test_client_errors_are_not_retried(sgx_pcs, sleeps, status, code) -> None:
    sgx_pcs.fail(SGX_PATHS[0], Route(b"no", status=status))
    with _client(sgx_pcs, sleeps) as client, pytest.raises(CollateralUnavailableError) as caught:
        client.fetch(SGX, now=SGX_NOW)
    assert caught.value.code == code
    assert caught.value.details["request_id"] == "req-1"
    assert sgx_pcs.paths() == [SGX_PATHS[0]]
    assert sleeps == []


def test_unknown_fmspc_is_not_found(sgx_pcs, sleeps) -> None:
    with _client(sgx_pcs, sleeps) as client, pytest.raises(CollateralUnavailableError) as caught:
        client.fetch(PcsRequest(tee="sgx", fmspc="00906ed50000", ca="platform"), now=SGX_NOW)
    assert caught.value.code == "collateral.not_found"


def test_missing_issuer_chain_header_is_a_bad_response_and_not_cached(sgx_pcs, sleeps) -> None:
    good = sgx_pcs.routes[SGX_PATHS[2]]
    sgx_pcs.fail(SGX_PATHS[2], Route(good.body, {}))
    with _client(sgx_pcs, sleeps) as client:
        with pytest.raises(CollateralUnavailableError) as caught:
            client.fetch(SGX, now=SGX_NOW)
        assert caught.value.code == "collateral.bad_response"
        assert "SGX-PCK-CRL-Issuer-Chain" in caught.value.message
        client.fetch(SGX, now=SGX_NOW)
    assert sgx_pcs.paths().count(SGX_PATHS[2]) == 2


@pytest.mark.parametrize("body", [b"<html>maintenance</html>", b'{"tcbInfo":{}}', b""])
def test_garbage_tcb_info_is_a_bad_response(sgx_pcs, sleeps, body) -> None:
    good = sgx_pcs.routes[SGX_PATHS[0]]
    sgx_pcs.fail(SGX_PATHS[0], Route(body, good.headers))
    with _client(sgx_pcs, sleeps) as client, pytest.raises(CollateralUnavailableError) as caught:
        client.fetch(SGX, now=SGX_NOW)
    assert caught.value.code == "collateral.bad_response"


def test_garbage_crl_is_a_bad_response(sgx_pcs, sleeps) -> None:
    sgx_pcs.fail(SGX_PATHS[3], Route(b"not a crl"))
    with _client(sgx_pcs, sleeps) as client, pytest.raises(CollateralUnavailableError) as caught:
        client.fetch(SGX, now=SGX_NOW)
    assert caught.value.code == "collateral.bad_response"


@pytest.mark.timeout(20)
def test_a_server_that_never_answers_times_out(sleeps) -> None:
    # A listening socket that never accepts: the TCP handshake completes (backlog) but no
    # HTTP response ever comes, the classic way a client hangs without a read timeout.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = PcsClient(
            PcsEndpoints(f"http://127.0.0.1:{port}"),
            timeout=0.2,
            retry=RetryPolicy(attempts=2),
            sleep=sleeps,
        )
        with client, pytest.raises(CollateralUnavailableError) as caught:
            client.fetch(SGX, now=SGX_NOW)
    assert caught.value.code == "collateral.unreachable"
    assert caught.value.details["reason"] == "timeout"
    assert sleeps == [0.5]


def test_request_is_derived_from_the_quote() -> None:
    sgx = parse_quote((CASES / "sgx-v3-automata-00606a.quote.bin").read_bytes())
    tdx = parse_quote((CASES / "tdx-v4-automata-0725.quote.bin").read_bytes())
    processor = parse_quote((CASES / "sgx-v3-phala.quote.bin").read_bytes())
    assert pcs_request_for_quote(sgx) == SGX
    assert pcs_request_for_quote(tdx) == TDX
    assert pcs_request_for_quote(processor) == PcsRequest("sgx", "00a067110000", "processor")


def test_quote_without_pck_chain_cannot_derive_a_request() -> None:
    eppid = VECTORS.parent / "dcap" / "sources" / "oasis-core" / "quote_v3_ecdsa_p256_eppid.bin"
    with pytest.raises(EvidenceError) as caught:
        pcs_request_for_quote(parse_quote(eppid.read_bytes()))
    assert caught.value.code == "quote.pck_chain_missing"


def test_collateral_source_for_quote(sleeps) -> None:
    with LoopbackPcs(site_routes("tdx-00806f050000")) as server:
        source = PcsCollateralSource(_client(server, sleeps))
        quote = parse_quote((VECTORS / "tdx-00806f050000" / "quote.bin").read_bytes())
        collateral = source.for_quote(quote, now=TDX_NOW)
        source.client.close()
    assert collateral == _bundle("tdx-v4-automata-0725")
    assert source.last_fetch is not None
    assert source.last_fetch.request == TDX


def test_endpoints_defaults_and_validation() -> None:
    intel = PcsEndpoints()
    assert intel.url("root_ca_crl", SGX) == INTEL_ROOT_CA_CRL_URL
    assert intel.url("tcb_info", TDX) == (
        "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=00806f050000"
    )
    pccs = PcsEndpoints("https://pccs.example:8081/")
    assert (
        pccs.url("root_ca_crl", SGX) == "https://pccs.example:8081/sgx/certification/v4/rootcacrl"
    )
    assert pccs.url("pck_crl", PcsRequest("tdx", "00806f050000", "processor")) == (
        "https://pccs.example:8081/sgx/certification/v4/pckcrl?ca=processor&encoding=der"
    )
    for bad in ("ftp://x", "pccs:8081", "https://"):
        with pytest.raises(UsageError):
            PcsEndpoints(bad)


@pytest.mark.parametrize(
    ("tee", "fmspc", "ca"),
    [
        ("sgx", "00606a", "platform"),
        ("sev", "00606a000000", "platform"),
        ("sgx", "zz606a000000", "platform"),
        ("sgx", "00606a000000", "root"),
    ],
)
def test_bad_requests_are_usage_errors(tee, fmspc, ca) -> None:
    with pytest.raises(UsageError) as caught:
        PcsRequest(tee, fmspc, ca)
    assert caught.value.code == "collateral.bad_request"


def test_service_recovery_after_an_outage_refreshes_the_cache(sgx_pcs, sleeps) -> None:
    with _client(sgx_pcs, sleeps, retry=RetryPolicy(attempts=1)) as client:
        client.fetch(SGX, now=SGX_NOW)
        sgx_pcs.stop()
        assert client.fetch(SGX, now=SGX_NOW + timedelta(days=2)).stale
        sgx_pcs.start()
        later = SGX_NOW + timedelta(days=2, hours=1)
        result = client.fetch(SGX, now=later)
    assert not result.stale
    assert all(r.fetched_at == later and not r.from_cache for r in result.resources)


def test_older_collateral_never_replaces_newer(sgx_pcs, sleeps) -> None:
    # The TDX site's Platform CA CRL is a month older than the SGX site's (same issuer).
    older = (VECTORS / "tdx-00806f050000" / "pck-crl-platform.der").read_bytes()
    newer = sgx_pcs.routes[SGX_PATHS[2]]
    with _client(sgx_pcs, sleeps) as client:
        first = client.fetch(SGX, now=SGX_NOW)
        sgx_pcs.fail(SGX_PATHS[2], Route(older, newer.headers))
        second = client.fetch(SGX, now=SGX_NOW + timedelta(days=2))
    assert second.collateral == first.collateral
    crl_status = second.resources[2]
    assert crl_status.from_cache
    assert crl_status.refresh_error == "collateral.rollback"
    assert not second.stale
    assert sgx_pcs.paths().count(SGX_PATHS[2]) == 2


def _tls_material(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """Return a server TLS context for 127.0.0.1 and the PEM file of the CA that issued it."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test PCCS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "server.pem").write_bytes(
        leaf.public_bytes(pem)
        + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem")
    return context, directory / "ca.pem"


def test_https_pccs_with_its_own_ca(tmp_path, sleeps) -> None:
    context, ca_file = _tls_material(tmp_path)
    with LoopbackPcs(site_routes("sgx-00606a"), tls=context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with PcsClient(PcsEndpoints(server.url), tls_ca_file=ca_file, sleep=sleeps) as client:
            result = client.fetch(SGX, now=SGX_NOW)
        assert result.collateral == _bundle("sgx-v3-automata-00606a")
        # Without the PCCS's CA the certificate is refused at once, without retries.
        with (
            PcsClient(PcsEndpoints(server.url), sleep=sleeps, timeout=2.0) as untrusting,
            pytest.raises(CollateralUnavailableError) as caught,
        ):
            untrusting.fetch(SGX, now=SGX_NOW)
    assert caught.value.code == "collateral.tls_error"
    assert sleeps == []


def test_tls_options_are_checked(tmp_path) -> None:
    with pytest.raises(UsageError) as caught:
        PcsClient(PcsEndpoints(), verify_tls=False, tls_ca_file=tmp_path / "ca.pem")
    assert caught.value.code == "collateral.bad_tls_option"
    with pytest.raises(UsageError):
        PcsClient(PcsEndpoints(), tls_ca_file=tmp_path / "missing.pem")


@pytest.mark.parametrize("part", ["header", "signature"])
def test_unusable_chain_or_signature_is_refused_before_caching(sgx_pcs, sleeps, part) -> None:
    good = sgx_pcs.routes[SGX_PATHS[0]]
    if part == "header":
        broken = Route(good.body, {"TCB-Info-Issuer-Chain": "not%20a%20certificate"})
    else:
        broken = Route(good.body.replace(b'"signature":"', b'"signature":"zz'), good.headers)
    sgx_pcs.fail(SGX_PATHS[0], broken)
    with _client(sgx_pcs, sleeps) as client:
        with pytest.raises(CollateralUnavailableError) as caught:
            client.fetch(SGX, now=SGX_NOW)
        assert caught.value.code == "collateral.bad_response"
        # Nothing bad was cached: the next fetch downloads again and succeeds.
        assert client.fetch(SGX, now=SGX_NOW).collateral == _bundle("sgx-v3-automata-00606a")
    assert sgx_pcs.paths().count(SGX_PATHS[0]) == 2


def test_api_key_stays_with_the_pcs_origin(sleeps) -> None:
    # The root CA CRL from another origin (as Intel's distribution point is) gets no key.
    with (
        LoopbackPcs(site_routes("sgx-00606a")) as pcs,
        LoopbackPcs(site_routes("sgx-00606a")) as other,
    ):
        endpoints = PcsEndpoints(pcs.url, root_ca_crl_url=f"{other.url}/IntelSGXRootCA.der")
        with PcsClient(endpoints, api_key="k3y", sleep=sleeps, timeout=2.0) as client:
            client.fetch(SGX, now=SGX_NOW)
        assert [h.get(API_KEY_HEADER) for _, h in pcs.requests] == ["k3y"] * 3
        assert [h.get(API_KEY_HEADER) for _, h in other.requests] == [None]


def test_api_key_is_not_replayed_to_a_redirect_target(sleeps) -> None:
    with LoopbackPcs(site_routes("sgx-00606a")) as other:
        routes = site_routes("sgx-00606a")
        tcb = next(path for path in routes if "/tcb?" in path)
        routes[tcb] = Route(b"", {"Location": f"{other.url}{tcb}"}, status=307)
        with LoopbackPcs(routes) as pcs:
            with (
                PcsClient(PcsEndpoints(pcs.url), api_key="k3y", sleep=sleeps, timeout=2.0) as c,
                pytest.raises(CollateralUnavailableError) as caught,
            ):
                c.fetch(SGX, now=SGX_NOW)
            assert caught.value.code == "collateral.http_error"
        assert [h.get(API_KEY_HEADER) for _, h in other.requests] == []
    # Without a key there is nothing to leak: redirects are followed as before.
    with LoopbackPcs(site_routes("sgx-00606a")) as other:
        routes = site_routes("sgx-00606a")
        routes[tcb] = Route(b"", {"Location": f"{other.url}{tcb}"}, status=307)
        with LoopbackPcs(routes) as pcs, PcsClient(PcsEndpoints(pcs.url), sleep=sleeps) as c:
            c.fetch(SGX, now=SGX_NOW)
        assert [p for p, _ in other.requests] == [tcb]
