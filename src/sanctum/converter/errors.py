"""Errors of the image converter, grouped by whose fault the failure is.

- :class:`ImageError` (an :class:`~sanctum.errors.EvidenceError`): the image itself is bad, absent
  or unsupported (a blob whose bytes do not match its digest, a malformed manifest, no linux/amd64
  variant). Retrying the same image gives the same answer.
- :class:`RegistryUnavailable` (an :class:`~sanctum.errors.UnavailableError`): the registry could
  not be reached or answered with a server error; retry later.
- :class:`RegistryAuthError` (an :class:`~sanctum.errors.AuthenticationError`): the registry
  refused the credentials (or there were none and it wants some).

Bad user input is a plain :class:`~sanctum.errors.UsageError`: ``image.bad_reference`` (an
unparseable image reference) and ``registry.bad_docker_config`` (an unreadable config.json).
"""

from __future__ import annotations

from sanctum.errors import AuthenticationError, EvidenceError, UnavailableError

__all__ = ["ImageError", "RegistryAuthError", "RegistryUnavailable"]


class ImageError(EvidenceError):
    """The image is absent, malformed, unsupported, or its bytes do not match their digests.

    Codes: ``image.not_found``, ``image.digest_mismatch`` (also for a wrong size),
    ``image.unsupported_media_type``, ``image.malformed``, ``image.no_amd64`` (and
    ``image.no_platform`` for other platforms), ``image.incomplete`` (a manifest references
    blobs the sink lacks), ``image.not_a_layout`` (refusing to write into a foreign directory).
    """

    default_code = "image.malformed"


class RegistryUnavailable(UnavailableError):  # noqa: N818 (the name is part of the public API)
    """The registry could not be reached or failed to answer: retry later.

    Codes: ``registry.unreachable``, ``registry.http_error``, ``registry.tls_error`` (the
    registry's certificate does not verify; Sanctum never downgrades to plain HTTP then),
    ``registry.upload_lost`` (the registry lost an upload session whose content cannot be read
    again; the conversion re-copies the layer from its source).
    """

    default_code = "registry.unreachable"


class RegistryAuthError(AuthenticationError):
    """The registry refused the credentials, or needs credentials that were not given.

    Codes: ``registry.auth_failed``.
    """

    default_code = "registry.auth_failed"
