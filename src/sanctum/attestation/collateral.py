"""DCAP collateral: the Intel-signed data a quote is judged against, and its loaders.

Collateral is the PCK CRL (with its issuer chain), the Intel SGX Root CA CRL, the TCB info and the
QE identity (each with its ECDSA signature and the TCB Signing issuer chain). This module only
*carries* collateral; :mod:`sanctum.attestation.verify` checks it.

Two wire formats are understood:

- the ``QuoteCollateralV3`` JSON bundle of dcap-qvl (the format of the test vectors and of
  ``sanctum quote verify --collateral``), read by :func:`load_collateral_bundle` and written by
  :func:`dump_collateral_bundle`;
- Intel PCS / PCCS responses as served (``{"tcbInfo":…,"signature":"…"}`` bodies, URL-encoded or
  plain PEM issuer-chain headers, CRLs as DER, PEM or hex), read by :func:`collateral_from_pcs`.

The TCB info and QE identity signatures cover the exact bytes of the inner JSON object as Intel
served them. The PCS loader therefore locates that value's byte span in the raw body with a small
strict JSON scanner and keeps those bytes; nothing is ever re-serialised.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sanctum.errors import EvidenceError

__all__ = [
    "Collateral",
    "collateral_from_pcs",
    "dump_collateral_bundle",
    "extract_signed_body",
    "load_collateral_bundle",
    "normalize_crl",
    "normalize_pem_chain",
]

_SIGNATURE_SIZE: Final = 64
_BUNDLE_FIELDS: Final = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)
_HEX_RE: Final = re.compile(rb"\A[0-9a-fA-F\s]+\Z")
_SCALAR_RE: Final = re.compile(
    rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null"
)
_PEM_CERT_RE: Final = re.compile(
    r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----"
)


def _malformed(message: str) -> EvidenceError:
    """Return the error raised for collateral that cannot be read."""
    return EvidenceError(message, code="collateral.malformed")


def normalize_pem_chain(chain: str | bytes | Sequence[x509.Certificate], what: str) -> str:
    """Return an issuer chain as canonical PEM text (one block per certificate, leaf first).

    Accepts PEM text (bytes or str, optionally URL-encoded as in PCS headers, optionally
    NUL-terminated) or already parsed certificates.

    Raises:
        EvidenceError: The chain holds no certificate (code ``collateral.malformed``).
    """
    if isinstance(chain, (str, bytes)):
        text = chain.decode("utf-8", "replace") if isinstance(chain, bytes) else chain
        text = text.rstrip("\0").strip()
        if "%2D" in text or "%0A" in text or "%20" in text:
            text = urllib.parse.unquote(text)
        blocks = _PEM_CERT_RE.findall(text)
        if not blocks:
            raise _malformed(f"the {what} holds no PEM certificate")
        return "\n".join(blocks) + "\n"
    certs = list(chain)
    if not certs:
        raise _malformed(f"the {what} holds no certificate")
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def normalize_crl(data: bytes | str, what: str) -> bytes:
    """Return a CRL as DER, accepting DER, PEM or hex (as PCS and PCCS serve them).

    Only the encoding is normalised here; parsing and the signature check happen in
    :mod:`sanctum.attestation.chain`.

    Raises:
        EvidenceError: ``data`` is empty or hex/PEM that does not decode (``collateral.malformed``).
    """
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    stripped = raw.strip()
    if not stripped:
        raise _malformed(f"the {what} is empty")
    if stripped.startswith(b"-----BEGIN"):
        try:
            crl = x509.load_pem_x509_crl(stripped)
        except ValueError as exc:
            raise EvidenceError(f"the {what} is not a PEM CRL: {exc}", code="crl.invalid") from exc
        return crl.public_bytes(serialization.Encoding.DER)
    if stripped[0] != 0x30 and _HEX_RE.match(stripped):
        try:
            return binascii.unhexlify(b"".join(stripped.split()))
        except (binascii.Error, ValueError) as exc:
            raise _malformed(f"the {what} is not valid hex") from exc
    return raw


def _signature_from_hex(value: object, what: str) -> bytes:
    """Decode a 64-byte raw ``r || s`` signature given as hex text.

    Raises:
        EvidenceError: The value is not 128 hex digits (``collateral.malformed``).
    """
    if not isinstance(value, str) or len(value) != 2 * _SIGNATURE_SIZE:
        raise _malformed(f"the {what} is not a 64-byte hex signature")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise _malformed(f"the {what} is not a 64-byte hex signature") from exc


@dataclass(frozen=True, slots=True)
class Collateral:
    """Everything besides the quote that DCAP verification needs, as received (unverified).

    Attributes:
        pck_crl: The PCK CRL (DER) of the Platform or Processor CA that issued the PCK cert.
        pck_crl_issuer_chain: PEM chain of the PCK CRL issuer (CA, then root). Parsed
            certificates, PEM bytes and URL-encoded header values are accepted and normalised.
        root_ca_crl: The Intel SGX Root CA CRL (DER; PEM and hex are accepted and normalised).
        tcb_info_text: The exact signed bytes of the inner ``tcbInfo`` JSON object.
        tcb_info_signature: ECDSA P-256 signature over ``tcb_info_text``, raw ``r || s``.
        tcb_info_issuer_chain: PEM chain TCB Signing cert, then root.
        qe_identity_text: The exact signed bytes of the inner ``enclaveIdentity`` object.
        qe_identity_signature: ECDSA P-256 signature over ``qe_identity_text``, raw ``r || s``.
        qe_identity_issuer_chain: PEM chain TCB Signing cert, then root.
        pck_certificate_chain: Optional PEM PCK chain (leaf first) for quotes whose
            certification data does not embed it (types 1 to 4).
        digest: SHA-256 over every field, a stable identity for caches.
    """

    pck_crl: bytes
    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    tcb_info_text: bytes
    tcb_info_signature: bytes
    tcb_info_issuer_chain: str
    qe_identity_text: bytes
    qe_identity_signature: bytes
    qe_identity_issuer_chain: str
    pck_certificate_chain: str | None = None
    digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Normalise encodings and check the field shapes.

        Raises:
            EvidenceError: A field has the wrong shape (``collateral.malformed``) or a CRL is
                unreadable PEM (``crl.invalid``).
        """
        setter = object.__setattr__
        setter(self, "pck_crl", normalize_crl(self.pck_crl, "PCK CRL"))
        setter(self, "root_ca_crl", normalize_crl(self.root_ca_crl, "root CA CRL"))
        for name in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"):
            setter(self, name, normalize_pem_chain(getattr(self, name), name.replace("_", " ")))
        if self.pck_certificate_chain is not None:
            setter(
                self,
                "pck_certificate_chain",
                normalize_pem_chain(self.pck_certificate_chain, "PCK certificate chain"),
            )
        for name in ("tcb_info_text", "qe_identity_text"):
            value = getattr(self, name)
            if isinstance(value, str):
                setter(self, name, value.encode("utf-8"))
            elif not isinstance(value, bytes):
                setter(self, name, bytes(value))
            if not getattr(self, name):
                raise _malformed(f"the {name.replace('_', ' ')} is empty")
        for name in ("tcb_info_signature", "qe_identity_signature"):
            value = bytes(getattr(self, name))
            if len(value) != _SIGNATURE_SIZE:
                raise _malformed(
                    f"the {name.replace('_', ' ')} is {len(value)} bytes, expected 64 (r || s)"
                )
            setter(self, name, value)
        digest = hashlib.sha256()
        for part in (
            self.pck_crl,
            self.pck_crl_issuer_chain.encode(),
            self.root_ca_crl,
            self.tcb_info_text,
            self.tcb_info_signature,
            self.tcb_info_issuer_chain.encode(),
            self.qe_identity_text,
            self.qe_identity_signature,
            self.qe_identity_issuer_chain.encode(),
            (self.pck_certificate_chain or "").encode(),
        ):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        setter(self, "digest", digest.digest())


