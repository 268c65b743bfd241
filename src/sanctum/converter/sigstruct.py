"""Build, sign, parse and verify SGX SIGSTRUCTs (Intel SDM vol. 3D, "SIGSTRUCT").

A SIGSTRUCT is the 1808-byte enclave signature structure that ``EINIT`` checks: it names the
enclave measurement (``ENCLAVEHASH``, that is MRENCLAVE), the product ID and security version, the
attributes the enclave must run with, and carries the signer's RSA-3072 public key (exponent 3)
with a PKCS#1 v1.5 SHA-256 signature over two regions of the structure. On hardware, MRSIGNER is
SHA-256 of the modulus in its little-endian, 384-byte form; :attr:`Sigstruct.mrsigner` computes it
the same way, so a Sanctum build's identity is the one a real SGX quote will report.

Layout (offsets in bytes, integers little-endian)::

    0    HEADER         16  06000000E10000000000010000000000 (hex, in memory order)
    16   VENDOR          4  0 or 0x8086 (Intel)
    20   DATE            4  yyyymmdd in BCD (Intel SDK); Gramine writes year u16, month, day
    24   HEADER2        16  01010000600000006000000001000000
    40   SWDEFINED       4
    44   reserved       84  zero
    128  MODULUS       384  RSA modulus, little-endian
    512  EXPONENT        4  3
    516  SIGNATURE     384  RSA signature, little-endian
    900  MISCSELECT      4
    904  MISCMASK        4
    908  CET_ATTRIBUTES  1  (reserved before CET; zero)
    909  CET_ATTR_MASK   1
    910  reserved        2  zero
    912  ISVFAMILYID    16
    928  ATTRIBUTES     16  flags u64 then XFRM u64
    944  ATTRIBUTEMASK  16
    960  ENCLAVEHASH    32  MRENCLAVE
    992  reserved       16  zero
    1008 ISVEXTPRODID   16
    1024 ISVPRODID       2
    1026 ISVSVN          2
    1028 reserved       12  zero
    1040 Q1            384  floor(signature^2 / modulus), little-endian
    1424 Q2            384  floor((signature^3 - q1*signature*modulus) / modulus), little-endian

The signed message is bytes 0..128 followed by bytes 900..1028 (256 bytes). ``EINIT`` uses q1 and
q2 to check the signature without a division; :func:`parse_sigstruct` checks both the signature
(with :mod:`cryptography`) and that q1 and q2 are exactly the values the hardware expects.

The parser reads SIGSTRUCTs written by Sanctum, by ``gramine-sgx-sign`` (``.sig`` files) and by the
Intel SDK's ``sgx_sign``: they share this layout and differ only in how they fill DATE and the
masks. Everything here is pure: bytes and keys in, frozen values out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sanctum.converter.manifest_errors import SigningKeyError, SigstructError

__all__ = [
    "ATTRIBUTE_DEBUG",
    "ATTRIBUTE_INIT",
    "ATTRIBUTE_MODE64BIT",
    "DEFAULT_ATTRIBUTE_FLAGS_MASK",
    "DEFAULT_MISCMASK",
    "DEFAULT_XFRM_MASK",
    "HEADER",
    "HEADER2",
    "RSA_EXPONENT",
    "RSA_KEY_BITS",
    "SIGSTRUCT_SIZE",
    "VENDOR_INTEL",
    "XFRM_LEGACY",
    "Sigstruct",
    "mrsigner_of_modulus",
    "parse_sigstruct",
    "sign_sigstruct",
]

#: Size of a SIGSTRUCT in bytes.
SIGSTRUCT_SIZE: Final = 1808
#: Fixed first header, in memory order.
HEADER: Final = bytes.fromhex("06000000E10000000000010000000000")
#: Fixed second header, in memory order.
HEADER2: Final = bytes.fromhex("01010000600000006000000001000000")
#: VENDOR value of enclaves signed by Intel; everyone else writes 0.
VENDOR_INTEL: Final = 0x8086
#: RSA modulus size SGX requires, in bits.
RSA_KEY_BITS: Final = 3072
#: RSA public exponent SGX requires.
RSA_EXPONENT: Final = 3
_KEY_BYTES: Final = RSA_KEY_BITS // 8

#: ATTRIBUTES.FLAGS bit set by EINIT once the enclave is initialised.
ATTRIBUTE_INIT: Final = 0x1
#: ATTRIBUTES.FLAGS bit of debug enclaves (memory readable by a debugger: never in production).
ATTRIBUTE_DEBUG: Final = 0x2
#: ATTRIBUTES.FLAGS bit of 64-bit enclaves.
ATTRIBUTE_MODE64BIT: Final = 0x4
#: XFRM bits 0 (x87) and 1 (SSE), which SGX requires.
XFRM_LEGACY: Final = 0x3
#: Attribute-flags mask: EINIT checks every flag bit against the SIGSTRUCT.
DEFAULT_ATTRIBUTE_FLAGS_MASK: Final = 0xFFFF_FFFF_FFFF_FFFF
#: XFRM mask: every bit checked except AVX, AVX-512 and AMX (not security relevant; as Gramine).
DEFAULT_XFRM_MASK: Final = 0xFFFF_FFFF_FFF9_FF1B
#: MISCSELECT mask: every bit checked.
DEFAULT_MISCMASK: Final = 0xFFFF_FFFF

# Offsets of the fields (Intel SDM vol. 3D, table "Layout of Enclave Signature Structure").
_OFF_HEADER: Final = 0
_OFF_VENDOR: Final = 16
_OFF_DATE: Final = 20
_OFF_HEADER2: Final = 24
_OFF_SWDEFINED: Final = 40
_OFF_RESERVED1: Final = 44
_OFF_MODULUS: Final = 128
_OFF_EXPONENT: Final = 512
_OFF_SIGNATURE: Final = 516
_OFF_MISCSELECT: Final = 900
_OFF_MISCMASK: Final = 904
_OFF_CET_ATTRIBUTES: Final = 908
_OFF_CET_ATTRIBUTES_MASK: Final = 909
_OFF_RESERVED2: Final = 910
_OFF_ISVFAMILYID: Final = 912
_OFF_ATTRIBUTES: Final = 928
_OFF_ATTRIBUTEMASK: Final = 944
_OFF_ENCLAVEHASH: Final = 960
_OFF_RESERVED3: Final = 992
_OFF_ISVEXTPRODID: Final = 1008
_OFF_ISVPRODID: Final = 1024
_OFF_ISVSVN: Final = 1026
_OFF_RESERVED4: Final = 1028
_OFF_Q1: Final = 1040
_OFF_Q2: Final = 1424

# The two signed regions: the header block and the body block, 128 bytes each.
_SIGNED_REGIONS: Final = ((0, 128), (_OFF_MISCSELECT, _OFF_MISCSELECT + 128))
_RESERVED_REGIONS: Final = (
    (_OFF_RESERVED1, _OFF_MODULUS),
    (_OFF_RESERVED2, _OFF_ISVFAMILYID),
    (_OFF_RESERVED3, _OFF_ISVEXTPRODID),
    (_OFF_RESERVED4, _OFF_Q1),
)


def mrsigner_of_modulus(modulus: int) -> bytes:
    """Return MRSIGNER for an RSA-3072 modulus: SHA-256 of its 384 little-endian bytes.

    Raises:
        SigstructError: ``modulus`` does not fit in 384 bytes (code ``sigstruct.modulus``).
    """
    if modulus <= 0 or modulus.bit_length() > RSA_KEY_BITS:
        raise SigstructError("the RSA modulus is not a 3072-bit number", code="sigstruct.modulus")
    return hashlib.sha256(modulus.to_bytes(_KEY_BYTES, "little")).digest()


def _bcd_date(date: dt.date) -> int:
    """Return ``date`` as the SDM's BCD ``0xYYYYMMDD`` integer."""
    return int(f"{date.year:04d}{date.month:02d}{date.day:02d}", 16)


