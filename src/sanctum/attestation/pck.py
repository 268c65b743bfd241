"""The SGX extension of Intel PCK certificates: the platform facts a quote's TCB is judged by.

Every PCK leaf certificate carries the non-critical extension 1.2.840.113741.1.13.1, a DER
``SEQUENCE OF SEQUENCE { OID, value }`` with the platform's PPID, TCB (16 CPU SVN components,
PCESVN, raw CPUSVN), PCE ID, FMSPC, SGX type and, for certificates of the Platform CA, the
platform instance ID and configuration (dynamic platform, cached keys, SMT). The verifier matches
FMSPC and PCE ID against the TCB info and the TCB components against its levels.

Parsing is strict (see :mod:`sanctum.attestation._der`): each required entry exactly once, with
the right type and size; entries of the TCB exactly the 18 Intel defines; unknown entries at the
top level and in the configuration are ignored so that a future Intel addition does not break
verification. Layout: Intel QVL ``X509Constants.h``; see ``docs/adr/0011-pck-sgx-extension.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from sanctum.attestation import _der
from sanctum.attestation._memo import ObjectMemo, memo
from sanctum.attestation.errors import DerError, PckExtensionError
from sanctum.errors import EvidenceError

__all__ = [
    "SGX_EXTENSION_OID",
    "PckConfiguration",
    "PckExtensions",
    "PckTcb",
    "SgxType",
    "parse_pck_extensions",
    "parse_sgx_extension",
    "pck_ca_type",
]

_ARC: Final = "1.2.840.113741.1.13.1"
#: The SGX extension of PCK certificates.
SGX_EXTENSION_OID: Final = x509.ObjectIdentifier(_ARC)

_PPID: Final = f"{_ARC}.1"
_TCB: Final = f"{_ARC}.2"
_PCE_ID: Final = f"{_ARC}.3"
_FMSPC: Final = f"{_ARC}.4"
_SGX_TYPE: Final = f"{_ARC}.5"
_PLATFORM_INSTANCE_ID: Final = f"{_ARC}.6"
_CONFIGURATION: Final = f"{_ARC}.7"
_TCB_COMPONENTS: Final = tuple(f"{_TCB}.{index}" for index in range(1, 17))
_TCB_PCESVN: Final = f"{_TCB}.17"
_TCB_CPUSVN: Final = f"{_TCB}.18"
_DYNAMIC_PLATFORM: Final = f"{_CONFIGURATION}.1"
_CACHED_KEYS: Final = f"{_CONFIGURATION}.2"
_SMT_ENABLED: Final = f"{_CONFIGURATION}.3"

_PROCESSOR_CA_NAMES: Final = frozenset(
    {"Intel SGX PCK Processor CA", "Sanctum Simulated SGX PCK Processor CA"}
)
_PLATFORM_CA_NAMES: Final = frozenset(
    {"Intel SGX PCK Platform CA", "Sanctum Simulated SGX PCK Platform CA"}
)


class SgxType(enum.IntEnum):
    """The SGX type of the platform (PCK extension entry .5), named as Intel names them."""

    Standard = 0
    Scalable = 1
    ScalableWithIntegrity = 2


@dataclass(frozen=True, slots=True)
class PckTcb:
    """The TCB the PCK certificate was issued for.

    Attributes:
        cpu_svn_components: The 16 SGX TCB component SVNs (entries .2.1-.2.16), each 0-255.
        pce_svn: The PCE security version (entry .2.17).
        cpu_svn: The raw 16-byte CPUSVN (entry .2.18).
    """

    cpu_svn_components: tuple[int, ...]
    pce_svn: int
    cpu_svn: bytes


@dataclass(frozen=True, slots=True)
class PckConfiguration:
    """Platform configuration flags (entry .7, Platform CA certificates); ``None`` if absent.

    Attributes:
        dynamic_platform: Whether platform components can be added or replaced (multi-package).
        cached_keys: Whether platform root keys are cached by Intel's registration service.
        smt_enabled: Whether simultaneous multithreading is enabled.
    """

    dynamic_platform: bool | None
    cached_keys: bool | None
    smt_enabled: bool | None


@dataclass(frozen=True, slots=True)
class PckExtensions:
    """The parsed SGX extension of a PCK certificate.

    Attributes:
        ppid: Platform provisioning ID (16 bytes).
        tcb: The TCB the certificate was issued for.
        pce_id: PCE identifier (2 bytes).
        fmspc: Family-model-stepping-platform-custom SKU (6 bytes).
        sgx_type: Standard, Scalable or ScalableWithIntegrity.
        platform_instance_id: 16 bytes (Platform CA certificates), else ``None``.
        configuration: Configuration flags (Platform CA certificates), else ``None``.
    """

    ppid: bytes
    tcb: PckTcb
    pce_id: bytes
    fmspc: bytes
    sgx_type: SgxType
    platform_instance_id: bytes | None
    configuration: PckConfiguration | None


def _oid_tlv(dotted: str) -> bytes:
    """Return the DER encoding (tag, length, value) of the OBJECT IDENTIFIER ``dotted``."""
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in (40 * arcs[0] + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return bytes((_der.TAG_OID, len(body))) + bytes(body)


# The exact DER encodings of the OIDs Intel defines, mapped to their dotted form. An entry whose
# OID element is byte-identical to one of these is exactly what `_der.read_oid` would accept and
# decode to that dotted form, so the lookup is a shortcut with the same result; any other
# encoding goes through the strict generic decoder.
_KNOWN_OIDS: Final = {
    _oid_tlv(oid): oid
    for oid in (
        _PPID,
        _TCB,
        _PCE_ID,
        _FMSPC,
        _SGX_TYPE,
        _PLATFORM_INSTANCE_ID,
        _CONFIGURATION,
        *_TCB_COMPONENTS,
        _TCB_PCESVN,
        _TCB_CPUSVN,
        _DYNAMIC_PLATFORM,
        _CACHED_KEYS,
        _SMT_ENABLED,
    )
}


def _entries(data: bytes, start: int, end: int) -> dict[str, tuple[int, int]]:
    """Read ``SEQUENCE OF SEQUENCE { OID, value }``; map each OID to its value's bounds.

    Raises:
        DerError: The shape is wrong or an OID appears twice.
    """
    entries: dict[str, tuple[int, int]] = {}
    for entry_start, entry_end in _der.read_sequence(data, start, end):
        pair = _der.read_sequence(data, entry_start, entry_end)
        if len(pair) != 2:
            raise DerError(f"SGX extension entry at offset {entry_start} is not an (OID, value)")
        oid_start, oid_end = pair[0]
        oid = _KNOWN_OIDS.get(data[oid_start:oid_end])
        if oid is None:
            oid = _der.read_oid(data, oid_start, oid_end)
        if oid in entries:
            raise DerError(f"SGX extension entry {oid} appears twice")
        entries[oid] = pair[1]
    return entries


def _required(entries: dict[str, tuple[int, int]], oid: str, name: str) -> tuple[int, int]:
    """Return the bounds of the required entry ``oid``.

    Raises:
        DerError: The entry is missing.
    """
    bounds = entries.get(oid)
    if bounds is None:
        raise DerError(f"SGX extension lacks {name} ({oid})")
    return bounds


def _octets(data: bytes, bounds: tuple[int, int], size: int, name: str) -> bytes:
    """Return an OCTET STRING of exactly ``size`` bytes.

    Raises:
        DerError: Not an OCTET STRING of that size.
    """
    value = _der.read_value(data, bounds[0], bounds[1], _der.TAG_OCTET_STRING)
    if len(value) != size:
        raise DerError(f"SGX extension {name} is {len(value)} bytes, not {size}")
    return value


def _bounded(
    data: bytes, bounds: tuple[int, int], maximum: int, name: str, tag: int = _der.TAG_INTEGER
) -> int:
    """Return an INTEGER (or ENUMERATED) between 0 and ``maximum``.

    Raises:
        DerError: Malformed or out of range.
    """
    value = _der.read_integer(data, bounds[0], bounds[1], tag)
    if not 0 <= value <= maximum:
        raise DerError(f"SGX extension {name} is {value}, outside 0..{maximum}")
    return value


def _parse_tcb(data: bytes, bounds: tuple[int, int]) -> PckTcb:
    """Parse the TCB entry: exactly components 1-16, PCESVN and CPUSVN.

    Raises:
        DerError: An entry is missing, unknown, repeated or malformed.
    """
    entries = _entries(data, *bounds)
    expected = {*_TCB_COMPONENTS, _TCB_PCESVN, _TCB_CPUSVN}
    if entries.keys() != expected:
        missing = sorted(expected - entries.keys())
        unknown = sorted(entries.keys() - expected)
        raise DerError(
            f"SGX extension TCB entries are wrong (missing {missing}, unknown {unknown})"
        )
    components = tuple(
        _bounded(data, entries[oid], 0xFF, f"TCB component {index}")
        for index, oid in enumerate(_TCB_COMPONENTS, start=1)
    )
    pce_svn = _bounded(data, entries[_TCB_PCESVN], 0xFFFF, "PCESVN")
    cpu_svn = _octets(data, entries[_TCB_CPUSVN], 16, "CPUSVN")
    return PckTcb(components, pce_svn, cpu_svn)


def _parse_configuration(data: bytes, bounds: tuple[int, int]) -> PckConfiguration:
    """Parse the configuration entry; each flag is optional.

    Raises:
        DerError: A flag is repeated or not a BOOLEAN.
    """
    entries = _entries(data, *bounds)

    def flag(oid: str) -> bool | None:
        found = entries.get(oid)
        return None if found is None else _der.read_boolean(data, *found)

    return PckConfiguration(flag(_DYNAMIC_PLATFORM), flag(_CACHED_KEYS), flag(_SMT_ENABLED))


def parse_sgx_extension(der: bytes, *, platform_ca: bool = False) -> PckExtensions:
    """Parse the DER value of the SGX extension.

    Args:
        der: The extension's value (the content of its OCTET STRING).
        platform_ca: The certificate was issued by a Platform CA, so the platform instance ID and
            the configuration are required too.

    Returns:
        The parsed extension.

    Raises:
        PckExtensionError: The DER is malformed or an entry is missing, repeated or invalid
            (``pck.extension_invalid``).
    """
    try:
        if type(der) is bytes:
            return _parse_sgx_extension_memo(der, platform_ca)
        return _parse_sgx_extension(der, platform_ca=platform_ca)
    except DerError as error:
        raise PckExtensionError(f"PCK certificate SGX extension: {error.message}") from None


def _parse_sgx_extension(der: bytes, *, platform_ca: bool) -> PckExtensions:
    """Parse the SGX extension like :func:`parse_sgx_extension`, raising DER errors as they are.

    Raises:
        DerError: The DER is malformed or an entry is missing, repeated or invalid.
    """
    entries = _entries(der, 0, len(der))
    ppid = _octets(der, _required(entries, _PPID, "PPID"), 16, "PPID")
    tcb = _parse_tcb(der, _required(entries, _TCB, "TCB"))
    pce_id = _octets(der, _required(entries, _PCE_ID, "PCE-ID"), 2, "PCE-ID")
    fmspc = _octets(der, _required(entries, _FMSPC, "FMSPC"), 6, "FMSPC")
    sgx_type_bounds = _required(entries, _SGX_TYPE, "SGX type")
    sgx_type = SgxType(
        _bounded(der, sgx_type_bounds, max(SgxType), "SGX type", _der.TAG_ENUMERATED)
    )
    instance = entries.get(_PLATFORM_INSTANCE_ID)
    configuration = entries.get(_CONFIGURATION)
    if platform_ca and (instance is None or configuration is None):
        raise DerError(
            "SGX extension of a Platform CA certificate lacks the platform instance ID "
            "or the configuration"
        )
    return PckExtensions(
        ppid=ppid,
        tcb=tcb,
        pce_id=pce_id,
        fmspc=fmspc,
        sgx_type=sgx_type,
        platform_instance_id=(
            None if instance is None else _octets(der, instance, 16, "platform instance ID")
        ),
        configuration=None if configuration is None else _parse_configuration(der, configuration),
    )


@memo
def _parse_sgx_extension_memo(der: bytes, platform_ca: bool) -> PckExtensions:
    """Memoised :func:`_parse_sgx_extension` (the result is a frozen dataclass of immutables).

    Raises:
        DerError: As :func:`_parse_sgx_extension`.
    """
    return _parse_sgx_extension(der, platform_ca=platform_ca)


def _issuer_common_name(cert: x509.Certificate) -> str:
    """Return the single common name of ``cert``'s issuer.

    Raises:
        EvidenceError: The issuer has no or several common names (``pck.issuer_unknown``).
    """
    try:
        names = _issuer_common_names(cert)
    except ValueError as error:
        raise EvidenceError(
            f"PCK certificate issuer name is malformed: {error}", code="pck.issuer_unknown"
        ) from None
    if len(names) != 1:
        raise EvidenceError(
            f"PCK certificate issuer has {len(names)} common names, expected one",
            code="pck.issuer_unknown",
        )
    value = names[0]
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _issuer_common_names_of(cert: x509.Certificate) -> tuple[str | bytes, ...]:
    """Return the values of the common names in ``cert``'s issuer.

    Raises:
        ValueError: The issuer name cannot be decoded.
    """
    return tuple(name.value for name in cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME))


# cryptography rebuilds the issuer name on every access; certificates are immutable.
_issuer_common_names: Final = ObjectMemo(_issuer_common_names_of)


def pck_ca_type(cert: x509.Certificate) -> Literal["processor", "platform"]:
    """Return which PCK CA issued ``cert``, from its issuer common name.

    Intel's CAs are "Intel SGX PCK Processor CA" and "Intel SGX PCK Platform CA"; the simulated
    platform's are "Sanctum Simulated SGX PCK Processor CA" and "... Platform CA". Whether a
    simulated CA is acceptable is decided by the trust anchor the chain must reach, not here.

    Raises:
        EvidenceError: The issuer is not a PCK CA (``pck.issuer_unknown``).
    """
    name = _issuer_common_name(cert)
    if name in _PROCESSOR_CA_NAMES:
        return "processor"
    if name in _PLATFORM_CA_NAMES:
        return "platform"
    raise EvidenceError(
        f"PCK certificate issuer {name!r} is not an SGX PCK Processor or Platform CA",
        code="pck.issuer_unknown",
    )


def parse_pck_extensions(cert: x509.Certificate) -> PckExtensions:
    """Return the SGX extension of the PCK certificate ``cert``.

    For certificates issued by a Platform CA the platform instance ID and configuration are
    required as well (Intel QVL ``PlatformPckCertificate``).

    Raises:
        PckExtensionError: The extension is missing, repeated, or invalid
            (``pck.extension_invalid``).
    """
    try:
        extension = cert.extensions.get_extension_for_oid(SGX_EXTENSION_OID)
    except x509.ExtensionNotFound:
        raise PckExtensionError(
            f"PCK certificate has no SGX extension ({_ARC})", code="pck.extension_invalid"
        ) from None
    except (x509.DuplicateExtension, ValueError) as error:
        # cryptography refuses duplicate extensions, and undecodable ones with ValueError.
        raise PckExtensionError(
            f"PCK certificate extensions are malformed: {error}", code="pck.extension_invalid"
        ) from None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover (cryptography)
        raise PckExtensionError("PCK certificate SGX extension could not be read as raw bytes")
    try:
        platform_ca = pck_ca_type(cert) == "platform"
    except EvidenceError:
        # An unknown issuer is refused by chain verification; the extension itself can still be
        # read for diagnostics.
        platform_ca = False
    return parse_sgx_extension(value.value, platform_ca=platform_ca)
