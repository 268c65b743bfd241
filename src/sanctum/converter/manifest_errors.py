"""Errors of the build side of the converter: SIGSTRUCTs, enclave manifests, keys and Gramine.

Image I/O errors live in :mod:`sanctum.converter.errors` (owned by the image I/O part); this
module holds the errors of what the converter *produces*, split by whose fault the failure is:

- :class:`SigstructError` and :class:`ManifestError` (:class:`~sanctum.errors.EvidenceError`): a
  SIGSTRUCT or an enclave manifest is malformed, badly signed or does not match; refuse it.
- :class:`SigningKeyError` (:class:`~sanctum.errors.UsageError`): the signing key given cannot sign
  an SGX enclave (wrong size or exponent, unreadable PEM, the debug key without ``debug``).
- :class:`BuildOptionError` (:class:`~sanctum.errors.UsageError`): a conversion option is invalid.
- :class:`GramineToolError` (:class:`~sanctum.errors.UnavailableError`): a Gramine tool on ``PATH``
  failed to run; the input may be fine.
"""

from __future__ import annotations

from sanctum.errors import EvidenceError, UnavailableError, UsageError

__all__ = [
    "BuildOptionError",
    "GramineToolError",
    "ManifestError",
    "SigningKeyError",
    "SigstructError",
]


class SigstructError(EvidenceError):
    """A SIGSTRUCT is malformed, or its RSA signature or q1/q2 helpers do not verify.

    Codes: ``sigstruct.size``, ``sigstruct.header``, ``sigstruct.exponent``,
    ``sigstruct.modulus``, ``sigstruct.reserved_nonzero``, ``sigstruct.signature_invalid``,
    ``sigstruct.q1_invalid``, ``sigstruct.q2_invalid``, ``sigstruct.field_range``.
    """

    default_code = "sigstruct.malformed"


class ManifestError(EvidenceError):
    """An enclave manifest is malformed, not canonical, or does not match its SIGSTRUCT.

    Codes: ``manifest.malformed``, ``manifest.schema``, ``manifest.not_canonical``,
    ``manifest.measurement_mismatch``, ``manifest.signer_mismatch``,
    ``manifest.identity_mismatch``, ``manifest.trusted_file_mismatch``.
    """

    default_code = "manifest.malformed"


class SigningKeyError(UsageError):
    """The signing key cannot be used to sign an SGX enclave.

    Codes: ``signing_key.unreadable``, ``signing_key.not_rsa``, ``signing_key.size``,
    ``signing_key.exponent``, ``signing_key.debug_key_requires_debug``.
    """

    default_code = "signing_key.invalid"


class BuildOptionError(UsageError):
    """A conversion option is invalid (a size, a path, an environment variable, an ID range).

    Codes: ``build.option_invalid``, ``build.path_invalid``, ``build.env_invalid``,
    ``build.size_invalid``.
    """

    default_code = "build.option_invalid"


class GramineToolError(UnavailableError):
    """``gramine-manifest`` or ``gramine-sgx-sign`` failed or produced no usable output.

    Codes: ``gramine.tool_failed``, ``gramine.sig_missing``.
    """

    default_code = "gramine.tool_failed"