def load_collateral_bundle(data: bytes | str) -> Collateral:
    """Load a dcap-qvl ``QuoteCollateralV3`` JSON bundle.

    ``tcb_info`` / ``qe_identity`` are the exact signed text; signatures and CRLs are hex;
    issuer chains are PEM. The optional ``pck_certificate_chain`` (PEM) is kept.

    Raises:
        EvidenceError: The bundle is not such a JSON object (``collateral.malformed``).
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _malformed(f"the collateral bundle is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _malformed("the collateral bundle is not a JSON object")
    missing = [name for name in _BUNDLE_FIELDS if name not in document]
    if missing:
        raise _malformed(f"the collateral bundle lacks {', '.join(missing)}")
    for name in _BUNDLE_FIELDS:
        if not isinstance(document[name], str):
            raise _malformed(f"the collateral field {name} is not a string")
    pck_chain = document.get("pck_certificate_chain")
    if pck_chain is not None and not isinstance(pck_chain, str):
        raise _malformed("the collateral field pck_certificate_chain is not a string")

    def unhex(name: str) -> bytes:
        try:
            return bytes.fromhex(document[name])
        except ValueError as exc:
            raise _malformed(f"the collateral field {name} is not hex") from exc

    return Collateral(
        pck_crl=unhex("pck_crl"),
        pck_crl_issuer_chain=document["pck_crl_issuer_chain"],
        root_ca_crl=unhex("root_ca_crl"),
        tcb_info_text=document["tcb_info"].encode("utf-8"),
        tcb_info_signature=_signature_from_hex(
            document["tcb_info_signature"], "TCB info signature"
        ),
        tcb_info_issuer_chain=document["tcb_info_issuer_chain"],
        qe_identity_text=document["qe_identity"].encode("utf-8"),
        qe_identity_signature=_signature_from_hex(
            document["qe_identity_signature"], "QE identity signature"
        ),
        qe_identity_issuer_chain=document["qe_identity_issuer_chain"],
        pck_certificate_chain=pck_chain or None,
    )


def dump_collateral_bundle(collateral: Collateral) -> bytes:
    """Serialise collateral as a ``QuoteCollateralV3`` JSON bundle (round-trips exactly).

    Raises:
        EvidenceError: The signed texts are not UTF-8 (``collateral.malformed``); they cannot be
            carried in a JSON string.
    """
    try:
        tcb_text = collateral.tcb_info_text.decode("utf-8")
        qe_text = collateral.qe_identity_text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed("the signed collateral text is not UTF-8") from exc
    document: dict[str, str] = {
        "pck_crl_issuer_chain": collateral.pck_crl_issuer_chain,
        "root_ca_crl": collateral.root_ca_crl.hex(),
        "pck_crl": collateral.pck_crl.hex(),
        "tcb_info_issuer_chain": collateral.tcb_info_issuer_chain,
        "tcb_info": tcb_text,
        "tcb_info_signature": collateral.tcb_info_signature.hex(),
        "qe_identity_issuer_chain": collateral.qe_identity_issuer_chain,
        "qe_identity": qe_text,
        "qe_identity_signature": collateral.qe_identity_signature.hex(),
    }
    if collateral.pck_certificate_chain is not None:
        document["pck_certificate_chain"] = collateral.pck_certificate_chain
    return json.dumps(document, indent=1).encode("utf-8")


class _Scanner:
    """A strict JSON scanner that reports the byte span of values without building them.

    It accepts exactly RFC 8259 JSON (no comments, no trailing commas, no NaN) and is used only
    to find where a member's value starts and ends in the raw body; ``json.loads`` then parses
    the same bytes, so the two never disagree about what the document is.
    """

    _WS: Final = b" \t\r\n"
    _MAX_DEPTH: Final = 64

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def error(self, what: str) -> EvidenceError:
        return _malformed(f"the signed body is not valid JSON ({what} at byte {self.pos})")

    def skip_ws(self) -> None:
        data, pos = self.data, self.pos
        while pos < len(data) and data[pos] in self._WS:
            pos += 1
        self.pos = pos

    def expect(self, char: int) -> None:
        self.skip_ws()
        if self.pos >= len(self.data) or self.data[self.pos] != char:
            raise self.error(f"expected {chr(char)!r}")
        self.pos += 1

    def peek(self) -> int:
        self.skip_ws()
        if self.pos >= len(self.data):
            raise self.error("unexpected end")
        return self.data[self.pos]

    def string(self) -> bytes:
        self.expect(0x22)
        start = self.pos
        data = self.data
        while True:
            if self.pos >= len(data):
                raise self.error("unterminated string")
            char = data[self.pos]
            if char == 0x22:
                raw = data[start : self.pos]
                self.pos += 1
                return raw
            if char < 0x20:
                raise self.error("control character in string")
            if char == 0x5C:
                self.pos += 1
                if self.pos >= len(data):
                    raise self.error("unterminated escape")
                escape = data[self.pos]
                if escape == 0x75:
                    digits = data[self.pos + 1 : self.pos + 5]
                    if len(digits) != 4 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
                        raise self.error("bad unicode escape")
                    self.pos += 4
                elif escape not in b'"\\/bfnrt':
                    raise self.error("bad escape")
            self.pos += 1

    def value(self, depth: int = 0) -> tuple[int, int]:
        if depth > self._MAX_DEPTH:
            raise self.error("nesting too deep")
        char = self.peek()
        start = self.pos
        if char == 0x7B:
            self.obj(depth + 1)
        elif char == 0x5B:
            self.pos += 1
            if self.peek() == 0x5D:
                self.pos += 1
            else:
                while True:
                    self.value(depth + 1)
                    if self.peek() == 0x2C:
                        self.pos += 1
                        continue
                    self.expect(0x5D)
                    break
        elif char == 0x22:
            self.string()
        else:
            match = _SCALAR_RE.match(self.data, self.pos)
            if match is None:
                raise self.error("unexpected token")
            self.pos = match.end()
        return start, self.pos

    def obj(self, depth: int) -> dict[bytes, tuple[int, int]]:
        self.expect(0x7B)
        members: dict[bytes, tuple[int, int]] = {}
        if self.peek() == 0x7D:
            self.pos += 1
            return members
        while True:
            key = self.string()
            self.expect(0x3A)
            span = self.value(depth)
            if key in members:
                raise self.error("duplicate member")
            members[key] = span
            if self.peek() == 0x2C:
                self.pos += 1
                continue
            self.expect(0x7D)
            return members


def extract_signed_body(body: bytes | str, key: str) -> tuple[bytes, bytes]:
    """Return the exact signed text and signature of a PCS ``{"<key>":…,"signature":"…"}`` body.

    The returned text is the byte span of the ``key`` member's value in ``body``, unchanged.

    Raises:
        EvidenceError: The body is not strict JSON, lacks the member or the signature, or the
            signature is not 64 bytes of hex (``collateral.malformed``).
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    scanner = _Scanner(raw)
    members = scanner.obj(1)
    scanner.skip_ws()
    if scanner.pos != len(raw):
        raise scanner.error("trailing data")
    span = members.get(key.encode("ascii"))
    if span is None:
        raise _malformed(f"the PCS body has no {key!r} member")
    text = raw[span[0] : span[1]]
    if not text.startswith(b"{"):
        raise _malformed(f"the PCS body's {key!r} member is not an object")
    sig_span = members.get(b"signature")
    if sig_span is None:
        raise _malformed("the PCS body has no 'signature' member")
    try:
        signature_value = json.loads(raw[sig_span[0] : sig_span[1]])
    except ValueError as exc:
        raise _malformed("the PCS body's signature is not a JSON string") from exc
    return text, _signature_from_hex(signature_value, f"{key} signature")


