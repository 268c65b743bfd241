"""``sanctum quote``: inspect and verify Intel DCAP quotes.

``show`` prints the parsed structure of a quote file without verifying anything: header, report
body (every field), signature data, QE report, certification data and, when the quote embeds a
PCK certificate chain, the platform facts of the PCK certificate's SGX extension. Byte fields are
lowercase hex. A malformed quote exits 1 with the error's code; a missing file exits 2.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from sanctum.attestation.pck import parse_pck_extensions, pck_ca_type
from sanctum.attestation.quote import (
    CertificationData,
    CertificationType,
    Quote,
    SgxReportBody,
    TdReportBody,
    parse_quote,
)
from sanctum.cli._base import SanctumGroup, emit_json, json_option
from sanctum.errors import SanctumError, UsageError

__all__ = ["describe_quote", "group", "read_quote_file", "verify"]

_HEX_DIGITS = b"0123456789abcdefABCDEF"
_BODY_NAMES = {1: "SGX report", 2: "TD report 1.0", 3: "TD report 1.5", 4: "TD report 1.5 Ex"}


@click.group(cls=SanctumGroup)
def group() -> None:
    """DCAP quotes: show their structure and verify them."""


def read_quote_file(path: Path) -> bytes:
    """Return the quote in the file ``path``: raw bytes, or one hex string (``0x`` optional).

    A binary quote can never be mistaken for hex: it starts with the version as a little-endian
    ``uint16`` (``03 00``, ``04 00``, ``05 00``), which are not hex digits.

    Raises:
        UsageError: The file cannot be read (``usage.file_missing``, exit code 2).
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(
            f"cannot read quote file {str(path)!r}: {error.strerror or error}",
            code="usage.file_missing",
        ) from None
    text = data.strip()
    text = text.removeprefix(b"0x").removeprefix(b"0X")
    if text and len(text) % 2 == 0 and not text.translate(None, _HEX_DIGITS):
        return bytes.fromhex(text.decode("ascii"))
    return data


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON-ready data: bytes as lowercase hex, dataclasses as dicts."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
    return value


def _body(body: SgxReportBody | TdReportBody) -> dict[str, Any]:
    """Return every field of a report body plus its ``debug`` flag."""
    out: dict[str, Any] = _plain(body)
    out["debug"] = body.debug
    if isinstance(body, TdReportBody) and body.extension is None:
        out.pop("extension")
    return out


def _certification(certification: CertificationData) -> dict[str, Any]:
    """Describe certification data; for a PEM chain also the PCK certificate's platform facts."""
    out: dict[str, Any] = {"type": certification.cert_type, "size": len(certification.data)}
    try:
        out["type_name"] = CertificationType(certification.cert_type).name
    except ValueError:  # pragma: no cover (the parser only admits known types)
        out["type_name"] = "UNKNOWN"
    if certification.cert_type in (1, 2, 3):
        out["pck_identity"] = _plain(certification.pck_identity())
    elif certification.cert_type == CertificationType.PCK_CERT_CHAIN:
        chain = certification.pck_chain_pem()
        out["pck_chain_pem"] = [block.decode("ascii") for block in chain]
        out["pck"] = _pck_facts(chain[0])
    else:
        out["data"] = certification.data.hex()
    return out


def _pck_facts(leaf_pem: bytes) -> dict[str, Any]:
    """Return the subject, issuer, CA type and SGX extension of the PCK leaf, or why not."""
    try:
        certificate = x509.load_pem_x509_certificate(leaf_pem)
    except ValueError as error:
        return {"error": {"code": "pck.certificate_invalid", "message": str(error)}}
    facts: dict[str, Any] = {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial_number": format(certificate.serial_number, "x"),
    }
    try:
        facts["ca"] = pck_ca_type(certificate)
        facts["sgx_extension"] = _plain(parse_pck_extensions(certificate))
    except SanctumError as error:
        facts["error"] = error.to_dict()
    return facts


def describe_quote(quote: Quote, *, input_size: int | None = None) -> dict[str, Any]:
    """Return the JSON form of a parsed quote, as ``sanctum quote show --json`` prints it.

    Raises:
        sanctum.attestation.errors.QuoteFormatError: The embedded PEM chain is malformed.
    """
    qe = quote.signature.qe
    out: dict[str, Any] = {
        "version": quote.version,
        "tee": quote.tee.name.lower(),
        "body_type": quote.body_type,
        "body_name": _BODY_NAMES[quote.body_type],
        "length": quote.length,
        "signed_length": len(quote.signed_bytes),
        "debug": quote.debug,
        "report_data": quote.report_data.hex(),
        "header": _plain(quote.header),
        "body": _body(quote.body),
        "signature": {
            "signature": quote.signature.signature.hex(),
            "attestation_key": quote.signature.attestation_key.hex(),
            "qe_report": _body(qe.qe_report),
            "qe_report_signature": qe.qe_report_signature.hex(),
            "qe_auth_data": qe.qe_auth_data.hex(),
            "certification": _certification(qe.certification),
        },
    }
    out["header"]["tee_type"] = quote.tee.name.lower()
    if input_size is not None:
        out["ignored_trailing_bytes"] = input_size - quote.length
    return out


