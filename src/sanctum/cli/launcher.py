"""``sanctum launcher``: check a shielded rootfs the way the launcher will, from the host.

``sanctum launcher check ROOTFS`` verifies ``/sanctum/manifest.json`` against its SIGSTRUCT and
every trusted file and symbolic link under ROOTFS (an unpacked shielded image), then prints the
identity the launcher would claim and what it would run. It uses the launcher's own code
(:mod:`sanctum.launcher`), so a rootfs that passes here passes the launcher's first steps.
"""

from __future__ import annotations

from pathlib import Path

import click

from sanctum.cli._base import SanctumGroup, emit_json, json_option, stdout_console

__all__ = ["group"]


@click.group(cls=SanctumGroup)
def group() -> None:
    """The launcher of shielded images: check an unpacked image."""


@group.command()
@click.argument("rootfs", type=click.Path(file_okay=False, exists=True, path_type=Path))
@json_option
def check(rootfs: Path, as_json: bool) -> None:
    """Verify the signed manifest and the trusted files of an unpacked shielded image."""
    from sanctum.converter.manifest import verify_signed_manifest  # noqa: PLC0415
    from sanctum.converter.sigstruct import parse_sigstruct  # noqa: PLC0415
    from sanctum.launcher.files import check_trusted_files, in_root  # noqa: PLC0415
    from sanctum.launcher.run import (  # noqa: PLC0415
        MANIFEST_PATH,
        SIGSTRUCT_PATH,
        read_image_file,
    )

    manifest_bytes = read_image_file(rootfs, MANIFEST_PATH)
    sigstruct_bytes = read_image_file(rootfs, SIGSTRUCT_PATH)
    manifest = verify_signed_manifest(manifest_bytes, sigstruct_bytes)
    sigstruct = parse_sigstruct(sigstruct_bytes)
    checked = check_trusted_files(rootfs, manifest.trusted_files, manifest.symlinks)
    command = [*manifest.entrypoint, *manifest.args]
    result: dict[str, object] = {
        "rootfs": str(rootfs),
        "manifest": str(in_root(rootfs, MANIFEST_PATH)),
        "target": manifest.target,
        "app": manifest.app,
        "mrenclave": sigstruct.mrenclave.hex(),
        "mrsigner": sigstruct.mrsigner.hex(),
        "isvprodid": sigstruct.isvprodid,
        "isvsvn": sigstruct.isvsvn,
        "debug": sigstruct.debug,
        "trusted_entries_checked": checked,
        "entrypoint": command,
        "manager_url": manifest.manager.url,
        "manager_ca_pin": manifest.manager.ca_pin,
    }
    if as_json:
        emit_json(result)
        return
    console = stdout_console()
    console.print(f"[green]ok[/]: {checked} trusted entries match the signed manifest")
    for key in ("target", "app", "mrenclave", "mrsigner", "isvprodid", "isvsvn", "debug"):
        console.print(f"  {key:<10} {result[key]}")
    console.print(f"  runs       {' '.join(command)}")
