"""``sanctum platform``: what attestation platforms this machine offers, and quotes from them.

``info`` lists every backend with the reason it is or is not usable and always exits 0 (it is a
report, not a check). ``quote`` produces a quote over caller-chosen report data from the first
available hardware backend, or from the simulated platform when ``--simulated`` is given; it
fails with ``platform.none_available`` when no hardware exists and simulation was not asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from sanctum.cli._base import SanctumGroup, emit_json, json_option, stdout_console
from sanctum.errors import UsageError
from sanctum.platforms.configfs_tsm import DEFAULT_TSM_ROOT
from sanctum.platforms.detect import PlatformStatus, detect_platforms, open_hardware_source
from sanctum.platforms.errors import PlatformUnavailableError
from sanctum.platforms.evidence import PlatformInfo

__all__ = ["group"]

_dev_root_option = click.option(
    "--dev-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Root under which dev/attestation and dev/sgx_enclave are looked up.",
)
_tsm_root_option = click.option(
    "--tsm-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_TSM_ROOT,
    show_default=True,
    help="The configfs-tsm report directory.",
)


@click.group(cls=SanctumGroup)
def group() -> None:
    """Attestation platforms: detect them and take quotes."""


@group.command()
@click.option(
    "--require-hardware",
    is_flag=True,
    help="Exit 1 (platform.none_available) after the report when no hardware platform exists.",
)
@_dev_root_option
@_tsm_root_option
@json_option
def info(require_hardware: bool, dev_root: Path, tsm_root: Path, as_json: bool) -> None:
    """List the evidence backends and whether each can produce evidence here.

    The report always lists the simulated platform, which is usable only when asked for
    explicitly; with --require-hardware the command fails when no hardware platform is usable.
    """
    statuses = detect_platforms(dev_root=dev_root, tsm_root=tsm_root)
    hardware = [s.name for s in statuses if s.available and not (s.info and s.info.simulated)]
    missing = require_hardware and not hardware
    if not (missing and as_json):
        # In JSON mode a failure prints only the error document (one document on stdout);
        # its details carry each backend's reason.
        _report_platforms(statuses, hardware, as_json=as_json)
    if missing:
        reasons = {s.name: s.reason for s in statuses if not (s.info and s.info.simulated)}
        raise PlatformUnavailableError(
            "no hardware attestation platform is available here",
            code="platform.none_available",
            hint="Run inside a Gramine SGX enclave or a TDX/SEV-SNP guest.",
            details=reasons,
        )


def _report_platforms(
    statuses: list[PlatformStatus], hardware: list[str], *, as_json: bool
) -> None:
    """Print the detection report as JSON or text."""
    if as_json:
        emit_json(
            {
                "platforms": [status.to_dict() for status in statuses],
                "hardware_available": hardware,
            }
        )
        return
    console = stdout_console()
    for status in statuses:
        mark = "[green]available[/]" if status.available else "[red]unavailable[/]"
        label = " [yellow](simulated)[/]" if status.info and status.info.simulated else ""
        console.print(f"[bold]{status.name}[/]{label}: {mark}")
        console.print(f"  {status.reason}", markup=False)
        if status.info is not None:
            console.print(f"  tee: {status.info.tee}", markup=False)
    if not hardware:
        console.print(
            "No hardware attestation platform is available; "
            "`sanctum platform quote` needs --simulated here."
        )


def _parse_report_data(value: str) -> bytes:
    """Return the bytes of a hex report-data option.

    Raises:
        UsageError: ``usage.invalid`` when the value is not hex or longer than 64 bytes.
    """
    try:
        data = bytes.fromhex(value)
    except ValueError as error:
        raise UsageError(
            "--report-data must be hexadecimal (up to 128 hex digits)", code="usage.invalid"
        ) from error
    if len(data) > 64:
        raise UsageError(
            f"--report-data is {len(data)} bytes; a quote carries at most 64",
            code="usage.invalid",
        )
    return data


def _default_state_dir() -> Path:
    """Return where the simulation PKI is kept unless ``--state-dir`` says otherwise."""
    return Path(click.get_app_dir("sanctum")) / "simulation"


def _simulated_quote(
    data: bytes,
    *,
    tee: str,
    state_dir: Path,
    collateral_out: Path | None,
    root_ca_out: Path | None,
) -> tuple[bytes, PlatformInfo, dict[str, object]]:
    """Quote on the simulated platform and write its collateral and root when asked.

    Raises:
        UsageError: The state directory cannot be used.
    """
    from sanctum.attestation.collateral import dump_collateral_bundle  # noqa: PLC0415
    from sanctum.platforms.simulated import (  # noqa: PLC0415
        SimulatedPlatform,
        load_or_create_simulation_pki,
    )

    now = datetime.now(UTC)
    try:
        pki = load_or_create_simulation_pki(state_dir, now=now)
    except OSError as error:
        raise UsageError(
            f"cannot use the simulation state directory {state_dir}: {error.strerror or error}",
            code="usage.invalid",
        ) from error
    platform = SimulatedPlatform(pki, tee="tdx" if tee == "tdx" else "sgx", now=now)
    evidence = platform.quote(data)
    written: dict[str, object] = {}
    if collateral_out is not None:
        collateral_out.write_bytes(dump_collateral_bundle(platform.collateral(now=now)))
        written["collateral"] = str(collateral_out)
    if root_ca_out is not None:
        root_ca_out.write_bytes(platform.root_ca_der())
        written["root_ca"] = str(root_ca_out)
    written["state_dir"] = str(state_dir)
    return evidence, platform.info, written


@group.command()
@click.option("--report-data", required=True, help="Report data in hex (at most 64 bytes).")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the quote (binary).",
)
@click.option(
    "--simulated",
    is_flag=True,
    help="Use the simulated platform (no hardware protection; evidence is marked simulated).",
)
@click.option(
    "--tee",
    type=click.Choice(["sgx", "tdx"]),
    help="TEE of the simulated platform (default sgx); hardware decides by itself.",
)
@click.option(
    "--collateral-out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Simulated only: write the matching collateral bundle (JSON) here.",
)
@click.option(
    "--root-ca-out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Simulated only: write the simulation root CA (DER), the trust anchor, here.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SANCTUM_SIMULATION_DIR",
    help="Simulated only: where the simulation PKI is kept (created on first use).",
)
@_dev_root_option
@_tsm_root_option
@json_option
def quote(  # noqa: PLR0917 (click passes options positionally by name)
    report_data: str,
    out: Path,
    simulated: bool,
    tee: str | None,
    collateral_out: Path | None,
    root_ca_out: Path | None,
    state_dir: Path | None,
    dev_root: Path,
    tsm_root: Path,
    as_json: bool,
) -> None:
    """Take a quote over REPORT-DATA from hardware, or from the simulated platform.

    Without --simulated the first available hardware platform is used (Gramine, then
    configfs-tsm), and the command fails with platform.none_available when there is none.
    """
    data = _parse_report_data(report_data)
    extra: dict[str, object] = {}
    if simulated:
        evidence, platform, extra = _simulated_quote(
            data,
            tee=tee or "sgx",
            state_dir=state_dir or _default_state_dir(),
            collateral_out=collateral_out,
            root_ca_out=root_ca_out,
        )
    else:
        given = [
            name
            for name, value in (
                ("--tee", tee),
                ("--collateral-out", collateral_out),
                ("--root-ca-out", root_ca_out),
                ("--state-dir", state_dir),
            )
            if value is not None
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)} only apply to the simulated platform (add --simulated)",
                code="usage.invalid",
            )
        source = open_hardware_source(dev_root=dev_root, tsm_root=tsm_root)
        evidence = source.quote(data)
        platform = source.info
    out.write_bytes(evidence)
    summary: dict[str, object] = {
        "platform": platform.name,
        "tee": platform.tee,
        "simulated": platform.simulated,
        "quote": str(out),
        "bytes": len(evidence),
        **extra,
    }
    if as_json:
        emit_json(summary)
        return
    label = " (SIMULATED: no hardware protection)" if platform.simulated else ""
    click.echo(
        f"wrote a {len(evidence)}-byte {platform.tee} quote from {platform.name} to {out}{label}"
    )
    for key in ("collateral", "root_ca"):
        if key in extra:
            click.echo(f"  {key.replace('_', ' ')}: {extra[key]}")


@group.group("sim-qe")
def sim_qe_group() -> None:
    """The simulated quoting service: quotes for workloads on the SIMULATED platform."""


@sim_qe_group.command("serve")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Unix socket to listen on (bind-mount it into containers).",
)
@click.option("--port", type=click.IntRange(0, 65535), help="Loopback TCP port (127.0.0.1 only).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the simulation PKI; use the manager's (<data_dir>/simulation).",
)
def sim_qe_serve(socket_path: Path | None, port: int | None, state_dir: Path | None) -> None:
    """Serve simulated quotes to launchers (host side; the PKI keys stay on the host).

    Simulation measures nothing: the caller states its identity and gets a quote for it. Quotes
    verify only against the simulation root and are refused unless an app allows simulated
    evidence (docs/adr/0100-simulated-quoting-service.md).
    """
    from sanctum.platforms.sim_qe import start_sim_qe  # noqa: PLC0415

    if socket_path is None and port is None:
        from sanctum.platforms.sim_qe import default_socket_path  # noqa: PLC0415

        socket_path = default_socket_path()
    server = start_sim_qe(state_dir or _default_state_dir(), socket_path=socket_path, port=port)
    click.echo(f"simulated quoting service (SIMULATED, no hardware) on {server.address}")
    click.echo(f"launchers: SANCTUM_PLATFORM=simulated SANCTUM_SIM_QE={server.address}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
