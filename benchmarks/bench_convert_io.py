"""Image I/O throughput: Sanctum's streaming copy and analysis against skopeo, same run.

Generates an OCI layout with N zstd layers of varied (incompressible) data, starts Debian's
docker-registry on 127.0.0.1, then times:

- push: layout -> registry (skopeo copy vs sanctum copy_image), fresh repositories;
- pull: registry -> OCI layout (skopeo copy vs sanctum copy_image);
- re-push: pushing the same image again (Sanctum uploads nothing, only HEADs);
- analyse: Sanctum's analyse_image from the registry (decompress, walk tar, hash every file);
- inflate: zlib against ISA-L (what Sanctum uses) on a realistic gzip layer (a tar of this
  machine's shared libraries, level 6), CPU time.

Prints MiB/s, the ratio Sanctum/skopeo, and the process's peak RSS. F2's bench_convert.py
covers the whole conversion.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import zstandard

from sanctum.converter.analysis import analyse_image
from sanctum.converter.oci import copy_image, open_sink, open_source
from sanctum.converter.oci.compression import gzip_inflater

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Generated:
    """``size`` bytes of varied data (random 1 MiB blocks with a counter), produced lazily."""

    def __init__(self, size: int, seed: bytes) -> None:
        self.left, self.block, self.counter = size, os.urandom(1 << 20), 0
        self.current, self.offset = b"", 0
        self.seed = seed

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        if self.offset >= len(self.current):
            self.counter += 1
            self.current = self.seed + self.counter.to_bytes(8, "little") + self.block[16:]
            self.offset = 0
        data = self.current[self.offset : self.offset + size]
        self.offset += len(data)
        self.left -= len(data)
        return data


class Tee:
    """Hash what is written, then pass it on."""

    def __init__(self, out: zstandard.ZstdCompressionWriter) -> None:
        self.out, self.hasher = out, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.out.write(data)


def write_blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def make_layout(root: Path, total: int, layers: int) -> int:
    """Write the test image; return its total blob size."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    for i in range(layers):
        tmp = root / "tmp"
        with tmp.open("wb") as raw:
            comp = zstandard.ZstdCompressor(level=1, write_checksum=True)
            with comp.stream_writer(raw, closefd=False) as zw:
                tee = Tee(zw)
                with tarfile.open(fileobj=tee, mode="w|") as tar:  # type: ignore[call-overload]
                    info = tarfile.TarInfo(f"data/layer{i}.bin")
                    info.size = total // layers
                    tar.addfile(info, Generated(info.size, i.to_bytes(8, "little")))
        data_hash = hashlib.sha256()
        with tmp.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                data_hash.update(chunk)
        digest = f"sha256:{data_hash.hexdigest()}"
        size = tmp.stat().st_size
        tmp.rename(root / "blobs" / "sha256" / digest[7:])
        descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
                "digest": digest,
                "size": size,
            }
        )
        diff_ids.append(f"sha256:{tee.hasher.hexdigest()}")
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": write_blob(root, config),
                "size": len(config),
            },
            "layers": descs,
        }
    ).encode()
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": write_blob(root, manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "bench"},
    }
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return sum(int(d["size"]) for d in descs) + len(config)


def start_registry(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text(json.dumps(config))
    env = dict(os.environ, REGISTRY_HTTP_SECRET="bench")
    proc = subprocess.Popen(
        ["/usr/bin/docker-registry", "serve", str(root / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def skopeo(*args: str) -> None:
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "-q",
            *args,
        ],
        check=True,
    )


def sanctum_copy(src: str, dst: str) -> None:
    with open_source(src) as source, open_sink(dst) as sink:
        copy_image(source, sink)


def realistic_layer(limit: int) -> bytes:
    """Return a gzip (level 6) tar of up to ``limit`` bytes of this machine's shared libraries."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path in sorted(Path("/usr/lib/x86_64-linux-gnu").rglob("*")):
            if raw.tell() >= limit:
                break
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=str(path).lstrip("/"), recursive=False)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def inflate_seconds(inflater: Callable[[], Any], data: bytes) -> tuple[float, int]:
    """Inflate ``data`` as the analysis does (256 KiB in, 1 MiB out); return CPU s and size."""
    start = time.process_time()
    member, view, pos, out = inflater(), memoryview(data), 0, 0
    while pos < len(view):
        piece = view[pos : pos + (256 << 10)]
        out += len(member.decompress(piece, 1 << 20))
        pos += len(piece) - len(member.unconsumed_tail)
    while chunk := member.decompress(b"", 1 << 20):
        out += len(chunk)
    return time.process_time() - start, out


def compare_inflaters(limit: int) -> None:
    """Print zlib's and ISA-L's inflate speed on a realistic layer (ADR 0072)."""
    data = realistic_layer(limit)
    rows = [("zlib", lambda: zlib.decompressobj(31)), ("ISA-L (sanctum)", gzip_inflater)]
    speeds = {}
    for name, inflater in rows:
        seconds, size = min(inflate_seconds(inflater, data) for _ in range(3))
        speeds[name] = size / seconds / 1e6
        print(f"inflate {name:<16} {speeds[name]:7.0f} MB/s out ({size >> 20} MiB of libraries)")
    print(f"inflate ratio ISA-L/zlib: {speeds['ISA-L (sanctum)'] / speeds['zlib']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--inflate-mib", type=int, default=128, help="realistic layer for the inflate comparison"
    )
    args = parser.parse_args()
    if not shutil.which("skopeo") or not Path("/usr/bin/docker-registry").exists():
        raise SystemExit(
            "needs skopeo and docker-registry (apt-get install skopeo docker-registry)"
        )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        size = make_layout(tmp / "layout", args.size_mib << 20, args.layers)
        mib = size / 2**20
        proc, host = start_registry(tmp / "registry")
        try:
            src = f"oci:{tmp / 'layout'}:bench"
            results = {
                "push": (
                    timed(lambda: skopeo(src, f"docker://{host}/skopeo:bench")),
                    timed(lambda: sanctum_copy(src, f"docker://{host}/sanctum:bench")),
                ),
                "pull": (
                    timed(lambda: skopeo(f"docker://{host}/skopeo:bench", f"oci:{tmp / 's1'}:x")),
                    timed(
                        lambda: sanctum_copy(
                            f"docker://{host}/sanctum:bench", f"oci:{tmp / 's2'}:x"
                        )
                    ),
                ),
            }
            repush = timed(lambda: sanctum_copy(src, f"docker://{host}/sanctum:again"))

            def analyse() -> None:
                with open_source(f"docker://{host}/sanctum:bench") as source:
                    analyse_image(source)

            analysis = timed(analyse)
        finally:
            proc.terminate()
            proc.wait()
    print(f"image: {mib:.0f} MiB in {args.layers} zstd layers")
    print(f"{'operation':<10} {'skopeo MiB/s':>13} {'sanctum MiB/s':>14} {'ratio':>7}")
    for name, (theirs, ours) in results.items():
        print(f"{name:<10} {mib / theirs:>13.0f} {mib / ours:>14.0f} {theirs / ours:>7.2f}")
    print(f"re-push of the same image (no upload, HEADs only): {repush * 1000:.0f} ms")
    print(f"analyse_image from the registry: {mib / analysis:.0f} MiB/s (compressed input)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")
    compare_inflaters(args.inflate_mib << 20)  # Last: its test data would inflate the RSS.


if __name__ == "__main__":
    main()
