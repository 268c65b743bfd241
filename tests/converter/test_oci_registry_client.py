"""The registry client against an in-process fake (httpx MockTransport): auth and errors."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from sanctum.converter.errors import ImageError, RegistryAuthError, RegistryUnavailable
from sanctum.converter.oci import RegistryAuth, RegistryReference, parse_image_reference
from sanctum.converter.oci.model import OCI_CONFIG, OCI_LAYER_GZIP, Descriptor, Manifest, digest_of
from sanctum.converter.oci.registry import (
    RegistryClient,
    RegistrySource,
    auth_from_docker_config,
    parse_www_authenticate,
)
from sanctum.errors import UsageError

CONFIG = json.dumps(
    {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
).encode()
LAYER = b"layer-bytes"
MANIFEST = Manifest.build(
    Descriptor(OCI_CONFIG, digest_of(CONFIG), len(CONFIG)),
    [Descriptor(OCI_LAYER_GZIP, digest_of(LAYER), len(LAYER))],
)


def _source(handler, *, auth=None, ref="registry.example.com/team/app:1") -> RegistrySource:
    reference = parse_image_reference(ref)
    assert isinstance(reference, RegistryReference)
    client = RegistryClient(
        reference, auth=auth, transport=httpx.MockTransport(handler), sleep=lambda _: None
    )
    return RegistrySource(reference, client)


class _Body(httpx.SyncByteStream):
    """A response body that streams (a plain ``content=`` response is pre-read by httpx)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self):
        yield self.data[:5]
        yield self.data[5:]


def _ok(data: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, stream=_Body(data), headers=headers)


def _serve(request: httpx.Request, blobs: dict[str, bytes] | None = None) -> httpx.Response:
    path = request.url.path
    if path.endswith(("/manifests/1", MANIFEST.digest)):
        return _ok(MANIFEST.raw, {"Content-Type": MANIFEST.media_type})
    for data in (blobs or {digest_of(CONFIG): CONFIG, digest_of(LAYER): LAYER}).items():
        if path.endswith(data[0]):
            return _ok(data[1])
    return httpx.Response(404)


def test_www_authenticate_parsing():
    scheme, params = parse_www_authenticate(
        'Bearer realm="https://auth.example/token",service="reg",'
        'scope="repository:a/b:pull repository:c:pull",error="insufficient_scope"'
    )
    assert scheme == "bearer"
    assert params["realm"] == "https://auth.example/token"
    assert params["scope"] == "repository:a/b:pull repository:c:pull"
    assert parse_www_authenticate('Basic realm="x"') == ("basic", {"realm": "x"})


def test_bearer_flow_uses_basic_credentials_at_the_token_endpoint():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "auth.example.com":
            expected = "Basic " + base64.b64encode(b"alice:pw").decode()
            if request.headers.get("Authorization") != expected:
                return httpx.Response(401)
            assert request.url.params.get_list("scope") == ["repository:team/app:pull"]
            assert request.url.params["service"] == "reg"
            return httpx.Response(200, json={"access_token": "tok123"})
        if request.headers.get("Authorization") != "Bearer tok123":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://auth.example.com/token",'
                    'service="reg",scope="repository:team/app:pull"'
                },
            )
        return _serve(request)

    with _source(handler, auth=RegistryAuth("alice", "pw")) as source:
        assert source.manifest().digest == MANIFEST.digest
        assert source.config().architecture == "amd64"
        with source.open_blob(MANIFEST.layers[0]) as blob:
            assert blob.read() == LAYER
    assert str(seen[0].url).startswith("https://registry.example.com/v2/team/app/manifests/1")
    # One challenge, one token, then every request carries the token.
    assert sum(1 for r in seen if r.url.host == "auth.example.com") == 1
    with (
        pytest.raises(RegistryAuthError) as info,
        _source(handler, auth=RegistryAuth("alice", "wrong")) as source,
    ):
        source.manifest()
    assert info.value.code == "registry.auth_failed"
    assert "pw" not in repr(RegistryAuth("alice", "pw"))