def _decode_date(raw: bytes) -> dt.date | None:
    """Decode DATE as written by the Intel SDK (BCD) or by Gramine (binary); ``None`` if neither."""
    value = int.from_bytes(raw, "little")
    digits = f"{value:08x}"
    if digits.isdigit():
        try:
            return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
        except ValueError:
            pass
    year, month, day = struct.unpack("<HBB", raw)
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Sigstruct:
    """A parsed (and, when it came from :func:`parse_sigstruct`, verified) SIGSTRUCT.

    Attributes:
        vendor: VENDOR (0, or 0x8086 for Intel-signed enclaves).
        date_raw: DATE exactly as stored (little-endian u32).
        swdefined: SWDEFINED, free for the signer's use.
        modulus: The signer's RSA modulus.
        exponent: The public exponent (always 3 once verified).
        signature: The RSA signature as an integer.
        miscselect: MISCSELECT the enclave must run with.
        miscmask: Which MISCSELECT bits EINIT checks.
        cet_attributes: CET_ATTRIBUTES (zero unless the enclave uses CET).
        cet_attributes_mask: CET_ATTRIBUTES_MASK.
        isvfamilyid: ISVFAMILYID (16 bytes; KSS).
        attributes_flags: ATTRIBUTES.FLAGS (debug, mode64bit, ...).
        attributes_xfrm: ATTRIBUTES.XFRM.
        attributemask_flags: Which flag bits EINIT checks.
        attributemask_xfrm: Which XFRM bits EINIT checks.
        enclavehash: ENCLAVEHASH, the expected MRENCLAVE (32 bytes).
        isvextprodid: ISVEXTPRODID (16 bytes; KSS).
        isvprodid: ISVPRODID, the product ID (0-65535).
        isvsvn: ISVSVN, the security version (0-65535).
        q1: The first EINIT helper value.
        q2: The second EINIT helper value.
    """

    vendor: int
    date_raw: int
    swdefined: int
    modulus: int
    exponent: int
    signature: int
    miscselect: int
    miscmask: int
    cet_attributes: int
    cet_attributes_mask: int
    isvfamilyid: bytes
    attributes_flags: int
    attributes_xfrm: int
    attributemask_flags: int
    attributemask_xfrm: int
    enclavehash: bytes
    isvextprodid: bytes
    isvprodid: int
    isvsvn: int
    q1: int
    q2: int

    @property
    def mrenclave(self) -> bytes:
        """The enclave measurement this SIGSTRUCT signs (ENCLAVEHASH)."""
        return self.enclavehash

    @property
    def mrsigner(self) -> bytes:
        """MRSIGNER: SHA-256 of the modulus in 384 little-endian bytes, as on hardware."""
        return mrsigner_of_modulus(self.modulus)

    @property
    def debug(self) -> bool:
        """Whether the enclave is a debug enclave (ATTRIBUTES.DEBUG set)."""
        return bool(self.attributes_flags & ATTRIBUTE_DEBUG)

    @property
    def date(self) -> dt.date | None:
        """DATE decoded (BCD as the SDM says, or Gramine's binary form); ``None`` if invalid."""
        return _decode_date(self.date_raw.to_bytes(4, "little"))

    def to_bytes(self) -> bytes:
        """Return the 1808-byte encoding.

        Raises:
            SigstructError: A field does not fit its slot (code ``sigstruct.field_range``).
        """
        buf = bytearray(SIGSTRUCT_SIZE)
        try:
            _pack_signed_fields(buf, self)
            buf[_OFF_MODULUS:_OFF_EXPONENT] = self.modulus.to_bytes(_KEY_BYTES, "little")
            struct.pack_into("<I", buf, _OFF_EXPONENT, self.exponent)
            buf[_OFF_SIGNATURE:_OFF_MISCSELECT] = self.signature.to_bytes(_KEY_BYTES, "little")
            buf[_OFF_Q1:_OFF_Q2] = self.q1.to_bytes(_KEY_BYTES, "little")
            buf[_OFF_Q2:SIGSTRUCT_SIZE] = self.q2.to_bytes(_KEY_BYTES, "little")
        except (OverflowError, struct.error) as error:
            raise SigstructError(
                f"a SIGSTRUCT field is out of range: {error}", code="sigstruct.field_range"
            ) from error
        return bytes(buf)

    def signed_data(self) -> bytes:
        """Return the 256 bytes the RSA signature covers (header block + body block).

        Raises:
            SigstructError: A field does not fit its slot (code ``sigstruct.field_range``).
        """
        buf = bytearray(SIGSTRUCT_SIZE)
        try:
            _pack_signed_fields(buf, self)
        except (OverflowError, struct.error) as error:
            raise SigstructError(
                f"a SIGSTRUCT field is out of range: {error}", code="sigstruct.field_range"
            ) from error
        return b"".join(bytes(buf[start:end]) for start, end in _SIGNED_REGIONS)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-friendly description (hex strings for byte fields)."""
        date = self.date
        return {
            "mrenclave": self.enclavehash.hex(),
            "mrsigner": self.mrsigner.hex(),
            "isvprodid": self.isvprodid,
            "isvsvn": self.isvsvn,
            "debug": self.debug,
            "vendor": self.vendor,
            "date": date.isoformat() if date else None,
            "dateRaw": f"{self.date_raw:#010x}",
            "swdefined": self.swdefined,
            "miscselect": f"{self.miscselect:#010x}",
            "miscmask": f"{self.miscmask:#010x}",
            "attributes": {
                "flags": f"{self.attributes_flags:#018x}",
                "xfrm": f"{self.attributes_xfrm:#018x}",
            },
            "attributemask": {
                "flags": f"{self.attributemask_flags:#018x}",
                "xfrm": f"{self.attributemask_xfrm:#018x}",
            },
            "cetAttributes": self.cet_attributes,
            "cetAttributesMask": self.cet_attributes_mask,
            "isvfamilyid": self.isvfamilyid.hex(),
            "isvextprodid": self.isvextprodid.hex(),
            "exponent": self.exponent,
            "modulusBits": self.modulus.bit_length(),
        }


def _pack_signed_fields(buf: bytearray, sig: Sigstruct) -> None:
    """Write every field inside the two signed regions of ``buf``."""
    buf[_OFF_HEADER:_OFF_VENDOR] = HEADER
    struct.pack_into("<II", buf, _OFF_VENDOR, sig.vendor, sig.date_raw)
    buf[_OFF_HEADER2:_OFF_SWDEFINED] = HEADER2
    struct.pack_into("<I", buf, _OFF_SWDEFINED, sig.swdefined)
    struct.pack_into(
        "<IIBB", buf, _OFF_MISCSELECT, sig.miscselect, sig.miscmask, sig.cet_attributes,
        sig.cet_attributes_mask,
    )  # fmt: skip
    _put_bytes(buf, _OFF_ISVFAMILYID, sig.isvfamilyid, 16, "isvfamilyid")
    struct.pack_into(
        "<QQQQ", buf, _OFF_ATTRIBUTES, sig.attributes_flags, sig.attributes_xfrm,
        sig.attributemask_flags, sig.attributemask_xfrm,
    )  # fmt: skip
    _put_bytes(buf, _OFF_ENCLAVEHASH, sig.enclavehash, 32, "enclavehash")
    _put_bytes(buf, _OFF_ISVEXTPRODID, sig.isvextprodid, 16, "isvextprodid")
    struct.pack_into("<HH", buf, _OFF_ISVPRODID, sig.isvprodid, sig.isvsvn)


def _put_bytes(buf: bytearray, offset: int, value: bytes, size: int, name: str) -> None:
    """Copy a fixed-size byte field into ``buf``.

    Raises:
        SigstructError: ``value`` is not exactly ``size`` bytes.
    """
    if len(value) != size:
        raise SigstructError(
            f"SIGSTRUCT field {name} must be {size} bytes, not {len(value)}",
            code="sigstruct.field_range",
        )
    buf[offset : offset + size] = value


def _check_key(key: rsa.RSAPrivateKey) -> rsa.RSAPublicNumbers:
    """Return the public numbers of ``key`` after checking it is RSA-3072 with exponent 3.

    Raises:
        SigningKeyError: Wrong size (``signing_key.size``) or exponent (``signing_key.exponent``).
    """
    numbers = key.public_key().public_numbers()
    if key.key_size != RSA_KEY_BITS:
        raise SigningKeyError(
            f"SGX needs an RSA-3072 signing key; this key has {key.key_size} bits",
            code="signing_key.size",
            hint="generate one with: sanctum builds keygen --out key.pem",
        )
    if numbers.e != RSA_EXPONENT:
        raise SigningKeyError(
            f"SGX needs the RSA public exponent 3; this key has {numbers.e}",
            code="signing_key.exponent",
            hint="generate one with: sanctum builds keygen --out key.pem",
        )
    return numbers


def sign_sigstruct(
    *,
    key: rsa.RSAPrivateKey,
    enclavehash: bytes,
    isvprodid: int,
    isvsvn: int,
    debug: bool,
    date: dt.date,
    vendor: int = 0,
    swdefined: int = 0,
    miscselect: int = 0,
    miscmask: int = DEFAULT_MISCMASK,
    attributes_xfrm: int = XFRM_LEGACY,
    attributemask_flags: int = DEFAULT_ATTRIBUTE_FLAGS_MASK,
    attributemask_xfrm: int = DEFAULT_XFRM_MASK,
    isvfamilyid: bytes = bytes(16),
    isvextprodid: bytes = bytes(16),
) -> Sigstruct:
    """Build a SIGSTRUCT for a 64-bit enclave and sign it with ``key``.

    ATTRIBUTES.FLAGS is MODE64BIT, plus DEBUG when ``debug``; DATE is ``date`` in BCD. The
    signature is RSASSA-PKCS1-v1_5 with SHA-256 over the two signed regions (SDM: "EMSA-PKCS1-v1.5
    format with DER encoding of the DigestInfo"), and q1/q2 are derived from it.

    Args:
        key: The RSA-3072, exponent-3 private key.
        enclavehash: The 32-byte MRENCLAVE to sign.
        isvprodid: Product ID, 0-65535.
        isvsvn: Security version, 0-65535.
        debug: Whether to set ATTRIBUTES.DEBUG.
        date: The date written into DATE (passed in: no clock here).
        vendor: VENDOR (0 for everyone but Intel).
        swdefined: SWDEFINED.
        miscselect: MISCSELECT.
        miscmask: MISCMASK.
        attributes_xfrm: ATTRIBUTES.XFRM.
        attributemask_flags: ATTRIBUTEMASK.FLAGS.
        attributemask_xfrm: ATTRIBUTEMASK.XFRM.
        isvfamilyid: ISVFAMILYID (16 bytes).
        isvextprodid: ISVEXTPRODID (16 bytes).

    Returns:
        The signed SIGSTRUCT.

    Raises:
        SigningKeyError: ``key`` is not RSA-3072 with exponent 3.
        SigstructError: A field is out of range (code ``sigstruct.field_range``).
    """
    numbers = _check_key(key)
    for name, value in (("isvprodid", isvprodid), ("isvsvn", isvsvn)):
        if not 0 <= value <= 0xFFFF:
            raise SigstructError(
                f"{name} must be 0-65535, not {value}", code="sigstruct.field_range"
            )
    flags = ATTRIBUTE_MODE64BIT | (ATTRIBUTE_DEBUG if debug else 0)
    unsigned = Sigstruct(
        vendor=vendor,
        date_raw=_bcd_date(date),
        swdefined=swdefined,
        modulus=numbers.n,
        exponent=RSA_EXPONENT,
        signature=0,
        miscselect=miscselect,
        miscmask=miscmask,
        cet_attributes=0,
        cet_attributes_mask=0,
        isvfamilyid=isvfamilyid,
        attributes_flags=flags,
        attributes_xfrm=attributes_xfrm,
        attributemask_flags=attributemask_flags,
        attributemask_xfrm=attributemask_xfrm,
        enclavehash=enclavehash,
        isvextprodid=isvextprodid,
        isvprodid=isvprodid,
        isvsvn=isvsvn,
        q1=0,
        q2=0,
    )
    signature = int.from_bytes(
        key.sign(unsigned.signed_data(), padding.PKCS1v15(), hashes.SHA256()), "big"
    )
    q1, q2 = _q1_q2(signature, numbers.n)
    return dataclasses.replace(unsigned, signature=signature, q1=q1, q2=q2)


def _q1_q2(signature: int, modulus: int) -> tuple[int, int]:
    """Return (q1, q2) as EINIT defines them for ``signature`` and ``modulus``."""
    square = signature * signature
    q1 = square // modulus
    # (s^3 - q1*s*n) / n == s * (s^2 mod n) / n, computed without the cube.
    q2 = (square - q1 * modulus) * signature // modulus
    return q1, q2


def parse_sigstruct(data: bytes) -> Sigstruct:
    """Parse a SIGSTRUCT and verify it: headers, exponent, signature and q1/q2.

    Accepts SIGSTRUCTs from Sanctum, ``gramine-sgx-sign`` (``.sig``) and Intel's ``sgx_sign``.

    Args:
        data: Exactly :data:`SIGSTRUCT_SIZE` bytes.

    Returns:
        The verified SIGSTRUCT.

    Raises:
        SigstructError: Wrong size (``sigstruct.size``), headers (``sigstruct.header``), exponent
            (``sigstruct.exponent``), modulus (``sigstruct.modulus``), non-zero reserved bytes
            (``sigstruct.reserved_nonzero``), a signature that does not verify
            (``sigstruct.signature_invalid``), or q1/q2 that differ from the values EINIT expects
            (``sigstruct.q1_invalid``, ``sigstruct.q2_invalid``).
    """
    if len(data) != SIGSTRUCT_SIZE:
        raise SigstructError(
            f"a SIGSTRUCT is {SIGSTRUCT_SIZE} bytes; got {len(data)}", code="sigstruct.size"
        )
    if data[_OFF_HEADER:_OFF_VENDOR] != HEADER or data[_OFF_HEADER2:_OFF_SWDEFINED] != HEADER2:
        raise SigstructError(
            "HEADER or HEADER2 does not have the fixed SIGSTRUCT value", code="sigstruct.header"
        )
    for start, end in _RESERVED_REGIONS:
        if any(data[start:end]):
            raise SigstructError(
                f"reserved bytes {start}..{end} of the SIGSTRUCT are not zero",
                code="sigstruct.reserved_nonzero",
            )
    (vendor, date_raw) = struct.unpack_from("<II", data, _OFF_VENDOR)
    (swdefined,) = struct.unpack_from("<I", data, _OFF_SWDEFINED)
    modulus = int.from_bytes(data[_OFF_MODULUS:_OFF_EXPONENT], "little")
    (exponent,) = struct.unpack_from("<I", data, _OFF_EXPONENT)
    signature = int.from_bytes(data[_OFF_SIGNATURE:_OFF_MISCSELECT], "little")
    miscselect, miscmask, cet, cet_mask = struct.unpack_from("<IIBB", data, _OFF_MISCSELECT)
    flags, xfrm, mask_flags, mask_xfrm = struct.unpack_from("<QQQQ", data, _OFF_ATTRIBUTES)
    isvprodid, isvsvn = struct.unpack_from("<HH", data, _OFF_ISVPRODID)
    sig = Sigstruct(
        vendor=vendor,
        date_raw=date_raw,
        swdefined=swdefined,
        modulus=modulus,
        exponent=exponent,
        signature=signature,
        miscselect=miscselect,
        miscmask=miscmask,
        cet_attributes=cet,
        cet_attributes_mask=cet_mask,
        isvfamilyid=bytes(data[_OFF_ISVFAMILYID:_OFF_ATTRIBUTES]),
        attributes_flags=flags,
        attributes_xfrm=xfrm,
        attributemask_flags=mask_flags,
        attributemask_xfrm=mask_xfrm,
        enclavehash=bytes(data[_OFF_ENCLAVEHASH:_OFF_RESERVED3]),
        isvextprodid=bytes(data[_OFF_ISVEXTPRODID:_OFF_ISVPRODID]),
        isvprodid=isvprodid,
        isvsvn=isvsvn,
        q1=int.from_bytes(data[_OFF_Q1:_OFF_Q2], "little"),
        q2=int.from_bytes(data[_OFF_Q2:SIGSTRUCT_SIZE], "little"),
    )
    _verify(sig)
    return sig


def _verify(sig: Sigstruct) -> None:
    """Check the key, the RSA signature and q1/q2 of ``sig``.

    Raises:
        SigstructError: See :func:`parse_sigstruct`.
    """
    if sig.exponent != RSA_EXPONENT:
        raise SigstructError(
            f"the SIGSTRUCT exponent is {sig.exponent}; SGX requires 3", code="sigstruct.exponent"
        )
    if sig.modulus.bit_length() != RSA_KEY_BITS or sig.modulus % 2 == 0:
        raise SigstructError(
            "the SIGSTRUCT modulus is not an odd 3072-bit number", code="sigstruct.modulus"
        )
    if sig.signature >= sig.modulus:
        raise SigstructError(
            "the SIGSTRUCT signature is not smaller than its modulus",
            code="sigstruct.signature_invalid",
        )
    public_key = rsa.RSAPublicNumbers(RSA_EXPONENT, sig.modulus).public_key()
    try:
        public_key.verify(
            sig.signature.to_bytes(_KEY_BYTES, "big"),
            sig.signed_data(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature as error:
        raise SigstructError(
            "the SIGSTRUCT signature does not verify with its own modulus",
            code="sigstruct.signature_invalid",
        ) from error
    q1, q2 = _q1_q2(sig.signature, sig.modulus)
    if sig.q1 != q1:
        raise SigstructError(
            "SIGSTRUCT q1 is not floor(signature^2 / modulus); EINIT would refuse it",
            code="sigstruct.q1_invalid",
        )
    if sig.q2 != q2:
        raise SigstructError(
            "SIGSTRUCT q2 is not floor((signature^3 - q1*signature*modulus) / modulus); "
            "EINIT would refuse it",
            code="sigstruct.q2_invalid",
        )
