"""Benchmark: launcher start-up overhead, from its exec to the app's exec, with a local manager.

Starts the real Enclave Manager (HTTPS, SQLite, simulated platform trusted for the demo account)
and the host's simulated quoting service, allowlists a small image (busybox), then runs the
launcher N times against an unpacked rootfs (``SANCTUM_ROOT``) with the app ``busybox true``:

- baseline: ``busybox true`` run directly (process creation only);
- ``python -m sanctum.launcher`` (an image that has Python 3.11 and Sanctum installed);
- the self-contained executable ``build/launcher/sanctum-launcher`` (any image; ADR 0103);
- the launcher directory ``build/launcher/sanctum-launcher.d/`` (plain files, what Gramine
  builds ship; ADR 0135), run from a copy in the work directory (its entry program then runs the
  directory's loader explicitly; installed at ``/sanctum/launcher.d`` the interpreter's PT_INTERP
  does the same work) with the same manifest;
- optionally an earlier executable (``--compare-launcher``, in its own rootfs) and an earlier
  source tree's python launcher (``--compare-src``), for before/after numbers in one run.

Every launcher run verifies the manifest and the trusted files, makes a key and CSR, gets a
challenge, a simulated quote and an attestation over pinned HTTPS, writes key/certificate/CA and
execs the app. Prints median and p95 of (run time - baseline median) and the ratio to the
baseline, the CPU time the launcher used (user + system, which the machine's load does not
inflate the way it inflates wall time) and the load average. Goal (issue [G]): < 300 ms on the
simulated platform.

    .venv/bin/python benchmarks/bench_launcher.py [--runs 20] [--launcher PATH] [--show]
        [--launcher-dir PATH] [--compare-launcher OLD-EXECUTABLE] [--compare-src OLD-TREE/src]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from sanctum.cli.demo import Demo, _create_app, _pin, _start_manager, _start_quoting_service
from sanctum.converter.keys import generate_signing_key
from sanctum.converter.manifest import (
    CaCertificateSpec,
    CertificateSpec,
    EnclaveManifest,
    EnclaveSpec,
    ManagerSpec,
    sign_manifest,
)

REPO = Path(__file__).resolve().parents[1]


def _rootfs(root: Path, demo: Demo, launcher: Path | None) -> bytes:
    files = {"/bin/busybox": Path("/bin/busybox").read_bytes()}
    if launcher is not None:
        files["/sanctum/launcher"] = launcher.read_bytes()
    for path, data in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755)
    manifest = EnclaveManifest(
        target="simulated",
        app="bank",
        entrypoint=("/bin/busybox",),
        args=("true",),
        workdir="/",
        user="",
        env={"PATH": "/bin"},
        allow_cmdline_args=False,
        host_env_passthrough=(),
        encrypted_dirs=(),
        rw_dirs=(),
        enclave=EnclaveSpec(size=1 << 30, threads=4, debug=False, isvprodid=0, isvsvn=0),
        trusted_files={p: hashlib.sha256(d).hexdigest() for p, d in files.items()},
        manager=ManagerSpec(url=demo.url, ca_pin=_pin(demo.manager_ca.read_bytes())),
        certificates=(
            CertificateSpec(
                key_path="/run/tls/key.pem",
                cert_path="/run/tls/cert.pem",
                subject="bank.demo.local",
                alt_names=("bank.demo.local",),
            ),
        ),
        ca_certificates=(CaCertificateSpec(ca_path="/run/tls/ca.pem"),),
    )
    signed = sign_manifest(manifest, key=generate_signing_key(), date=dt.date(2026, 1, 1))
    (root / "sanctum").mkdir(exist_ok=True)
    (root / "sanctum/manifest.json").write_bytes(signed.manifest_bytes)
    (root / "sanctum/manifest.sigstruct").write_bytes(signed.sigstruct.to_bytes())
    demo.api(
        "POST",
        demo.account("/builds"),
        body={
            "app": "bank",
            "measurement": signed.mrenclave.hex(),
            "signer": signed.mrsigner.hex(),
            "isvprodid": 0,
            "isvsvn": 0,
            "simulated": True,
        },
    )
    return signed.mrenclave


@dataclass
class _Candidate:
    """One way of starting the launcher, and what its runs measured."""

    command: list[str]
    env: dict[str, str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    work: list[float] = field(default_factory=list)
    stderr: str = ""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(candidate: _Candidate) -> None:
    """Run the candidate once; record wall time, CPU time and its own "first line to exec"."""
    started, cpu_before = time.perf_counter(), _cpu()
    result = subprocess.run(
        candidate.command, env=candidate.env, capture_output=True, check=False, timeout=120
    )
    candidate.wall.append(time.perf_counter() - started)
    candidate.cpu.append(_cpu() - cpu_before)
    candidate.stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        sys.exit(f"{candidate.command[0]} failed:\n{candidate.stderr[-2000:]}")
    # The launcher's last line: "sanctum-launcher: [   222 ms] exec /bin/busybox (pid 7)".
    candidate.work.extend(
        float(line.split("[", 1)[1].split("ms]", 1)[0]) / 1000
        for line in candidate.stderr.splitlines()
        if "] exec " in line
    )


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--launcher", type=Path, default=REPO / "build/launcher/sanctum-launcher")
    parser.add_argument("--show", action="store_true", help="Print the last run's step lines.")
    parser.add_argument(
        "--launcher-dir", type=Path, help="The launcher directory (default: LAUNCHER.d)."
    )
    parser.add_argument(
        "--compare-launcher", type=Path, help="An earlier launcher executable, measured alongside."
    )
    parser.add_argument(
        "--compare-src",
        type=Path,
        help="A source tree (its src/ directory) whose python launcher is measured alongside.",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-launcher-"))
    console = Console(stderr=True, quiet=True)
    demo = Demo(root=workdir, console=console, launcher=args.launcher)
    try:
        # The quoting service creates the simulation PKI whose root the manager trusts.
        _start_quoting_service(demo)
        _start_manager(demo)
        _create_app(demo)
        # Approve the build's task as the second member (four-eyes).
        launcher = args.launcher if args.launcher.is_file() else None
        rootfs = workdir / "rootfs"
        _rootfs(rootfs, demo, launcher)
        if args.compare_launcher is not None:
            _rootfs(workdir / "rootfs-compare", demo, args.compare_launcher)
        # Approve the builds' tasks as the second member (four-eyes).
        tasks = demo.api("GET", demo.account("/tasks"))
        for task in tasks:
            if task.get("status") == "pending":
                demo.api(
                    "POST",
                    demo.account(f"/tasks/{task['id']}/approve"),
                    token=demo.approver_token,
                )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SANCTUM_ROOT": str(rootfs),
            "SANCTUM_PLATFORM": "simulated",
            "SANCTUM_SIM_QE": f"unix:{demo.sim_qe_socket}",
        }
        candidates = {
            "baseline (busybox true)": _Candidate([str(rootfs / "bin/busybox"), "true"], env),
            "python -m sanctum.launcher": _Candidate(
                [sys.executable, "-m", "sanctum.launcher"], env
            ),
        }
        if args.compare_src is not None:
            # In the earlier launcher's rootfs when given: that tree hashes /sanctum/launcher.
            compare_env = dict(env, PYTHONPATH=str(args.compare_src.resolve()))
            if args.compare_launcher is not None:
                compare_env["SANCTUM_ROOT"] = str(workdir / "rootfs-compare")
            candidates[f"python, {args.compare_src}"] = _Candidate(
                [sys.executable, "-m", "sanctum.launcher"], compare_env
            )
        if launcher is not None:
            candidates["self-contained executable"] = _Candidate(
                [str(rootfs / "sanctum/launcher")], env
            )
        else:
            print(f"  (no {args.launcher}: run `make launcher` to measure the executable)")
        launcher_dir = args.launcher_dir or args.launcher.with_name(f"{args.launcher.name}.d")
        if (launcher_dir / "sanctum-launcher").is_file():
            copied = workdir / "sanctum-launcher.d"
            shutil.copytree(launcher_dir, copied)
            candidates["launcher directory"] = _Candidate([str(copied / "sanctum-launcher")], env)
        else:
            print(f"  (no {launcher_dir}: run `make launcher` to measure the launcher directory)")
        if args.compare_launcher is not None:
            compare_root = workdir / "rootfs-compare"
            candidates[f"executable {args.compare_launcher.name}"] = _Candidate(
                [str(compare_root / "sanctum/launcher")], dict(env, SANCTUM_ROOT=str(compare_root))
            )
        load = "/".join(f"{value:.1f}" for value in os.getloadavg())
        # Round robin, so that a change of the machine's load affects every candidate alike.
        for _ in range(args.runs):
            for candidate in candidates.values():
                _run_once(candidate)
        base = statistics.median(candidates.pop("baseline (busybox true)").wall)
        after = "/".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"launcher start-up overhead, {args.runs} runs each (round robin), local manager")
        print(f"  load average {load} before, {after} after, on {os.cpu_count()} CPUs")
        print(f"  baseline (busybox true): median {base * 1000:6.1f} ms")
        for name, candidate in candidates.items():
            samples = [s - base for s in candidate.wall]
            median, p95 = statistics.median(samples), _p95(samples)
            verdict = "meets" if median < 0.3 else "misses"
            print(
                f"  {name:<34}: median {median * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms  "
                f"({median / base:4.0f}x baseline; {verdict} the 300 ms goal)"
            )
            print(
                f"  {'':<34}  CPU (user+sys) median {statistics.median(candidate.cpu) * 1000:6.1f}"
                f" ms  p95 {_p95(candidate.cpu) * 1000:6.1f} ms; own steps (first line to exec)"
                f" median {statistics.median(candidate.work) * 1000:6.1f} ms"
            )
            if args.show:
                print(candidate.stderr, end="")
    finally:
        demo.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
