"""Retries of transient registry failures: fake transport, and a real registry behind a fault.

GET and HEAD are retried on connection errors, 429 (honouring ``Retry-After`` up to a cap) and
5xx; a download that breaks resumes with ``Range``; a blob upload whose session is lost restarts
from scratch when its content can be read again; authentication and validation errors are never
retried; the budget ends in a typed ``RegistryUnavailable``. Waits go to a fake ``sleep``.
"""

from __future__ import annotations

import email.utils
import io
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from converter_images import RegistryServer, build_image, file

from sanctum.converter.analysis import analyse_image
from sanctum.converter.convert import ConvertRequest, convert
from sanctum.converter.errors import ImageError, RegistryAuthError, RegistryUnavailable
from sanctum.converter.oci import RegistryReference, open_source, parse_image_reference
from sanctum.converter.oci.model import OCI_CONFIG, OCI_LAYER_GZIP, Descriptor, Manifest, digest_of
from sanctum.converter.oci.registry import (
    RegistryClient,
    RegistrySink,
    RegistrySource,
    RetryPolicy,
)
from sanctum.converter.oci.store import BlobReader
from sanctum.errors import UnavailableError, UsageError

CONFIG = json.dumps(
    {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
).encode()
LAYER = bytes(range(256)) * 40
LAYER_DESC = Descriptor(OCI_LAYER_GZIP, digest_of(LAYER), len(LAYER))
MANIFEST = Manifest.build(Descriptor(OCI_CONFIG, digest_of(CONFIG), len(CONFIG)), [LAYER_DESC])
REF = "registry.example.com/team/app:1"

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler, sleeps: list[float], **kwargs: object) -> RegistryClient:
    reference = parse_image_reference(REF)
    assert isinstance(reference, RegistryReference)
    return RegistryClient(
        reference,
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        **kwargs,  # type: ignore[arg-type]
    )


def _source(handler: Handler, sleeps: list[float], **kwargs: object) -> RegistrySource:
    client = _client(handler, sleeps, **kwargs)
    return RegistrySource(client.reference, client)


def _sink(handler: Handler, sleeps: list[float], **kwargs: object) -> RegistrySink:
    client = _client(handler, sleeps, **kwargs)
    return RegistrySink(client.reference, client)


