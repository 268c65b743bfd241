"""Uploads that follow the analysis: a layer is uploaded as it is read, committed once verified."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest
from converter_images import BuiltImage, RegistryServer, build_image, file

from sanctum.converter.analysis import analyse_image
from sanctum.converter.convert import (
    ConvertRequest,
    _SpoolAbandonedError,
    _StreamedSpool,
    convert,
)
from sanctum.converter.errors import ImageError
from sanctum.converter.oci import Manifest, open_sink, open_source

LAUNCHER = b"#!/bin/sh\necho launcher\n"


def _spool(tmp_path: Path) -> _StreamedSpool:
    fd, name = tempfile.mkstemp(dir=tmp_path, prefix="layer-")
    return _StreamedSpool(Path(name), fd)


def _drain(spool: _StreamedSpool, got: list[bytes], outcome: list[object]) -> None:
    try:
        while chunk := spool.read(1000):
            got.append(chunk)
        outcome.append("eof")
    except _SpoolAbandonedError as error:
        outcome.append(error)


def test_the_reader_follows_the_writer_and_ends_only_after_a_verified_end(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    got: list[bytes] = []
    outcome: list[object] = []
    reader = threading.Thread(target=_drain, args=(spool, got, outcome))
    reader.start()
    parts = [os.urandom(2500) for _ in range(3)]
    for part in parts:
        spool.write(part)
    # Everything written is readable, but the end is not reached while the writer is open.
    assert not outcome
    spool.end(verified=True)
    reader.join(timeout=30)
    assert outcome == ["eof"]
    assert b"".join(got) == b"".join(parts)
    spool.release()
    assert not spool.path.exists()


def test_an_unverified_end_makes_the_reader_fail(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    got: list[bytes] = []
    outcome: list[object] = []
    spool.write(b"x" * 5000)
    reader = threading.Thread(target=_drain, args=(spool, got, outcome))
    reader.start()
    spool.end(verified=False)
    reader.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], _SpoolAbandonedError)
    spool.release()
    assert not spool.path.exists()


def _image(tmp_path: Path) -> BuiltImage:
    big = os.urandom(3 << 20)
    layers = [
        [file(f"layer{i}/data", big[i:] + big[:i]), file(f"layer{i}/small", b"s")] for i in range(4)
    ]
    return build_image(tmp_path / "layout", layers)


def _request(registry: RegistryServer, repository: str) -> ConvertRequest:
    return ConvertRequest.model_validate(
        {
            "inputImageName": "oci:in",
            "outputImageName": registry.ref(repository, "1"),
            "debug": True,
        }
    )


@pytest.mark.registry
def test_layers_stream_to_a_registry_while_they_are_analysed(
    tmp_path: Path, registry: RegistryServer
) -> None:
    image = _image(tmp_path)
    request = _request(registry, "streamed/app")
    with open_source(image.ref) as source, open_sink(request.output_image_name) as sink:
        response = convert(
            request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None
        )
    assert response.layers_uploaded == 4
    with open_source(request.output_image_name) as pulled, open_source(image.ref) as original:
        assert pulled.manifest().digest == response.image_digest
        copied = analyse_image(pulled, workers=3).files
        expected = analyse_image(original).files
    # Everything but the runtime layer (the last one: /sanctum, and /tmp when missing).
    runtime = len(Manifest.parse(image.manifest).layers)
    assert {p: e for p, e in copied.items() if e.layer != runtime} == expected


@pytest.mark.registry
def test_a_corrupt_layer_is_never_committed_to_the_registry(
    tmp_path: Path, registry: RegistryServer
) -> None:
    image = _image(tmp_path)
    corrupt = Manifest.parse(image.manifest).layers[2]
    path = image.layout / "blobs" / "sha256" / corrupt.digest.removeprefix("sha256:")
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # In the gzip trailer's CRC-32: the tar reads fine, the end does not.
    path.write_bytes(bytes(data))
    request = _request(registry, "corrupt/app")
    with open_source(image.ref) as source, open_sink(request.output_image_name) as sink:
        with pytest.raises(ImageError) as info:
            convert(request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None)
        assert info.value.code in {"image.digest_mismatch", "image.malformed"}
        assert not sink.has_blob(corrupt.digest)
    with open_source(request.output_image_name) as target, pytest.raises(ImageError) as missing:
        target.manifest()
    assert missing.value.code == "image.not_found"
