"""Command line of the launcher executable (``/sanctum/launcher`` in every shielded image).

Usage::

    /sanctum/launcher [--dry-run] [--version] [--help] [--] [APP ARGS...]

The launcher's own options are recognised only *before* the app's arguments (and never after
``--``), so an app argument such as ``--version`` reaches the app when written after ``--``.
Everything else comes from the environment (``SANCTUM_MANAGER_URL``, ``SANCTUM_PLATFORM``,
``SANCTUM_SIM_QE``, ``SANCTUM_MANAGER_CA``, ``SANCTUM_DRY_RUN``, ``SANCTUM_UNSAFE_OFFLINE``,
``SANCTUM_ROOT``; see :class:`~sanctum.launcher.run.LauncherSettings`).

Exit codes before the exec: 0 after a successful ``--dry-run`` or ``--version``; 1 when
refused or failed; 2 on a configuration error. After the exec, the exit code is the app's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Final

from sanctum import __version__
from sanctum.errors import SanctumError, UsageError

__all__ = ["main"]

_USAGE: Final = """usage: sanctum-launcher [--dry-run] [--version] [--help] [--] [APP ARGS...]

The entrypoint of a Sanctum shielded image: verifies the signed enclave manifest, attests to the
Enclave Manager, writes the certificate and secrets, then execs the original entrypoint.

environment:
  SANCTUM_MANAGER_URL     the Enclave Manager (https; its CA is pinned by the manifest)
  SANCTUM_PLATFORM        auto | gramine | configfs-tsm | simulated (default auto)
  SANCTUM_SIM_QE          the host's simulated quoting service: unix:PATH or http://127.0.0.1:PORT
  SANCTUM_MANAGER_CA      optional PEM file offering the manager CA (still checked against the pin)
  SANCTUM_DRY_RUN=1       same as --dry-run
  SANCTUM_RENEW=1         re-attest before the certificate expires (a forked supervisor)
  SANCTUM_TOKEN_FILE      write the attestation result token to this path (mode 0600)
  SANCTUM_UNSAFE_OFFLINE=1  skip attestation (no certificate, no secrets): debugging only
"""


def _split(argv: Sequence[str]) -> tuple[set[str], tuple[str, ...]]:
    """Return the launcher's own flags and the app's arguments."""
    flags: set[str] = set()
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if arg in {"--dry-run", "--version", "--help", "-h"}:
            flags.add(arg)
            index += 1
            continue
        break
    return flags, tuple(argv[index:])


def _report(error: SanctumError) -> None:
    """Print an error and its hint on standard error."""
    sys.stderr.write(f"sanctum-launcher: refused: {error.message} [{error.code}]\n")
    if error.hint:
        sys.stderr.write(f"sanctum-launcher: hint: {error.hint}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the launcher; on success this never returns (the app replaces the process).

    Returns:
        The exit code when the launcher stops before the exec.
    """
    flags, app_args = _split(sys.argv[1:] if argv is None else argv)
    if "--help" in flags or "-h" in flags:
        sys.stdout.write(_USAGE)
        return 0
    if "--version" in flags:
        sys.stdout.write(f"sanctum-launcher {__version__}\n")
        return 0
    # Imported here so that --version and --help answer without loading the crypto stack.
    from sanctum.launcher.run import (  # noqa: PLC0415
        LauncherSettings,
        StepLog,
        exec_plan,
        prepare,
    )

    env = dict(os.environ)
    log = StepLog()
    try:
        overrides: dict[str, object] = {"runtime_args": app_args}
        if "--dry-run" in flags:
            overrides["dry_run"] = True
        settings = LauncherSettings.from_env(env, **overrides)
        plan = prepare(settings, env, log=log)
        if settings.dry_run:
            log.line("dry run complete: nothing written, nothing executed")
            return 0
        if plan.renewal is not None:
            from sanctum.launcher.renewal import start_supervisor  # noqa: PLC0415

            supervisor = start_supervisor(plan.renewal, log)
            log.line(f"renewal supervisor started (pid {supervisor})")
        log.line(f"exec {plan.path} (pid {os.getpid()})")
        exec_plan(plan, settings.root)
    except UsageError as error:
        _report(error)
        return 2
    except SanctumError as error:
        _report(error)
        return 1
    except OSError as error:
        sys.stderr.write(f"sanctum-launcher: failed: {error}\n")
        return 1
    return 1  # pragma: no cover (exec_plan does not return)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