def test_basic_challenge_without_credentials_is_an_auth_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    with pytest.raises(RegistryAuthError) as info, _source(handler) as source:
        source.manifest()
    assert "no credentials" in info.value.message


def test_redirected_blob_download_does_not_leak_credentials():
    storage: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "storage.example.net":
            storage.append(request)
            return _ok(LAYER)
        if request.headers.get("Authorization") is None:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if "/blobs/" in request.url.path:
            return httpx.Response(307, headers={"Location": "https://storage.example.net/x"})
        return _serve(request)

    with (
        _source(handler, auth=RegistryAuth("u", "p")) as source,
        source.open_blob(MANIFEST.layers[0]) as blob,
    ):
        assert blob.read() == LAYER
    assert "Authorization" not in storage[0].headers


def test_server_errors_and_unreachable_registry():
    with (
        pytest.raises(RegistryUnavailable) as info,
        _source(lambda _: httpx.Response(503)) as source,
    ):
        source.manifest()
    assert info.value.code == "registry.http_error"
    assert info.value.retryable

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RegistryUnavailable) as info, _source(down) as source:
        source.manifest()
    assert info.value.code == "registry.unreachable"
    with pytest.raises(RegistryAuthError), _source(lambda _: httpx.Response(403)) as source:
        source.manifest()


def test_substituted_manifest_and_blob_are_refused():
    other = MANIFEST.raw.replace(b'"layers"', b' "layers"')

    def wrong_manifest(request: httpx.Request) -> httpx.Response:
        return _ok(other, {"Content-Type": MANIFEST.media_type})

    ref = f"registry.example.com/team/app@{MANIFEST.digest}"
    with pytest.raises(ImageError) as info, _source(wrong_manifest, ref=ref) as source:
        source.manifest()
    assert info.value.code == "image.digest_mismatch"

    def wrong_header(request: httpx.Request) -> httpx.Response:
        return _ok(
            MANIFEST.raw,
            {"Content-Type": MANIFEST.media_type, "Docker-Content-Digest": digest_of(b"")},
        )

    with pytest.raises(ImageError) as info, _source(wrong_header) as source:
        source.manifest()
    assert info.value.code == "image.digest_mismatch"

    def corrupt_blob(request: httpx.Request) -> httpx.Response:
        bad = {digest_of(CONFIG): CONFIG, digest_of(LAYER): b"LAYER-bytes"}
        return _serve(request, bad)

    with (
        pytest.raises(ImageError) as info,
        _source(corrupt_blob) as source,
        source.open_blob(MANIFEST.layers[0]) as blob,
    ):
        blob.read()
    assert info.value.code == "image.digest_mismatch"
    with pytest.raises(ImageError) as info, _source(_serve) as source:
        source.open_blob(Descriptor(OCI_LAYER_GZIP, digest_of(b"absent"), 6))
    assert info.value.code == "image.not_found"


def test_plain_http_only_for_loopback_without_tls_or_when_unsafe(tmp_path: Path):
    def base_url(ref: str, handler=None, **kwargs) -> str:
        reference = parse_image_reference(ref)
        assert isinstance(reference, RegistryReference)
        transport = httpx.MockTransport(handler or (lambda _: httpx.Response(200)))
        with RegistryClient(reference, transport=transport, **kwargs) as client:
            client.head_blob(digest_of(b""))
            return client.base_url

    def no_tls(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER]", request=request)
        return httpx.Response(404)

    assert base_url("docker://127.0.0.1:5000/a", no_tls) == "http://127.0.0.1:5000"
    assert base_url("docker://localhost:5000/a", no_tls) == "http://localhost:5000"
    assert base_url("docker://[::1]:5000/a", no_tls) == "http://[::1]:5000"
    assert base_url("docker://127.0.0.1:5000/a") == "https://127.0.0.1:5000"
    with pytest.raises(RegistryUnavailable):
        base_url("docker://reg.example.com/a", no_tls)
    assert base_url("docker://reg.example.com/a") == "https://reg.example.com"
    assert base_url("docker://reg.example.com/a", unsafe_plain_http=True) == (
        "http://reg.example.com"
    )
    with pytest.raises(UsageError) as info:
        base_url("docker://reg.example.com/a", verify=str(tmp_path / "missing.pem"))
    assert info.value.code == "registry.bad_ca_bundle"


