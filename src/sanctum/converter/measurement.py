r"""Canonical JSON and the simulated enclave measurement.

An enclave manifest is measured by hashing its *canonical encoding*, so two converters that build
the same manifest get the same ``mrenclave`` byte for byte, in any language. The encoding is:

- JSON (RFC 8259) encoded as UTF-8, with no insignificant whitespace (``","`` and ``":"``);
- object keys sorted by their Unicode code points, no duplicate keys;
- strings in Unicode NFC; every character written as itself except ``"`` → ``\"``,
  ``\`` → ``\\``, the short escapes ``\b \f \n \r \t``, and the other characters
  U+0000-U+001F as ``\u00xx`` (lowercase hex);
- only ``null``, ``true``/``false``, integers in the signed 64-bit range, strings, arrays and
  objects: **no floats** (their text forms are not portable).

On the simulated target ``mrenclave = SHA-256(canonical manifest)``. On SGX hardware the real
MRENCLAVE is computed by ``gramine-sgx-sign`` from the enclave's pages, and the canonical manifest
is one of the trusted files it covers.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Final

from sanctum.converter.manifest_errors import ManifestError

__all__ = ["canonical_json", "measure_canonical"]

_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1


def _check(value: object, where: str) -> None:
    """Check that ``value`` can be encoded canonically.

    Raises:
        ManifestError: A float, an out-of-range integer, a non-NFC string, a non-string key or an
            unsupported type (code ``manifest.not_canonical``).
    """
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ManifestError(
                f"{where}: integer {value} is outside the signed 64-bit range",
                code="manifest.not_canonical",
            )
        return
    if isinstance(value, str):
        if unicodedata.normalize("NFC", value) != value:
            raise ManifestError(
                f"{where}: string {value!r} is not in Unicode NFC", code="manifest.not_canonical"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ManifestError(
                f"{where}: string {value!r} is not valid Unicode (lone surrogate)",
                code="manifest.not_canonical",
            ) from error
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ManifestError(
                    f"{where}: object key {key!r} is not a string", code="manifest.not_canonical"
                )
            _check(key, f"{where}.{key}")
            _check(item, f"{where}.{key}")
        return
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]")
        return
    raise ManifestError(
        f"{where}: {type(value).__name__} values have no canonical JSON form",
        code="manifest.not_canonical",
    )


def canonical_json(value: object) -> bytes:
    """Return the canonical encoding of ``value`` (see the module docstring).

    Raises:
        ManifestError: ``value`` holds something with no canonical form (code
            ``manifest.not_canonical``).
    """
    _check(value, "$")
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def measure_canonical(canonical: bytes) -> bytes:
    """Return the simulated ``mrenclave`` of a canonical manifest: its SHA-256."""
    return hashlib.sha256(canonical).digest()
