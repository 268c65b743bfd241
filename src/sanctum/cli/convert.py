"""``sanctum convert INPUT OUTPUT``: turn an OCI image into a shielded image, without Docker.

INPUT and OUTPUT are ``docker://REGISTRY/REPO[:TAG]``, ``oci:PATH[:TAG]``,
``oci-archive:FILE[:TAG]`` or ``docker-archive:FILE`` (gzip-compressed as a whole too). The
command shows a progress bar per layer on standard error and prints the response fields
(``--json`` for the machine-readable form with Data Shield's field names).
"""

from __future__ import annotations

import ctypes
import gc
import sys
from contextlib import closing
from pathlib import Path
from typing import Any, Final

import click
from pydantic import SecretStr
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from sanctum.cli._base import SanctumCommand, emit_json, json_option, stderr_console, stdout_console
from sanctum.cli.convert_manager import manager_for_convert, register_build, run_remote
from sanctum.converter.convert import (
    ConvertProgress,
    ConvertRequest,
    ConvertResponse,
    PemSigningKey,
    check_request,
    convert,
)
from sanctum.converter.manifest import ca_pin_from_certificate
from sanctum.converter.oci import open_sink, open_source
from sanctum.converter.runtime_layer import load_launcher_asset
from sanctum.errors import UsageError

__all__ = ["command"]

#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def _tune_process() -> None:
    """Set up this process for a conversion's allocation pattern (ADR 0125).

    A conversion allocates and frees a few thousand 1 MiB buffers (socket reads, inflated
    chunks) across threads. glibc's default adapts its thresholds and keeps giving freed memory
    back to the kernel, so the next buffer faults its pages in again: about 0.2 s of kernel
    time per GiB. Keeping up to 256 MiB of freed memory (it is reused at once) and serving
    buffers below 32 MiB from the heap removes that; peak RSS stays within the bounds of the
    pipeline. The objects of the imported modules are moved out of the garbage collector's
    sight (:func:`gc.freeze`): they live as long as the process, and the collections that the
    analysis' many small objects trigger need not walk them again and again. Other C libraries
    are left alone: ``mallopt`` is only called when glibc provides it.
    """
    gc.freeze()
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)


def _read(path: Path, what: str) -> bytes:
    """Read a file named on the command line.

    Raises:
        UsageError: It cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(
            f"cannot read the {what} {path}: {error.strerror}", code="usage.file_unreadable"
        ) from error


def _env(pairs: tuple[str, ...]) -> dict[str, str]:
    """Parse ``--env K=V`` options.

    Raises:
        UsageError: An entry has no ``=``.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {pair!r} is not NAME=VALUE", code="usage.invalid")
        out[name] = value
    return out


class _LayerBars:
    """Renders conversion progress: one bar per layer, one line per step."""

    def __init__(self, progress: Progress, *, quiet: bool) -> None:
        self._progress = progress
        self._quiet = quiet
        self._tasks: dict[int, TaskID] = {}

    def __call__(self, event: ConvertProgress) -> None:
        if event.event == "step":
            if not self._quiet:
                self._progress.console.print(f"[cyan]•[/] {event.message}")
            return
        if event.layer is None or event.descriptor is None:
            return
        task = self._tasks.get(event.layer)
        if task is None:
            short = event.descriptor.digest.removeprefix("sha256:")[:12]
            label = f"layer {event.layer + 1}/{event.layer_count} {short}"
            task = self._progress.add_task(label, total=event.descriptor.size)
            self._tasks[event.layer] = task
        if event.event == "layer-advance":
            self._progress.update(task, completed=event.done)
        elif event.event == "layer-done":
            self._progress.update(
                task, completed=event.descriptor.size, description=f"{event.outcome:>8} layer "
                f"{event.layer + 1}/{event.layer_count}",
            )  # fmt: skip


