"""Enclave signing keys: generate, load and check RSA-3072 keys with public exponent 3.

SGX accepts only RSA-3072 with exponent 3 for SIGSTRUCTs, and the signer's identity (MRSIGNER) is
the SHA-256 of the modulus, so the key *is* the build's publisher identity. Keys come from:

- a local PEM file (``sanctum builds keygen --out key.pem`` makes one), for offline builds;
- the Enclave Manager (per account, encrypted at rest), once the manager exists;
- the **public debug key** shipped with Sanctum (``data/debug-signing-key.pem``). It lets a
  newcomer convert an image without creating a key, keeps debug builds reproducible, and has a
  well-known MRSIGNER (:func:`is_debug_signing_key` recognises it) so the manager and every
  report can flag it. Its private half is public: it is refused unless the build is a
  ``debug`` build, like the test keys of the Intel SDK and Gramine.
"""

from __future__ import annotations

import importlib.resources
from functools import cache
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sanctum.converter.manifest_errors import SigningKeyError
from sanctum.converter.sigstruct import RSA_EXPONENT, RSA_KEY_BITS, mrsigner_of_modulus

__all__ = [
    "debug_signing_key",
    "generate_signing_key",
    "is_debug_signing_key",
    "load_signing_key",
    "signing_key_mrsigner",
    "signing_key_pem",
]

_DEBUG_KEY_RESOURCE: Final = "data/debug-signing-key.pem"


def generate_signing_key() -> rsa.RSAPrivateKey:
    """Return a fresh RSA-3072 key with public exponent 3 (what SGX requires)."""
    return rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_KEY_BITS)


def signing_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """Return ``key`` as an unencrypted PKCS#8 PEM (write it with mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_signing_key(pem: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """Load a PEM private key and check that SGX can use it.

    Args:
        pem: The PEM text (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``).
        password: The passphrase of an encrypted PEM, if any.

    Returns:
        The RSA-3072, exponent-3 private key.

    Raises:
        SigningKeyError: The PEM cannot be read (``signing_key.unreadable``), is not RSA
            (``signing_key.not_rsa``), or has the wrong size (``signing_key.size``) or exponent
            (``signing_key.exponent``).
    """
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise SigningKeyError(
            f"the signing key is not a readable PEM private key: {error}",
            code="signing_key.unreadable",
        ) from error
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError(
            f"SGX signing keys are RSA; this is a {type(key).__name__}", code="signing_key.not_rsa"
        )
    if key.key_size != RSA_KEY_BITS:
        raise SigningKeyError(
            f"SGX needs an RSA-3072 signing key; this key has {key.key_size} bits",
            code="signing_key.size",
            hint="generate one with: sanctum builds keygen --out key.pem",
        )
    exponent = key.public_key().public_numbers().e
    if exponent != RSA_EXPONENT:
        raise SigningKeyError(
            f"SGX needs the RSA public exponent 3; this key has {exponent}",
            code="signing_key.exponent",
            hint="generate one with: sanctum builds keygen --out key.pem",
        )
    return key


def signing_key_mrsigner(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    """Return the MRSIGNER enclaves signed by ``key`` will have."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return mrsigner_of_modulus(public.public_numbers().n)


@cache
def debug_signing_key() -> rsa.RSAPrivateKey:
    """Return Sanctum's public debug signing key (only for ``debug`` builds).

    Raises:
        SigningKeyError: The packaged key is missing or damaged (an installation problem).
    """
    resource = importlib.resources.files("sanctum.converter").joinpath(_DEBUG_KEY_RESOURCE)
    try:
        pem = resource.read_bytes()
    except OSError as error:
        raise SigningKeyError(
            f"the packaged debug signing key cannot be read: {error}",
            code="signing_key.unreadable",
            hint="reinstall Sanctum",
        ) from error
    # The packaged key is Sanctum's own file: skip the slow RSA consistency check (~0.2 s).
    key = serialization.load_pem_private_key(
        pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError(
            "the packaged debug signing key is not an RSA key",
            code="signing_key.not_rsa",
            hint="reinstall Sanctum",
        )
    return key


def is_debug_signing_key(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bool:
    """Return whether ``key`` is the public debug key (compared by MRSIGNER)."""
    return signing_key_mrsigner(key) == signing_key_mrsigner(debug_signing_key())
