"""Benchmark: `sanctum convert` registry → registry vs `skopeo copy` of the same image.

Generates an image of N layers (default 8 layers, 256 MiB; `--size 1G` for the issue's goal)
into an OCI layout, pushes it with skopeo to a loopback docker-registry, then in the same run:

1. `skopeo copy` from the source registry to a second registry (the baseline: a plain copy);
2. `sanctum convert` from the source registry to the second registry (read every layer once,
   hash every file, copy the layers, sign, add the runtime layer);
3. `sanctum convert` again to the same target: no original layer may be uploaded.

Prints wall time, throughput (image bytes / second), CPU time, the ratio to skopeo (goal >= 0.8),
and the peak RSS of each process (goal < 200 MB for sanctum). Sanctum does more work than a copy:
it decompresses every layer and hashes every file (the trusted-file list), so on a CPU-starved
machine the ratio mostly measures that work. Needs docker-registry and skopeo.

With ``--rounds N`` each side runs N times, interleaved (the order rotates every round) and each
run into a fresh target registry; medians are reported, which is what to quote on a shared,
loaded machine. The measured source trees are byte-compiled first, as installing a package
does. ``--baseline-src DIR`` adds a third side: the sanctum of another source tree
(for example a copy of ``src`` from before a change), measured in the same rounds.

    .venv/bin/python benchmarks/bench_convert.py [--size 256M] [--layers 8] [--rounds 3]
        [--baseline-src OLD/src] [--keep]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"
FILE_SIZE = 1 << 20


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def registry(root: Path) -> Iterator[str]:
    port = free_port()
    root.mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    env = dict(os.environ, REGISTRY_HTTP_SECRET="bench")
    process = subprocess.Popen(
        [REGISTRY, "serve", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def generate(layout: Path, total: int, layers: int) -> int:
    """Write an OCI layout with `layers` gzip layers of ~total/layers bytes of files."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    per_layer = total // layers
    descs, diff_ids = [], []
    for index in range(layers):
        raw_path = layout / f"layer{index}.tar"
        with tarfile.open(raw_path, "w") as tar:
            for number in range(max(1, per_layer // FILE_SIZE)):
                # Half random, half zeros: compresses about 2:1 like typical binaries.
                data = os.urandom(FILE_SIZE // 2) + bytes(FILE_SIZE // 2)
                info = tarfile.TarInfo(f"layer{index}/file{number:04d}.bin")
                info.size = len(data)
                tar.addfile(info, fileobj=io.BytesIO(data))
        plain = raw_path.read_bytes()
        raw_path.unlink()
        diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
        descs.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
            | blob(layout, gzip.compress(plain, compresslevel=1, mtime=0))
        )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Entrypoint": ["/layer0/file0000.bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json"}
            | blob(layout, config),
            "layers": descs,
        }
    ).encode()
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json"} | blob(layout, manifest)
    top["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return sum(int(d["size"]) for d in descs) + len(config) + len(manifest)  # type: ignore[call-overload]


def run_child(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[float, int, str, float]:
    """Run `command`; return (seconds, peak RSS in bytes, stdout, CPU seconds) via wait4."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env)
        out = process.stdout.read() if process.stdout is not None else b""
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{errors.read().decode()}")
    return elapsed, usage.ru_maxrss * 1024, out.decode(), usage.ru_utime + usage.ru_stime


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256M", help="total layer content (e.g. 256M, 1G)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved runs of each side (medians reported)"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run the sanctum of this source tree (a `src` directory), e.g. an older copy",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.generate_into is not None:
        # Child mode: generate in a separate process so the parent stays small (a child's peak
        # RSS reported by wait4 includes its parent's RSS at fork time).
        print(generate(options.generate_into, parse_size(options.size), options.layers))
        return
    for tool in (REGISTRY, "skopeo"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y docker-registry skopeo")
    sanctum = [str(Path(sys.executable).with_name("sanctum"))]
    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    try:
        print(f"generating {options.layers} layers, {options.size} of files ...", flush=True)
        image_size = int(
            subprocess.run(
                [sys.executable, __file__, "--size", options.size, "--layers",
                 str(options.layers), "--generate-into", str(work / "layout")],
                check=True, capture_output=True, text=True,
            ).stdout
        )  # fmt: skip
        env = dict(os.environ, TMPDIR=str(work))
        # Byte-compile the measured trees first, as installing a package does: otherwise a
        # tree being edited (or PYTHONDONTWRITEBYTECODE) makes every run compile the modules
        # that changed, about 60 ms of start-up that an installed sanctum does not pay.
        trees = [subprocess.run(
            [sys.executable, "-c", "import sanctum, os; print(os.path.dirname(sanctum.__file__))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()]  # fmt: skip
        if options.baseline_src is not None:
            trees.append(str(options.baseline_src.resolve() / "sanctum"))
        subprocess.run([sys.executable, "-m", "compileall", "-q", *trees], check=True)
        skopeo = ["skopeo", "--insecure-policy"]
        tls = ["--src-tls-verify=false", "--dest-tls-verify=false"]
        launcher = work / "launcher"
        launcher.write_bytes(b'#!/bin/sh\nexec "$@"\n')
        flags = ["--debug", "--launcher", str(launcher), "--target", "simulated", "--offline"]
        sides: dict[str, tuple[list[str], dict[str, str]]] = {
            "skopeo copy": ([*skopeo, "copy", *tls], env),
            "sanctum convert": ([*sanctum, "convert", *flags, "--json"], env),
        }
        if options.baseline_src is not None:
            base_env = dict(env, PYTHONPATH=str(options.baseline_src.resolve()))
            entry = "import sys; from sanctum.cli.main import main; sys.exit(main())"
            base_cmd = [sys.executable, "-c", entry, "convert", *flags, "--json"]
            sides["sanctum baseline"] = (base_cmd, base_env)
        results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in sides}
        loads: list[float] = []
        first: dict[str, object] = {}
        second: dict[str, object] = {}
        again: tuple[float, int, float] | None = None
        with registry(work / "src") as src:
            subprocess.run(
                [*skopeo, "copy", *tls, f"oci:{work / 'layout'}:bench", f"docker://{src}/app:1"],
                check=True, capture_output=True, env=env,
            )  # fmt: skip
            for number in range(options.rounds):
                # Rotate the order every round so that drift in the machine's load is shared.
                names = list(sides)
                names = names[number % len(names) :] + names[: number % len(names)]
                for name in names:
                    command, side_env = sides[name]
                    # A fresh target registry per run: nothing is there yet, and no client can
                    # mount blobs from an earlier run's repository.
                    root = work / f"dst-{number}-{name.replace(' ', '-')}"
                    with registry(root) as dst:
                        target = f"docker://{dst}/out:1"
                        loads.append(os.getloadavg()[0])
                        seconds, rss, out, cpu = run_child(
                            [*command, f"docker://{src}/app:1", target], env=side_env
                        )
                        results[name].append((seconds, rss, cpu))
                        if name == "sanctum convert" and number == 0:
                            first = json.loads(out)
                            a_time, a_rss, a_out, a_cpu = run_child(
                                [*command, f"docker://{src}/app:1", target], env=side_env
                            )
                            again = (a_time, a_rss, a_cpu)
                            second = json.loads(a_out)
                    shutil.rmtree(root, ignore_errors=True)
                print(f"round {number + 1}/{options.rounds}: " + ", ".join(
                    f"{name} {results[name][-1][0]:.2f} s" for name in sides
                ) + f"  (load average {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
        mib = image_size / (1 << 20)
        print(f"image: {mib:.0f} MiB compressed, {options.layers} layers, {os.cpu_count()} CPUs")
        rows = list(results.items())
        if again is not None:
            rows.append(("sanctum again", [again]))
        for label, runs in rows:
            seconds = median([r[0] for r in runs])
            rss = max(r[1] for r in runs)
            cpu = median([r[2] for r in runs])
            low, high = min(r[0] for r in runs), max(r[0] for r in runs)
            print(
                f"{label:<17} {seconds:7.2f} s  {mib / seconds:7.1f} MiB/s  "
                f"cpu {cpu:6.2f} s  peak RSS {rss / 1e6:6.1f} MB  "
                f"(median of {len(runs)}, spread {low:.2f}-{high:.2f}: "
                f"{', '.join(f'{r[0]:.2f}' for r in runs)})"
            )
        sk_time = median([r[0] for r in results["skopeo copy"]])
        sa_time = median([r[0] for r in results["sanctum convert"]])
        sa_rss = max(r[1] for r in results["sanctum convert"])
        print(f"throughput ratio sanctum/skopeo (medians): {sk_time / sa_time:.2f} (goal >= 0.8)")
        ratios = sorted(
            sk[0] / sa[0]
            for sk, sa in zip(results["skopeo copy"], results["sanctum convert"], strict=True)
        )
        print(
            f"per-round ratios: {', '.join(f'{r:.2f}' for r in ratios)}; load average "
            f"(1 min) before the runs: median {median(loads):.1f}, {min(loads):.1f}-"
            f"{max(loads):.1f}, on {os.cpu_count()} CPUs"
        )
        if "sanctum baseline" in results:
            base = median([r[0] for r in results["sanctum baseline"]])
            print(f"throughput ratio baseline/skopeo (medians): {sk_time / base:.2f}")
        print(f"peak RSS goal < 200 MB: {'met' if sa_rss < 200e6 else 'NOT met'}")
        print(
            f"first conversion: uploaded {first['layersUploaded']}, mounted "
            f"{first['layersMounted']}, skipped {first['layersSkipped']}; second: uploaded "
            f"{second['layersUploaded']} (goal 0), same digest: "
            f"{first['imageDigest'] == second['imageDigest']}"
        )
    finally:
        if options.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