def test_docker_config_credentials(tmp_path: Path):
    config = tmp_path / "config.json"
    pair = base64.b64encode(b"alice:pa:ss").decode()
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://reg.example.com/v1/": {"auth": pair},
                    "other.example.com:5000": {"username": "bob", "password": "pw"},
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:x").decode()},
                },
            }
        )
    )
    assert auth_from_docker_config(config, "reg.example.com") == RegistryAuth("alice", "pa:ss")
    assert auth_from_docker_config(config, "other.example.com:5000") == RegistryAuth("bob", "pw")
    assert auth_from_docker_config(config, "docker.io") == RegistryAuth("hub", "x")
    assert auth_from_docker_config(config, "unknown.example.com") is None
    config.write_text(json.dumps({"auths": {"reg.example.com": {"auth": "!!notbase64"}}}))
    with pytest.raises(UsageError) as info:
        auth_from_docker_config(config, "reg.example.com")
    assert info.value.code == "registry.bad_docker_config"
    with pytest.raises(UsageError):
        auth_from_docker_config(tmp_path / "missing.json", "reg.example.com")


def _helper(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_credential_helpers_and_identity_tokens(tmp_path: Path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    _helper(
        bin_dir,
        "store",
        'read server\ncase "$server" in\n'
        '  reg.example.com) echo \'{"Username":"carol","Secret":"from-store"}\' ;;\n'
        '  tok.example.com) echo \'{"Username":"<token>","Secret":"refresh-me"}\' ;;\n'
        '  *) echo "credentials not found in native keychain"; exit 1 ;;\n'
        "esac\n",
    )
    _helper(bin_dir, "broken", "exit 3\n")
    config = tmp_path / "config.json"
    inline = base64.b64encode(b"dave:inline").decode()
    config.write_text(
        json.dumps(
            {
                "credsStore": "store",
                "credHelpers": {"special.example.com": "broken"},
                "auths": {
                    "fallback.example.com": {"auth": inline},
                    "oauth.example.com": {"identitytoken": "idtok"},
                },
            }
        )
    )
    assert auth_from_docker_config(config, "reg.example.com") == RegistryAuth("carol", "from-store")
    from_token = auth_from_docker_config(config, "tok.example.com")
    assert from_token is not None
    assert from_token.identity_token == "refresh-me"
    assert "refresh-me" not in repr(from_token)
    # The store has nothing: the inline entry is used.
    assert auth_from_docker_config(config, "fallback.example.com") == RegistryAuth("dave", "inline")
    oauth = auth_from_docker_config(config, "oauth.example.com")
    assert oauth is not None
    assert oauth.identity_token == "idtok"
    with pytest.raises(UsageError) as info:
        auth_from_docker_config(config, "special.example.com")
    assert info.value.code == "registry.credential_helper_failed"
    config.write_text(json.dumps({"credsStore": "absent-helper"}))
    with pytest.raises(UsageError) as info:
        auth_from_docker_config(config, "reg.example.com")
    assert "not on PATH" in info.value.message


def test_identity_token_is_exchanged_with_an_oauth2_refresh_grant():
    posts: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            assert request.method == "POST"
            assert "Authorization" not in request.headers
            form = parse_qs(request.content.decode())
            posts.append(form)
            if form.get("refresh_token") != ["idtok"]:
                return httpx.Response(401)
            return httpx.Response(200, json={"access_token": "acc"})
        if request.headers.get("Authorization") != "Bearer acc":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://auth.example.com/oauth2/token",'
                    'service="reg"'
                },
            )
        return _serve(request)

    auth = RegistryAuth("", "", identity_token="idtok")
    with _source(handler, auth=auth) as source:
        assert source.manifest().digest == MANIFEST.digest
    assert posts[0]["grant_type"] == ["refresh_token"]
    assert posts[0]["service"] == ["reg"]
    assert posts[0]["scope"] == ["repository:team/app:pull"]