def _print_tree(data: dict[str, Any], indent: int = 0) -> None:
    """Print nested data as indented ``key: value`` lines (PEM blocks are summarised)."""
    pad = "  " * indent
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{pad}{key}:")
            _print_tree(value, indent + 1)
        elif key == "pck_chain_pem":
            click.echo(f"{pad}{key}: {len(value)} PEM certificates")
        else:
            click.echo(f"{pad}{key}: {'-' if value is None else value}")


@group.command()
@click.argument("quote_file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def show(quote_file: Path, as_json: bool) -> None:
    """Print the parsed structure of QUOTE_FILE (no verification).

    QUOTE_FILE holds the raw quote or the quote as one hex string.
    """
    data = read_quote_file(quote_file)
    quote = parse_quote(data)
    described = describe_quote(quote, input_size=len(data))
    if as_json:
        emit_json(described)
        return
    click.echo(
        f"DCAP quote v{quote.version} {quote.tee.name} ({described['body_name']}), "
        f"{quote.length} bytes, {described['ignored_trailing_bytes']} trailing bytes ignored; "
        "NOT verified"
    )
    _print_tree(described)


def _parse_at(value: str) -> datetime:
    """Return the ``--at`` time (Unix seconds or RFC 3339) as an aware UTC datetime.

    Raises:
        UsageError: The value is neither (``usage.invalid``, exit code 2).
    """
    try:
        if value.strip().lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value), UTC)
        parsed = datetime.fromisoformat(value.strip())
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"--at {value!r} is neither Unix seconds nor an RFC 3339 time", code="usage.invalid"
        ) from None
    if parsed.tzinfo is None:
        raise UsageError(f"--at {value!r} has no time zone (add Z or +00:00)", code="usage.invalid")
    return parsed.astimezone(UTC)


def _read_input(path: Path, what: str) -> bytes:
    """Return the bytes of an input file.

    Raises:
        UsageError: The file cannot be read (``usage.file_missing``, exit code 2).
    """
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(
            f"cannot read {what} {str(path)!r}: {error.strerror or error}",
            code="usage.file_missing",
        ) from None


@group.command()
@click.argument("quote_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--collateral",
    "collateral_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Collateral bundle (dcap-qvl QuoteCollateralV3 JSON).",
)
@click.option(
    "--root-ca",
    "root_ca_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust this root CA (DER or PEM) instead of Intel's; results are marked simulated.",
)
@click.option("--at", "at", help="Verification time: Unix seconds or RFC 3339 (default: now).")
@click.option(
    "--allow-expired-collateral",
    is_flag=True,
    help="Accept expired collateral and report collateral_expired (Intel QvE behaviour).",
)
@json_option
def verify(  # noqa: PLR0917 (click passes options positionally by name)
    quote_file: Path,
    collateral_file: Path,
    root_ca_file: Path | None,
    at: str | None,
    allow_expired_collateral: bool,
    as_json: bool,
) -> None:
    """Verify QUOTE_FILE against collateral per Intel's QVL (exit 0 verified, 1 refused)."""
    from sanctum.attestation.collateral import load_collateral_bundle  # noqa: PLC0415
    from sanctum.attestation.trust import TrustAnchor  # noqa: PLC0415
    from sanctum.attestation.verify import verify_quote  # noqa: PLC0415

    now = _parse_at(at) if at is not None else datetime.now(UTC)
    data = read_quote_file(quote_file)
    collateral = load_collateral_bundle(_read_input(collateral_file, "collateral file"))
    if root_ca_file is None:
        anchor = TrustAnchor.intel()
    else:
        # Only Intel's pinned root yields hardware results; any other root is a simulation.
        anchor = TrustAnchor.from_bytes(_read_input(root_ca_file, "root CA file"), simulated=True)
    result = verify_quote(
        data,
        collateral,
        trust_anchor=anchor,
        now=now,
        allow_expired_collateral=allow_expired_collateral,
    )
    summary = result.to_dict()
    if as_json:
        emit_json(summary)
        return
    click.echo(
        f"VERIFIED {result.tee.upper()} quote v{result.version}: TCB status {result.status}"
        + (" (SIMULATED platform)" if result.simulated else "")
        + (" (collateral EXPIRED)" if result.collateral_expired else "")
    )
    for key, value in summary.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"  {key}: {'-' if shown in (None, '') else shown}")
