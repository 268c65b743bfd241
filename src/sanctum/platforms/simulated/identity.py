"""What a simulated enclave or trust domain *is*: the measurements its quotes report.

:class:`SgxIdentity` holds the fields of an SGX enclave report (MRENCLAVE, MRSIGNER, product ID,
SVN, attributes, ...) and :class:`TdIdentity` those of a TDX TD report (MRTD, RTMRs, TD
attributes, the TDX module's measurements, ...). Both have defaults that make a sensible,
clearly-simulated production workload, so tests only name the fields they care about. The
encoders in :mod:`sanctum.platforms.simulated.quote` turn them into report bodies.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

__all__ = [
    "SGX_ATTRIBUTE_DEBUG",
    "TD_ATTRIBUTE_DEBUG",
    "TD_ATTRIBUTE_SEPT_VE_DISABLE",
    "SgxIdentity",
    "TdIdentity",
]

#: Bit 1 of the SGX attribute flags (first 8 bytes of ``attributes``): a debug enclave.
SGX_ATTRIBUTE_DEBUG = 0x02
#: Bit 0 of the TD attributes: a debug trust domain (the host can read its memory).
TD_ATTRIBUTE_DEBUG = 0x01
#: Bit 28 of the TD attributes: EPT violations are not converted to #VE (expected by verifiers).
TD_ATTRIBUTE_SEPT_VE_DISABLE = 1 << 28

# Production enclave attributes: INIT | MODE64BIT, XFRM = x87 | SSE | AVX | AVX-512 state.
_DEFAULT_SGX_ATTRIBUTES = bytes.fromhex("0500000000000000e700000000000000")
# The XFAM value of the real TDX quotes in the test vectors.
_DEFAULT_XFAM = bytes.fromhex("e702060000000000")


def _digest32(label: str) -> bytes:
    """Return a 32-byte placeholder measurement derived from ``label``."""
    return hashlib.sha256(f"sanctum simulated {label}".encode()).digest()


def _digest48(label: str) -> bytes:
    """Return a 48-byte placeholder measurement derived from ``label``."""
    return hashlib.sha384(f"sanctum simulated {label}".encode()).digest()


def _check_size(name: str, value: bytes, size: int) -> None:
    """Raise ``ValueError`` unless ``value`` is exactly ``size`` bytes.

    Raises:
        ValueError: ``value`` has the wrong size (a programming error in the caller).
    """
    if len(value) != size:
        msg = f"{name} must be {size} bytes, got {len(value)}"
        raise ValueError(msg)


def _check_uint(name: str, value: int, bits: int) -> None:
    """Raise ``ValueError`` unless ``value`` fits an unsigned integer of ``bits`` bits.

    Raises:
        ValueError: ``value`` is negative or too large.
    """
    if not 0 <= value < (1 << bits):
        msg = f"{name} must fit in {bits} unsigned bits, got {value}"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class SgxIdentity:
    """The identity an SGX enclave report carries (everything except CPUSVN and report data).

    Attributes:
        mr_enclave: MRENCLAVE, the enclave measurement (32 bytes).
        mr_signer: MRSIGNER, the hash of the enclave signing key (32 bytes).
        isv_prod_id: ISV product ID.
        isv_svn: ISV security version number.
        attributes: The 16-byte SECS attributes (flags u64 then XFRM u64, little-endian).
        misc_select: MISCSELECT.
        config_id: CONFIGID (64 bytes).
        config_svn: CONFIGSVN.
        isv_ext_prod_id: Extended product ID (16 bytes).
        isv_family_id: Product family ID (16 bytes).
    """

    mr_enclave: bytes = field(default_factory=lambda: _digest32("enclave"))
    mr_signer: bytes = field(default_factory=lambda: _digest32("enclave signer"))
    isv_prod_id: int = 0
    isv_svn: int = 0
    attributes: bytes = _DEFAULT_SGX_ATTRIBUTES
    misc_select: int = 0
    config_id: bytes = bytes(64)
    config_svn: int = 0
    isv_ext_prod_id: bytes = bytes(16)
    isv_family_id: bytes = bytes(16)

    def __post_init__(self) -> None:
        """Check field sizes.

        Raises:
            ValueError: A field has the wrong size.
        """
        _check_size("mr_enclave", self.mr_enclave, 32)
        _check_size("mr_signer", self.mr_signer, 32)
        _check_size("attributes", self.attributes, 16)
        _check_size("config_id", self.config_id, 64)
        _check_size("isv_ext_prod_id", self.isv_ext_prod_id, 16)
        _check_size("isv_family_id", self.isv_family_id, 16)
        _check_uint("isv_prod_id", self.isv_prod_id, 16)
        _check_uint("isv_svn", self.isv_svn, 16)
        _check_uint("config_svn", self.config_svn, 16)
        _check_uint("misc_select", self.misc_select, 32)

    @property
    def debug(self) -> bool:
        """Whether the DEBUG attribute bit is set."""
        return bool(self.attributes[0] & SGX_ATTRIBUTE_DEBUG)

    def with_debug(self, debug: bool = True) -> SgxIdentity:
        """Return a copy with the DEBUG attribute bit set (or cleared)."""
        flags = self.attributes[0] | SGX_ATTRIBUTE_DEBUG
        if not debug:
            flags = self.attributes[0] & ~SGX_ATTRIBUTE_DEBUG
        return dataclasses.replace(self, attributes=bytes([flags]) + self.attributes[1:])


@dataclass(frozen=True, slots=True)
class TdIdentity:
    """The identity a TDX TD report carries (everything except TEE_TCB_SVN and report data).

    ``tee_tcb_svn`` is a property of the platform's TDX module, so it is part of the simulated
    platform's TCB, not of this identity.

    Attributes:
        mr_td: MRTD, the measurement of the initial TD contents (48 bytes).
        mr_config_id: MRCONFIGID (48 bytes).
        mr_owner: MROWNER (48 bytes).
        mr_owner_config: MROWNERCONFIG (48 bytes).
        rtmr0: Runtime measurement register 0 (48 bytes).
        rtmr1: Runtime measurement register 1 (48 bytes).
        rtmr2: Runtime measurement register 2 (48 bytes).
        rtmr3: Runtime measurement register 3 (48 bytes).
        td_attributes: TD attributes (8 bytes, little-endian u64; bit 0 is DEBUG).
        xfam: Extended features available mask (8 bytes).
        mr_seam: Measurement of the TDX module (48 bytes).
        mr_signer_seam: Signer of the TDX module (48 bytes; zero for Intel's module).
        seam_attributes: TDX module attributes (8 bytes; zero for production modules).
        mr_servicetd: Service TD hash (48 bytes); only TD report 1.5 (quote v5) carries it.
    """

    mr_td: bytes = field(default_factory=lambda: _digest48("td"))
    mr_config_id: bytes = bytes(48)
    mr_owner: bytes = bytes(48)
    mr_owner_config: bytes = bytes(48)
    rtmr0: bytes = field(default_factory=lambda: _digest48("rtmr0"))
    rtmr1: bytes = field(default_factory=lambda: _digest48("rtmr1"))
    rtmr2: bytes = field(default_factory=lambda: _digest48("rtmr2"))
    rtmr3: bytes = bytes(48)
    td_attributes: bytes = TD_ATTRIBUTE_SEPT_VE_DISABLE.to_bytes(8, "little")
    xfam: bytes = _DEFAULT_XFAM
    mr_seam: bytes = field(default_factory=lambda: _digest48("tdx module"))
    mr_signer_seam: bytes = bytes(48)
    seam_attributes: bytes = bytes(8)
    mr_servicetd: bytes = bytes(48)

    def __post_init__(self) -> None:
        """Check field sizes.

        Raises:
            ValueError: A field has the wrong size.
        """
        for name in (
            "mr_td",
            "mr_config_id",
            "mr_owner",
            "mr_owner_config",
            "rtmr0",
            "rtmr1",
            "rtmr2",
            "rtmr3",
            "mr_seam",
            "mr_signer_seam",
            "mr_servicetd",
        ):
            _check_size(name, getattr(self, name), 48)
        for name in ("td_attributes", "xfam", "seam_attributes"):
            _check_size(name, getattr(self, name), 8)

    @property
    def debug(self) -> bool:
        """Whether the DEBUG TD attribute bit is set."""
        return bool(int.from_bytes(self.td_attributes, "little") & TD_ATTRIBUTE_DEBUG)

    def with_debug(self, debug: bool = True) -> TdIdentity:
        """Return a copy with the DEBUG TD attribute bit set (or cleared)."""
        value = int.from_bytes(self.td_attributes, "little")
        value = value | TD_ATTRIBUTE_DEBUG if debug else value & ~TD_ATTRIBUTE_DEBUG
        return dataclasses.replace(self, td_attributes=value.to_bytes(8, "little"))