def collateral_from_pcs(
    *,
    tcb_info_body: bytes | str,
    tcb_info_issuer_chain: str | bytes,
    qe_identity_body: bytes | str,
    qe_identity_issuer_chain: str | bytes,
    pck_crl: bytes | str,
    pck_crl_issuer_chain: str | bytes,
    root_ca_crl: bytes | str,
    pck_certificate_chain: str | bytes | None = None,
) -> Collateral:
    """Build :class:`Collateral` from Intel PCS / PCCS responses as served.

    Args:
        tcb_info_body: Raw ``/tcb`` response body ``{"tcbInfo":{…},"signature":"…"}``.
        tcb_info_issuer_chain: ``TCB-Info-Issuer-Chain`` header (PEM, possibly URL-encoded).
        qe_identity_body: Raw ``/qe/identity`` body ``{"enclaveIdentity":{…},"signature":"…"}``.
        qe_identity_issuer_chain: ``SGX-Enclave-Identity-Issuer-Chain`` header.
        pck_crl: The PCK CRL as DER, PEM or hex.
        pck_crl_issuer_chain: ``SGX-PCK-CRL-Issuer-Chain`` header.
        root_ca_crl: The root CA CRL as DER, PEM or hex.
        pck_certificate_chain: Optional PCK chain for quotes without an embedded chain.

    Raises:
        EvidenceError: A body or chain cannot be read (``collateral.malformed``, ``crl.invalid``).
    """
    tcb_text, tcb_signature = extract_signed_body(tcb_info_body, "tcbInfo")
    qe_text, qe_signature = extract_signed_body(qe_identity_body, "enclaveIdentity")
    return Collateral(
        pck_crl=normalize_crl(pck_crl, "PCK CRL"),
        pck_crl_issuer_chain=normalize_pem_chain(pck_crl_issuer_chain, "PCK CRL issuer chain"),
        root_ca_crl=normalize_crl(root_ca_crl, "root CA CRL"),
        tcb_info_text=tcb_text,
        tcb_info_signature=tcb_signature,
        tcb_info_issuer_chain=normalize_pem_chain(tcb_info_issuer_chain, "TCB info issuer chain"),
        qe_identity_text=qe_text,
        qe_identity_signature=qe_signature,
        qe_identity_issuer_chain=normalize_pem_chain(
            qe_identity_issuer_chain, "QE identity issuer chain"
        ),
        pck_certificate_chain=(
            normalize_pem_chain(pck_certificate_chain, "PCK certificate chain")
            if pck_certificate_chain is not None
            else None
        ),
    )
