"""Sealing of application secrets to the attested workload key.

The manager encrypts each secret to the public key of the workload's CSR, the key whose digest
the verified quote carries (:mod:`sanctum.protocol.binding`). Only the code holding the private
key, inside the attested enclave, can open it; a TLS-terminating ingress, a proxy or a request
log between the manager and the enclave sees ciphertext only.

Suites (see ``docs/adr/0081-key-binding-and-secret-sealing.md``):

``hpke-p256-sha256-aes256gcm`` (EC P-256 keys, the default)
    HPKE (RFC 9180) base mode, single-shot, with DHKEM(P-256, HKDF-SHA256), HKDF-SHA256 and
    AES-256-GCM (suite ids 0x0010, 0x0001, 0x0002), as implemented by
    ``cryptography.hazmat.primitives.hpke``. The single-shot API has no separate associated-data
    input; as RFC 9180 section 8.1 recommends for single-shot use, the associated data is bound
    through the HPKE ``info`` instead, which enters the key schedule, so a change of either
    changes the key and makes opening fail. The HPKE info is :func:`hpke_info` of the caller's
    ``info`` and ``aad``. ``enc`` is the 65-byte uncompressed ephemeral public key.

``rsa-oaep-sha256-aes256gcm`` (RSA keys of 2048 bits or more, for apps with RSA certificates)
    A fresh 32-byte content key is encrypted with RSA-OAEP (SHA-256, MGF1-SHA-256, label =
    :func:`hpke_info` of ``info`` and ``aad``) into ``enc``; the plaintext is encrypted with
    AES-256-GCM under that key, a zero 96-bit nonce (each key encrypts exactly one message) and
    associated data = the same :func:`hpke_info` bytes. This is the classic JWE
    ``RSA-OAEP-256`` + ``A256GCM`` construction with the context bound twice.

Any other key type is refused with ``sealing.unsupported_key``. A box that does not open (a
wrong key, a changed byte, another context) raises ``sealing.invalid``: the two failures are
deliberately indistinguishable beyond that.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sanctum.protocol.errors import SealingError

__all__ = [
    "HPKE_P256_SUITE",
    "RSA_OAEP_SUITE",
    "SealedBox",
    "SuiteName",
    "hpke_info",
    "open_sealed",
    "seal",
    "sealing_info",
    "secret_aad",
]

SuiteName = Literal["hpke-p256-sha256-aes256gcm", "rsa-oaep-sha256-aes256gcm"]

#: HPKE base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
HPKE_P256_SUITE: Final[SuiteName] = "hpke-p256-sha256-aes256gcm"

#: RSA-OAEP-SHA256 key transport with AES-256-GCM, for RSA workload keys.
RSA_OAEP_SUITE: Final[SuiteName] = "rsa-oaep-sha256-aes256gcm"

_INFO_LABEL: Final = b"sanctum/seal/v1"
_SEAL_CONTEXT_LABEL: Final = b"sanctum/attest/v1"
_SECRET_AAD_LABEL: Final = b"sanctum/secret/v1"
_P256_ENC_SIZE: Final = 65
_GCM_TAG_SIZE: Final = 16
_CONTENT_KEY_SIZE: Final = 32
_MIN_RSA_BITS: Final = 2048
_ZERO_NONCE: Final = bytes(12)

_HPKE: Final = hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


@dataclass(frozen=True, slots=True)
class SealedBox:
    """A secret sealed to one workload key.

    Attributes:
        suite: Which construction sealed it (see the module docstring).
        enc: The encapsulated key: the HPKE ephemeral public key (65 bytes) or the RSA-OAEP
            encrypted content key (the RSA modulus size).
        ciphertext: The AEAD ciphertext with its 16-byte tag.
    """

    suite: SuiteName
    enc: bytes
    ciphertext: bytes


def _lv(value: bytes) -> bytes:
    """Return ``value`` prefixed with its length as a 4-byte big-endian integer."""
    return struct.pack(">I", len(value)) + value


def hpke_info(info: bytes, aad: bytes) -> bytes:
    """Return the context bytes that bind ``info`` and ``aad`` into a sealed box.

    The encoding is ``"sanctum/seal/v1" || len(info) || info || len(aad) || aad`` with 4-byte
    big-endian lengths, so no two different (info, aad) pairs give the same bytes.

    Args:
        info: The attestation context (see :func:`sealing_info`).
        aad: The per-secret associated data (see :func:`secret_aad`).

    Returns:
        The bytes passed to HPKE as ``info`` (or used as OAEP label and GCM associated data).
    """
    return _INFO_LABEL + _lv(info) + _lv(aad)


def sealing_info(*, manager_id: str, app: str, build: str, nonce: bytes) -> bytes:
    """Return the canonical ``info`` binding a sealed secret to one attestation.

    A box made for one manager, app, build and challenge does not open under any other, so a
    box captured from one attestation is useless in another.

    Args:
        manager_id: The identifier of the issuing manager (its token issuer).
        app: The app name or id the workload attested as.
        build: The id of the allowlisted build that matched the quote.
        nonce: The challenge nonce of this attestation (raw bytes).

    Returns:
        Length-prefixed, labelled bytes; identical on manager and launcher.
    """
    return (
        _SEAL_CONTEXT_LABEL
        + _lv(manager_id.encode())
        + _lv(app.encode())
        + _lv(build.encode())
        + _lv(nonce)
    )


def secret_aad(*, name: str, delivery: str, target: str) -> bytes:
    """Return the associated data that binds a secret to its name and destination.

    Binding the destination means a party that can reorder the response cannot make the
    launcher write one secret where another was meant to go.

    Args:
        name: The secret's name in the app configuration.
        delivery: ``file`` or ``env``.
        target: The file path or environment variable name.

    Returns:
        Length-prefixed, labelled bytes.
    """
    return _SECRET_AAD_LABEL + _lv(name.encode()) + _lv(delivery.encode()) + _lv(target.encode())


def _unsupported(key: object) -> SealingError:
    """Return the error for a key that no suite seals to."""
    return SealingError(
        f"cannot seal to a {type(key).__name__} key; supported: EC P-256, RSA >= 2048 bits",
        code="sealing.unsupported_key",
        hint="generate the workload key as EC P-256 (default) or RSA 2048/3072",
    )


def _is_p256(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bool:
    """Return whether ``key`` is on NIST P-256."""
    return isinstance(key.curve, ec.SECP256R1)


def _oaep(label: bytes) -> padding.OAEP:
    """Return RSA-OAEP padding with SHA-256, MGF1-SHA-256 and ``label``."""
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
    )


def seal(
    recipient_public_key: PublicKeyTypes,
    plaintext: bytes,
    *,
    info: bytes,
    aad: bytes,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> SealedBox:
    """Seal ``plaintext`` so that only the holder of the recipient's private key can open it.

    Args:
        recipient_public_key: The attested workload key (the CSR's key).
        plaintext: The secret value.
        info: The attestation context, normally :func:`sealing_info`.
        aad: Per-secret associated data, normally :func:`secret_aad`.
        random_bytes: Source of the RSA suite's content key (tests inject a fixed source; the
            HPKE suite always uses the library's own ephemeral key generation).

    Returns:
        The sealed box.

    Raises:
        SealingError: The key type is not supported (code ``sealing.unsupported_key``).
        ValueError: ``random_bytes`` returned the wrong number of bytes (a programming error).
    """
    context = hpke_info(info, aad)
    key = recipient_public_key
    if isinstance(key, ec.EllipticCurvePublicKey) and _is_p256(key):
        sealed = _HPKE.encrypt(plaintext, key, info=context)
        return SealedBox(HPKE_P256_SUITE, sealed[:_P256_ENC_SIZE], sealed[_P256_ENC_SIZE:])
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS:
        content_key = random_bytes(_CONTENT_KEY_SIZE)
        if len(content_key) != _CONTENT_KEY_SIZE:
            msg = f"random source returned {len(content_key)} bytes, expected {_CONTENT_KEY_SIZE}"
            raise ValueError(msg)
        enc = key.encrypt(content_key, _oaep(context))
        ciphertext = AESGCM(content_key).encrypt(_ZERO_NONCE, plaintext, context)
        return SealedBox(RSA_OAEP_SUITE, enc, ciphertext)
    raise _unsupported(key)


def _wrong_suite(box: SealedBox, expected: SuiteName) -> SealingError:
    """Return the error for a box whose suite does not fit the opening key."""
    return SealingError(
        f"the box was sealed with {box.suite}, but this key opens {expected} boxes only"
    )


def open_sealed(private_key: PrivateKeyTypes, box: SealedBox, *, info: bytes, aad: bytes) -> bytes:
    """Open ``box`` with the workload's private key, checking the context.

    Args:
        private_key: The workload's private key (never leaves the enclave).
        box: The sealed box received from the manager.
        info: The same attestation context the manager used.
        aad: The same per-secret associated data the manager used.

    Returns:
        The plaintext secret.

    Raises:
        SealingError: The box does not open with this key and context, was tampered with, or
            its suite does not match the key (code ``sealing.invalid``); or the key type is not
            supported (code ``sealing.unsupported_key``).
    """
    context = hpke_info(info, aad)
    if len(box.ciphertext) < _GCM_TAG_SIZE:
        raise SealingError("the sealed box is truncated: shorter than its authentication tag")
    try:
        if isinstance(private_key, ec.EllipticCurvePrivateKey) and _is_p256(private_key):
            if box.suite != HPKE_P256_SUITE:
                raise _wrong_suite(box, HPKE_P256_SUITE)
            if len(box.enc) != _P256_ENC_SIZE:
                raise SealingError(
                    f"the encapsulated key is {len(box.enc)} bytes; expected {_P256_ENC_SIZE}"
                )
            return _HPKE.decrypt(box.enc + box.ciphertext, private_key, info=context)
        if isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= _MIN_RSA_BITS:
            if box.suite != RSA_OAEP_SUITE:
                raise _wrong_suite(box, RSA_OAEP_SUITE)
            content_key = private_key.decrypt(box.enc, _oaep(context))
            if len(content_key) != _CONTENT_KEY_SIZE:
                raise SealingError("the sealed content key has the wrong size")
            return AESGCM(content_key).decrypt(_ZERO_NONCE, box.ciphertext, context)
    except (InvalidTag, ValueError) as exc:
        # Both a failed AEAD tag and an undecodable ephemeral key or OAEP block end here.
        raise SealingError(
            "the sealed box does not open: wrong key, wrong context, or it was altered"
        ) from exc
    raise _unsupported(private_key)