def _print_response(response: ConvertResponse) -> None:
    """Print the response fields for people."""
    console = stdout_console()
    console.print(f"[bold green]converted[/] {response.new_image}")
    rows = response.model_dump(by_alias=True)
    for key in (
        "imageDigest",
        "imageSize",
        "mrenclave",
        "mrsigner",
        "isvprodid",
        "isvsvn",
        "debug",
        "target",
        "trustedFiles",
        "layersUploaded",
        "layersSkipped",
        "layersMounted",
    ):
        console.print(f"  {key:<15}{rows[key]}")
    console.print(f"  {'flags':<15}{', '.join(response.flags) or '-'}")
    if "simulated" in response.flags:
        console.print(
            "[yellow]target simulated: no SGX hardware protection; MRENCLAVE is the manifest "
            "hash (the gramine-sgx target needs gramine-manifest and gramine-sgx-sign)[/]"
        )
    if "default-signing-key" in response.flags:
        console.print("[yellow]signed with Sanctum's public debug key: for debugging only[/]")
    if "launcher-exec-shim" in response.flags:
        console.print(
            "[yellow]no launcher executable given (--launcher): the image runs its entrypoint "
            "through an exec shim, without attestation[/]"
        )
    if "launcher-not-for-gramine" in response.flags:
        console.print(
            "[yellow]gramine-sgx build without the launcher directory: Gramine cannot run the "
            "self-contained launcher (pass --launcher build/launcher/sanctum-launcher.d)[/]"
        )


def _response_fields(result: dict[str, Any]) -> dict[str, Any]:
    """Return the converter response fields of a manager job's result."""
    names = {field.alias or name for name, field in ConvertResponse.model_fields.items()}
    return {key: value for key, value in result.items() if key in names}


def _print_registration(registration: dict[str, Any]) -> None:
    """Print the build the manager registered, if any."""
    if registration.get("buildId"):
        stdout_console().print(
            f"  {'build':<15}{registration['buildId']} ({registration.get('buildStatus')}); "
            f"allowlisting task {registration.get('taskId') or '-'}"
        )


