"""``sanctum collateral``: obtain Intel's collateral for a quote.

``fetch`` asks a PCS or PCCS for the collateral of one quote (TCB info, QE identity, PCK CRL,
root CA CRL, chosen from the quote's TEE type and PCK certificate) and writes it as a collateral
bundle that ``sanctum quote verify --collateral`` reads. With ``--cache-dir`` responses are kept
on disk and reused while fresh; when the service is down, still-valid cached collateral is used
and reported as stale.

Intel's PCS subscription key is a credential: it is read from the ``SANCTUM_PCS_API_KEY``
environment variable or from a file (``--api-key-file``, ``-`` for stdin), never from the
command line, where other local users could read it in the process list and shell history.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import click

from sanctum.attestation.collateral import dump_collateral_bundle
from sanctum.attestation.quote import parse_quote
from sanctum.cli._base import SanctumGroup, emit_json, json_option, stderr_console
from sanctum.errors import UsageError
from sanctum.platforms.pcs import (
    INTEL_PCS_URL,
    PcsClient,
    PcsCollateralSource,
    PcsEndpoints,
    RetryPolicy,
)

__all__ = ["API_KEY_ENV", "group"]

#: The environment variable holding the PCS subscription key.
API_KEY_ENV: Final = "SANCTUM_PCS_API_KEY"


@click.group(cls=SanctumGroup)
def group() -> None:
    """Intel collateral: fetch it from a PCS or PCCS for offline verification."""


def _read(path: Path, what: str) -> bytes:
    """Return the bytes of an input file.

    Raises:
        UsageError: ``usage.file_missing`` when it cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(
            f"cannot read {what} {str(path)!r}: {error.strerror or error}",
            code="usage.file_missing",
        ) from None


def _api_key(path: str | None) -> str | None:
    """Return the PCS subscription key from ``path`` (``-``: stdin), else the environment.

    Raises:
        UsageError: ``usage.file_missing`` when the file cannot be read, ``usage.invalid`` when
            it holds no key or more than one line.
    """
    if path is None:
        return os.environ.get(API_KEY_ENV) or None
    if path == "-":
        text = sys.stdin.read()
    else:
        text = _read(Path(path), "API key file").decode("utf-8", errors="replace")
    key = text.strip()
    if not key or "\n" in key:
        raise UsageError(
            "the API key file must hold the key on a single line", code="usage.invalid"
        )
    return key


def _parse_at(value: str | None) -> datetime:
    """Return the time given as Unix seconds or RFC 3339, or now.

    Raises:
        UsageError: ``usage.invalid`` when the value is neither.
    """
    if value is None:
        return datetime.now(UTC)
    try:
        if value.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value), UTC)
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError) as error:
        raise UsageError(f"--at {value!r} is not a time", code="usage.invalid") from error
    if parsed.tzinfo is None:
        raise UsageError(f"--at {value!r} has no time zone (add Z or +00:00)", code="usage.invalid")
    return parsed.astimezone(UTC)


@group.command()
@click.argument("quote_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--pccs",
    "base_url",
    default=INTEL_PCS_URL,
    show_default=True,
    envvar="SANCTUM_PCCS_URL",
    help="Base URL of the PCCS or PCS (API v4).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the collateral bundle (JSON).",
)
@click.option(
    "--api-key-file",
    metavar="PATH",
    help="File holding the PCS subscription key ('-': stdin); default: $SANCTUM_PCS_API_KEY. "
    "Sent as Ocp-Apim-Subscription-Key.",
)
@click.option(
    "--root-ca-crl-url",
    help="Where to get the root CA CRL (default: Intel's for the PCS, <pccs>/…/rootcacrl else).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SANCTUM_COLLATERAL_CACHE",
    help="Keep responses here and reuse them while fresh (and, stale, while the service is down).",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
@click.option("--retries", type=click.IntRange(0, 10), default=2, show_default=True)
@click.option(
    "--at", "at", help="Time for cache decisions: Unix seconds or RFC 3339 (default: now)."
)
@click.option(
    "--pccs-ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="PEM CA certificate(s) of the PCCS's TLS certificate (a default PCCS is self-signed).",
)
@click.option(
    "--unsafe-skip-tls-verify",
    is_flag=True,
    help="Do not verify the PCCS's TLS certificate (collateral is signed, but privacy is lost).",
)
@json_option
def fetch(  # noqa: PLR0917 (click passes options positionally by name)
    quote_file: Path,
    base_url: str,
    out: Path,
    api_key_file: str | None,
    root_ca_crl_url: str | None,
    cache_dir: Path | None,
    timeout: float,
    retries: int,
    at: str | None,
    pccs_ca_file: Path | None,
    unsafe_skip_tls_verify: bool,
    as_json: bool,
) -> None:
    """Fetch the collateral for QUOTE_FILE and write a bundle for `sanctum quote verify`."""
    api_key = _api_key(api_key_file)
    now = _parse_at(at)
    quote = parse_quote(_read(quote_file, "quote file"))
    client = PcsClient(
        PcsEndpoints(base_url, root_ca_crl_url=root_ca_crl_url),
        api_key=api_key,
        timeout=timeout,
        retry=RetryPolicy(attempts=retries + 1),
        cache_dir=cache_dir,
        verify_tls=not unsafe_skip_tls_verify,
        tls_ca_file=pccs_ca_file,
    )
    with client:
        result = PcsCollateralSource(client).fetch_for_quote(quote, now=now)
    out.write_bytes(dump_collateral_bundle(result.collateral))
    summary = {"out": str(out), **result.to_dict()}
    if as_json:
        emit_json(summary)
        return
    click.echo(
        f"wrote collateral for {result.request.tee.upper()} FMSPC {result.request.fmspc} "
        f"({result.request.ca} CA) to {out}; next update {result.next_update.isoformat()}"
    )
    if result.stale:
        console = stderr_console()
        for resource in result.resources:
            if resource.stale:
                console.print(
                    f"[yellow]warning:[/] {resource.kind} is a cached copy from "
                    f"{resource.fetched_at.isoformat()} "
                    f"(refresh failed: {resource.refresh_error}); "
                    f"valid until {resource.next_update.isoformat()}"
                )
