"""``sanctum convert`` between archive transports: oci-archive in and out, gzip docker-archive."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

from click.testing import CliRunner
from converter_images import build_image, file

from sanctum.cli.main import cli
from sanctum.converter.oci import copy_image, open_sink, open_source

FLAGS = ["--debug", "--target", "simulated", "--offline", "--json"]


def test_convert_reads_and_writes_archives_from_the_command_line(tmp_path: Path) -> None:
    image = build_image(tmp_path / "layout", [[file("bin/app", b"#!/bin/sh\necho hi\n", 0o755)]])
    first = tmp_path / "shielded.tar"
    result = CliRunner().invoke(cli, ["convert", image.ref, f"oci-archive:{first}:s", *FLAGS])
    assert result.exit_code == 0, result.output
    response = json.loads(result.output)
    with open_source(f"oci-archive:{first}:s") as written:
        assert written.manifest().digest == response["imageDigest"]
        assert written.manifest().layers[0].digest == image.layers[0]["digest"]
    # An oci-archive of the original image in, a docker-archive compressed as a whole out.
    original = tmp_path / "original.tar"
    with open_source(image.ref) as source, open_sink(f"oci-archive:{original}:o") as sink:
        copy_image(source, sink)
    second = tmp_path / "shielded.tar.gz"
    result = CliRunner().invoke(
        cli, ["convert", f"oci-archive:{original}:o", f"docker-archive:{second}:app:2", *FLAGS]
    )
    assert result.exit_code == 0, result.output
    with gzip.open(second) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        names = {member.name for member in tar}
    assert "manifest.json" in names
    with open_source(f"docker-archive:{second}") as archive:
        assert archive.config().digest == json.loads(result.output)["configDigest"]


def test_a_missing_oci_archive_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["convert", f"oci-archive:{tmp_path / 'absent.tar'}", f"oci:{tmp_path / 'o'}", *FLAGS]
    )
    assert result.exit_code != 0
    assert "absent.tar" in result.output