@click.command("convert", cls=SanctumCommand)
@click.argument("input_image", metavar="INPUT")
@click.argument("output_image", metavar="OUTPUT")
@click.option("--app", help="Application name in the Enclave Manager.")
@click.option("--mem", "mem", default="2G", show_default=True, help="Enclave size (power of 2).")
@click.option("--threads", type=click.IntRange(1, 65535), default=16, show_default=True)
@click.option("--encrypted-dir", "encrypted_dirs", multiple=True, help="Encrypted directory.")
@click.option(
    "--rw-dir", "rw_dirs", multiple=True, help="Writable in-enclave tmpfs (default: /tmp)."
)
@click.option("--env", "env", multiple=True, help="NAME=VALUE frozen into the manifest.")
@click.option("--pass-env", "pass_env", multiple=True, help="Host variable allowed through.")
@click.option("--entrypoint", "entrypoint", multiple=True, help="Override the entrypoint.")
@click.option("--arg", "args", multiple=True, help="Override the arguments (repeat).")
@click.option("--allow-cmdline-args", is_flag=True, help="Let run-time arguments replace args.")
@click.option("--isvprodid", type=click.IntRange(0, 65535), default=0, show_default=True)
@click.option("--isvsvn", type=click.IntRange(0, 65535), default=0, show_default=True)
@click.option("--debug", is_flag=True, help="Debug enclave (never for production).")
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM RSA-3072 e=3 key (default: the public debug key, with --debug only).",
)
@click.option(
    "--launcher",
    type=click.Path(path_type=Path),
    help="Launcher to ship: the executable (with its directory form when PATH.d exists, "
    "which Gramine builds ship) or the launcher directory (default: an exec shim without "
    "attestation).",
)
@click.option(
    "--target",
    type=click.Choice(["auto", "simulated", "gramine-sgx"]),
    default="auto",
    show_default=True,
    help="auto: gramine-sgx when Gramine's tools are on PATH, else simulated.",
)
@click.option("--manager-url", help="Enclave Manager URL recorded in the manifest (https).")
@click.option("--manager-ca-pin", help="sha256:<hex> pin of the manager CA's public key.")
@click.option(
    "--manager-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Manager CA certificate (PEM/DER) to pin instead of --manager-ca-pin.",
)
@click.option(
    "--docker-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="docker config.json with registry credentials.",
)
@click.option("--unsafe-plain-http", is_flag=True, help="Plain HTTP to non-loopback registries.")
@click.option("--offline", is_flag=True, help="Do not contact an Enclave Manager.")
@click.option(
    "--remote",
    is_flag=True,
    help="Run the conversion on the Enclave Manager (registry images, the account's key).",
)
@json_option
def command(  # noqa: PLR0917 (one parameter per documented option)
    input_image: str,
    output_image: str,
    app: str | None,
    mem: str,
    threads: int,
    encrypted_dirs: tuple[str, ...],
    rw_dirs: tuple[str, ...],
    env: tuple[str, ...],
    pass_env: tuple[str, ...],
    entrypoint: tuple[str, ...],
    args: tuple[str, ...],
    allow_cmdline_args: bool,
    isvprodid: int,
    isvsvn: int,
    debug: bool,
    signing_key: Path | None,
    launcher: Path | None,
    target: str,
    manager_url: str | None,
    manager_ca_pin: str | None,
    manager_ca: Path | None,
    docker_config: Path | None,
    unsafe_plain_http: bool,
    offline: bool,
    remote: bool,
    as_json: bool,
) -> None:
    """Convert image INPUT into a shielded image OUTPUT.

    INPUT and OUTPUT are spelled as with skopeo: docker://REGISTRY/REPO[:TAG|@DIGEST] (a
    registry), oci:PATH[:TAG] (an OCI layout directory), oci-archive:FILE[:TAG] (a tarball of an
    OCI layout, as skopeo and podman save write it) or docker-archive:FILE[:NAME:TAG] (a docker
    save tarball, also one gzip-compressed as a whole; written compressed when FILE ends in .gz
    or .tgz).

    Transient registry failures (connection errors, 429, 5xx) are retried with backoff.
    """
    if manager_ca is not None:
        if manager_ca_pin is not None:
            raise UsageError(
                "give --manager-ca or --manager-ca-pin, not both", code="usage.invalid"
            )
        manager_ca_pin = ca_pin_from_certificate(_read(manager_ca, "manager CA certificate"))
    fields: dict[str, Any] = {
        "input_image_name": input_image,
        "output_image_name": output_image,
        "app": app,
        "mem_size": mem,
        "threads": threads,
        "encrypted_dirs": encrypted_dirs,
        "manifest_env": _env(env),
        "host_env_passthrough": pass_env,
        "allow_cmdline_args": allow_cmdline_args,
        "isvprodid": isvprodid,
        "isvsvn": isvsvn,
        "debug": debug,
        "target": target,
        "manager_url": manager_url,
        "manager_ca_pin": manager_ca_pin,
    }
    if rw_dirs:
        fields["rw_dirs"] = rw_dirs
    if entrypoint:
        fields["entrypoint"] = entrypoint
    if args:
        fields["entrypoint_args"] = args
    if signing_key is not None:
        fields["signing_key"] = PemSigningKey(
            pem=SecretStr(_read(signing_key, "signing key").decode())
        )
    request = ConvertRequest.model_validate(fields)
    if not remote:  # The manager checks a remote request (it signs with the account's key).
        check_request(request)  # Before any store is opened (an OCI layout sink creates files).
    launcher_asset = load_launcher_asset(launcher) if launcher is not None else None
    errors = stderr_console()
    if offline and remote:
        raise UsageError("--remote and --offline exclude each other", code="usage.invalid")
    client = None if offline else manager_for_convert(app, remote=remote, quiet=as_json)
    if client is not None and remote:
        if launcher is not None:
            raise UsageError(
                "--remote ships the manager's launcher: drop --launcher", code="usage.invalid"
            )
        with closing(client):
            result = run_remote(client, app or "", request, quiet=as_json)
        if as_json:
            emit_json(result)
        else:
            _print_response(ConvertResponse.model_validate(_response_fields(result)))
            _print_registration(result)
        return
    store_options: dict[str, Any] = {
        "docker_config": docker_config,
        "unsafe_plain_http": unsafe_plain_http,
    }
    _tune_process()
    with (
        open_source(request.input_image_name, **store_options) as source,
        open_sink(request.output_image_name, **store_options) as sink,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=errors,
            disable=as_json,
            transient=False,
        ) as progress,
    ):
        response = convert(
            request,
            source=source,
            sink=sink,
            launcher_asset=launcher_asset,
            progress=_LayerBars(progress, quiet=as_json),
        )
    registration: dict[str, Any] = {}
    if client is not None:
        with closing(client):
            registration = register_build(client, app or "", response)
    if as_json:
        emit_json(response.model_dump(by_alias=True, mode="json") | registration)
    else:
        _print_response(response)
        _print_registration(registration)