class _Body(httpx.SyncByteStream):
    """A streamed body (a ``content=`` response would be pre-read by httpx)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data


def _manifest_ok() -> httpx.Response:
    headers = {"Content-Type": MANIFEST.media_type}
    return httpx.Response(200, stream=_Body(MANIFEST.raw), headers=headers)


def _failing_then(failures: list[httpx.Response | Exception], seen: list[str]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if failures:
            failure = failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return _manifest_ok()

    return handler


def test_get_is_retried_on_5xx_and_connection_errors_with_doubling_backoff() -> None:
    seen: list[str] = []
    sleeps: list[float] = []
    request = httpx.Request("GET", "https://registry.example.com/")
    failures: list[httpx.Response | Exception] = [
        httpx.Response(503),
        httpx.ConnectError("refused", request=request),
        httpx.Response(502),
    ]
    with _source(_failing_then(failures, seen), sleeps) as source:
        assert source.manifest().digest == MANIFEST.digest
    assert seen == ["GET"] * 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_429_honours_retry_after_up_to_the_cap() -> None:
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True)
    failures: list[httpx.Response | Exception] = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": "3600"}),
        httpx.Response(429, headers={"Retry-After": date}),
        httpx.Response(429, headers={"Retry-After": "soon"}),
    ]
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=5, max_retry_after=30.0)
    with _source(_failing_then(failures, []), sleeps, retry=policy, clock=lambda: now) as source:
        source.manifest()
    # 7 s as asked, 3600 cut to the 30 s cap, an HTTP date 12 s ahead, junk -> own backoff.
    assert sleeps == [7.0, 30.0, 12.0, 4.0]


def test_the_budget_ends_in_a_typed_unavailable_error() -> None:
    seen: list[str] = []
    sleeps: list[float] = []
    with (
        _source(lambda r: seen.append(r.method) or httpx.Response(500), sleeps) as source,
        pytest.raises(RegistryUnavailable) as info,
    ):
        source.manifest()
    assert isinstance(info.value, UnavailableError)
    assert info.value.retryable
    assert info.value.code == "registry.http_error"
    assert info.value.details["attempts"] == 4
    assert len(seen) == 4
    assert sleeps == [0.5, 1.0, 2.0]

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with _source(down, []) as source, pytest.raises(RegistryUnavailable) as info:
        source.manifest()
    assert info.value.code == "registry.unreachable"


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_auth_and_validation_answers_are_never_retried(status: int) -> None:
    seen: list[str] = []
    sleeps: list[float] = []
    headers = {"WWW-Authenticate": 'Basic realm="r"'} if status == 401 else None
    with (
        _source(
            lambda r: seen.append(r.method) or httpx.Response(status, headers=headers), sleeps
        ) as source,
        pytest.raises((RegistryAuthError, ImageError, RegistryUnavailable)) as info,
    ):
        source.manifest()
    assert seen == ["GET"]
    assert sleeps == []
    if status in {401, 403}:
        assert isinstance(info.value, RegistryAuthError)


def test_a_certificate_failure_is_not_retried() -> None:
    seen: list[str] = []

    def bad_cert(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] bad", request=request)

    with _source(bad_cert, []) as source, pytest.raises(RegistryUnavailable) as info:
        source.manifest()
    assert info.value.code == "registry.tls_error"
    assert seen == ["GET"]


def test_an_invalid_policy_is_refused() -> None:
    with pytest.raises(UsageError):
        RetryPolicy(attempts=0)


class _Breaking(httpx.SyncByteStream):
    """A body that delivers ``data[:cut]`` and then breaks like a dropped connection."""

    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut = data, cut

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.cut]
        raise httpx.ReadError("connection reset by peer")


def _blob_server(mode: str, ranges: list[str | None]) -> Handler:
    """Serve LAYER, breaking the first download after 1000 bytes; answer Range per ``mode``."""

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("Range"))
        if len(ranges) == 1:
            cut = len(LAYER) if mode == "all-but-the-end" else 1000
            return httpx.Response(200, stream=_Breaking(LAYER, cut))
        if mode == "all-but-the-end":
            return httpx.Response(416)  # Nothing left to send.
        start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
        if mode == "range":
            headers = {"Content-Range": f"bytes {start}-{len(LAYER) - 1}/{len(LAYER)}"}
            return httpx.Response(206, stream=_Body(LAYER[start:]), headers=headers)
        if mode == "wrong-range":
            headers = {"Content-Range": f"bytes 0-{len(LAYER) - 1}/{len(LAYER)}"}
            return httpx.Response(206, stream=_Body(LAYER), headers=headers)
        if mode == "ignores-range":
            return httpx.Response(200, stream=_Body(LAYER))
        return httpx.Response(200, stream=_Breaking(LAYER, 1000))  # Keeps breaking.

    return handler


@pytest.mark.parametrize("mode", ["range", "ignores-range", "all-but-the-end"])
def test_a_broken_download_resumes_and_is_verified(mode: str) -> None:
    ranges: list[str | None] = []
    sleeps: list[float] = []
    with (
        _source(_blob_server(mode, ranges), sleeps) as source,
        source.open_blob(LAYER_DESC) as blob,
    ):
        assert blob.readall() == LAYER
        assert blob.verified
    offset = len(LAYER) if mode == "all-but-the-end" else 1000
    assert ranges == [None, f"bytes={offset}-"]
    assert sleeps == [0.5]


def test_a_download_that_keeps_breaking_or_resumes_wrongly_is_unavailable() -> None:
    with (
        _source(_blob_server("keeps-breaking", []), []) as source,
        source.open_blob(LAYER_DESC) as blob,
        pytest.raises(RegistryUnavailable) as info,
    ):
        blob.readall()
    assert info.value.code == "registry.unreachable"
    assert info.value.details["attempts"] == 4
    with (
        _source(_blob_server("wrong-range", []), []) as source,
        source.open_blob(LAYER_DESC) as blob,
        pytest.raises(RegistryUnavailable),
    ):
        blob.readall()


class _UploadServer:
    """A fake upload endpoint that loses the first ``lose`` sessions (404 BLOB_UPLOAD_UNKNOWN)."""

    def __init__(self, lose: int, *, status: int = 404) -> None:
        self.lose, self.status = lose, status
        self.sessions = 0
        self.stored: bytes | None = None
        self.log: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request.method)
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            self.sessions += 1
            return httpx.Response(202, headers={"Location": f"/v2/upload/{self.sessions}"})
        if request.method == "DELETE":
            return httpx.Response(204)
        body = request.read()
        if self.sessions <= self.lose:
            errors = {"errors": [{"code": "BLOB_UPLOAD_UNKNOWN"}]} if self.status == 404 else {}
            return httpx.Response(self.status, json=errors)
        self.stored = body
        return httpx.Response(201)


@pytest.mark.parametrize("status", [404, 500, 503])
def test_a_lost_upload_session_restarts_from_scratch_when_the_content_rereads(
    status: int,
) -> None:
    server = _UploadServer(lose=2, status=status)
    sleeps: list[float] = []
    with _sink(server, sleeps) as sink:
        sink.put_blob(LAYER_DESC, io.BytesIO(LAYER))
    assert server.sessions == 3
    assert server.stored == LAYER
    assert sleeps == [0.5, 1.0]


def test_an_upload_from_a_one_shot_stream_is_not_restarted() -> None:
    server = _UploadServer(lose=1)
    with _sink(server, []) as sink, pytest.raises(RegistryUnavailable) as info:
        sink.put_blob(LAYER_DESC, BlobReader(iter([LAYER]), LAYER_DESC))
    assert info.value.code == "registry.upload_lost"
    assert server.sessions == 1
    assert server.log[-1] == "DELETE"  # The session is cancelled.


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]}), ImageError),
        (httpx.Response(400, json={"errors": [{"code": "UNSUPPORTED"}]}), RegistryUnavailable),
        (httpx.Response(202), RegistryUnavailable),  # 201 was due.
        (httpx.Response(403), RegistryAuthError),
    ],
)
def test_an_upload_is_not_restarted_on_answers_that_would_repeat(
    answer: httpx.Response, error: type[Exception]
) -> None:
    sessions: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            sessions.append("new")
            return httpx.Response(202, headers={"Location": "/v2/upload/1"})
        if request.method == "PUT":
            return answer
        return httpx.Response(204)

    sleeps: list[float] = []
    with _sink(handler, sleeps) as sink, pytest.raises(error):
        sink.put_blob(LAYER_DESC, io.BytesIO(LAYER))
    assert sessions == ["new"]
    assert sleeps == []


# A real registry behind an injected fault --------------------------------------------------------


class _Faulty(httpx.BaseTransport):
    """A real transport to the registry that breaks the first download and upload of each blob.

    The first GET of a blob path delivers 1000 bytes and then breaks; the first streamed upload
    of a layer (a PATCH or PUT with a body) is answered as a lost session (the request never
    reaches the registry).
    """

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self.broken_downloads: set[str] = set()
        self.lost_uploads = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        with self._lock:
            first_download = (
                request.method == "GET"
                and "/blobs/sha256:" in path
                and "Range" not in request.headers
                and path not in self.broken_downloads
            )
            if first_download:
                self.broken_downloads.add(path)
            lose = request.method in {"PATCH", "PUT"} and "/blobs/uploads/" in path
            lose = lose and self.lost_uploads == 0 and "digest=" in str(request.url.query)
            if lose:
                self.lost_uploads += 1
        if lose:
            for _ in request.stream:  # type: ignore[union-attr]
                pass  # Take the body, as a server that then fails would.
            return httpx.Response(404, json={"errors": [{"code": "BLOB_UPLOAD_UNKNOWN"}]})
        response = self._inner.handle_request(request)
        if first_download and response.status_code == 200:
            data = b"".join(response.stream)  # type: ignore[union-attr]
            response.close()
            return httpx.Response(200, headers=response.headers, stream=_Breaking(data, 1000))
        return response

    def close(self) -> None:
        self._inner.close()


@pytest.mark.registry
def test_conversion_through_a_faulty_link_to_a_real_registry(
    tmp_path: Path, registry: RegistryServer
) -> None:
    image = build_image(
        tmp_path / "layout",
        [[file("a/one", b"1" * 5000)], [file("b/two", bytes(range(256)) * 100)]],
    )
    request = ConvertRequest.model_validate(
        {
            "inputImageName": "oci:in",
            "outputImageName": registry.ref("faulty/app", "1"),
            "debug": True,
        }
    )
    reference = parse_image_reference(request.output_image_name)
    assert isinstance(reference, RegistryReference)
    faulty = _Faulty()
    sleeps: list[float] = []
    client = RegistryClient(
        reference, push=True, transport=faulty, sleep=sleeps.append, unsafe_plain_http=True
    )
    with open_source(image.ref) as source, RegistrySink(reference, client) as sink:
        response = convert(
            request, source=source, sink=sink, launcher_asset=b"#!/bin/sh\n", gramine_tools=None
        )
    assert faulty.lost_uploads == 1
    assert response.layers_uploaded == 2
    assert sleeps  # The lost session was waited for and the layer sent again.
    # Read back through the faulty link: every blob download breaks once and resumes.
    source_client = RegistryClient(
        reference, transport=faulty, sleep=sleeps.append, unsafe_plain_http=True
    )
    with RegistrySource(reference, source_client) as pulled, open_source(image.ref) as original:
        assert pulled.manifest().digest == response.image_digest
        copied = analyse_image(pulled).files
        expected = analyse_image(original).files
    assert len(faulty.broken_downloads) == 4  # The config, two layers, the runtime layer.
    assert {p: e for p, e in copied.items() if e.layer != 2} == expected


def test_the_token_endpoint_is_retried_on_server_errors_and_connection_failures() -> None:
    token_answers: list[httpx.Response | Exception] = [
        httpx.Response(503),
        httpx.ConnectError("refused", request=httpx.Request("GET", "https://auth.example.com/")),
        httpx.Response(200, json={"token": "t0k3n"}),
    ]
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            answer = token_answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        if request.headers.get("Authorization") != "Bearer t0k3n":
            challenge = 'Bearer realm="https://auth.example.com/token",service="r"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return _manifest_ok()

    with _source(handler, sleeps) as source:
        assert source.manifest().digest == MANIFEST.digest
    assert sleeps == [0.5, 1.0]
    assert token_answers == []


def test_a_session_that_could_not_be_opened_is_retried_even_for_a_one_shot_stream() -> None:
    posts: list[int] = []
    stored: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(1)
            if len(posts) == 1:
                return httpx.Response(503)
            return httpx.Response(202, headers={"Location": "/v2/upload/1"})
        if request.method == "PUT":
            stored.append(request.read())
            return httpx.Response(201)
        return httpx.Response(204)

    sleeps: list[float] = []
    with _sink(handler, sleeps) as sink:
        sink.put_blob(LAYER_DESC, BlobReader(iter([LAYER]), LAYER_DESC))
    assert len(posts) == 2
    assert stored == [LAYER]
    assert sleeps == [0.5]


def test_a_mount_is_asked_again_after_a_server_error() -> None:
    answers = [httpx.Response(502), httpx.Response(201)]
    sleeps: list[float] = []
    with _sink(lambda _: answers.pop(0), sleeps) as sink:
        assert sink.mount_blob(LAYER_DESC.digest, "team/other")
    assert sleeps == [0.5]
