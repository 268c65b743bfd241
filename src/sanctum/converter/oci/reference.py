"""Image references: where an image lives, parsed from the text users type.

Three transports are understood, spelled as skopeo spells them:

- ``docker://host[:port]/repo[:tag|@digest]`` (a registry; ``docker://busybox`` means Docker Hub's
  ``library/busybox``, as with ``docker pull``). A name without any transport prefix is read as a
  registry reference too, because that is how Data Shield's ``inputImageName`` is written.
- ``oci:PATH[:TAG]`` (an OCI image layout directory).
- ``oci-archive:FILE[:TAG]`` (a tarball of an OCI image layout, as ``skopeo copy`` and
  ``podman save --format oci-archive`` write it).
- ``docker-archive:FILE[:NAME:TAG]`` (a ``docker save`` tarball, also gzip-compressed as a
  whole: ``docker save | gzip``; written compressed when FILE ends in ``.gz`` or ``.tgz``).

As in skopeo, the path of ``oci:``, ``oci-archive:`` and ``docker-archive:`` ends at the first
colon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sanctum.errors import UsageError

__all__ = [
    "DOCKER_HUB",
    "ArchiveReference",
    "ImageReference",
    "LayoutReference",
    "OciArchiveReference",
    "RegistryReference",
    "parse_image_reference",
]

#: The registry name Docker uses for Docker Hub.
DOCKER_HUB: Final = "docker.io"
_DOCKER_HUB_API: Final = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE: Final = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE: Final = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_HOST_RE: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)


@dataclass(frozen=True, slots=True)
class RegistryReference:
    """An image in a registry.

    Attributes:
        registry: Registry host with optional port, as written (``docker.io`` for Docker Hub).
        repository: Repository path, for example ``library/busybox``.
        tag: Tag, or None when the image is named by digest only.
        digest: Manifest digest (``sha256:...``), or None.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def transport(self) -> str:
        """Return ``docker``, the transport name used by skopeo."""
        return "docker"

    @property
    def api_host(self) -> str:
        """Return the host (and port) the distribution API is served on."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """Return the digest if there is one, else the tag (``latest`` if neither is set)."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> RegistryReference:
        """Return the same repository named by ``tag`` (and no digest)."""
        return RegistryReference(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        """Return the ``docker://`` form."""
        text = f"docker://{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True, slots=True)
class LayoutReference:
    """An image in an OCI image layout directory.

    Attributes:
        path: The layout directory.
        tag: Value of the ``org.opencontainers.image.ref.name`` annotation, or None.
    """

    path: Path
    tag: str | None = None

    @property
    def transport(self) -> str:
        """Return ``oci``, the transport name used by skopeo."""
        return "oci"

    def __str__(self) -> str:
        """Return the ``oci:`` form."""
        return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")


@dataclass(frozen=True, slots=True)
class OciArchiveReference:
    """An image in a tarball of an OCI image layout (skopeo's and podman's ``oci-archive``).

    Attributes:
        path: The tarball.
        tag: Value of the ``org.opencontainers.image.ref.name`` annotation, or None.
    """

    path: Path
    tag: str | None = None

    @property
    def transport(self) -> str:
        """Return ``oci-archive``, the transport name used by skopeo."""
        return "oci-archive"

    def __str__(self) -> str:
        """Return the ``oci-archive:`` form."""
        return f"oci-archive:{self.path}" + (f":{self.tag}" if self.tag else "")


@dataclass(frozen=True, slots=True)
class ArchiveReference:
    """An image in a docker-archive tarball (the format of ``docker save``).

    Attributes:
        path: The tarball.
        tag: The ``RepoTags`` name (``name:tag``) of the image in the archive, or None.
    """

    path: Path
    tag: str | None = None

    @property
    def transport(self) -> str:
        """Return ``docker-archive``, the transport name used by skopeo."""
        return "docker-archive"

    def __str__(self) -> str:
        """Return the ``docker-archive:`` form."""
        return f"docker-archive:{self.path}" + (f":{self.tag}" if self.tag else "")


ImageReference = RegistryReference | LayoutReference | OciArchiveReference | ArchiveReference


def _bad(text: str, why: str) -> UsageError:
    return UsageError(
        f"{text!r} is not an image reference: {why}",
        code="image.bad_reference",
        hint="use docker://HOST[:PORT]/REPO[:TAG|@DIGEST], oci:PATH[:TAG], "
        "oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]",
    )


def _parse_registry(text: str, name: str) -> RegistryReference:
    digest: str | None = None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise _bad(text, f"{digest!r} is not a sha256 or sha512 digest")
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise _bad(text, f"{tag!r} is not a valid tag")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, repository = first, rest
        if not _HOST_RE.fullmatch(registry):
            raise _bad(text, f"{registry!r} is not a registry host")
    else:
        registry, repository = DOCKER_HUB, name
        if "/" not in repository:
            repository = f"library/{repository}"
    if not _REPOSITORY_RE.fullmatch(repository):
        raise _bad(text, f"{repository!r} is not a valid repository name (lowercase path)")
    if tag is None and digest is None:
        tag = "latest"
    return RegistryReference(registry=registry, repository=repository, tag=tag, digest=digest)


def parse_image_reference(text: str) -> ImageReference:
    """Parse ``text`` into a registry, OCI layout, oci-archive or docker-archive reference.

    Args:
        text: ``docker://...``, ``oci:PATH[:TAG]``, ``oci-archive:FILE[:TAG]``,
            ``docker-archive:FILE[:NAME:TAG]``, or a bare registry name such as
            ``registry.example.com/app:1.0``.

    Returns:
        The parsed reference.

    Raises:
        sanctum.errors.UsageError: ``text`` is not a well-formed reference
            (code ``image.bad_reference``).
    """
    if not text or text != text.strip():
        raise _bad(text, "it is empty or has surrounding spaces")
    if text.startswith("docker://"):
        return _parse_registry(text, text.removeprefix("docker://"))
    kinds: tuple[tuple[str, type[LayoutReference | OciArchiveReference | ArchiveReference]], ...]
    kinds = (
        ("oci:", LayoutReference),
        ("oci-archive:", OciArchiveReference),
        ("docker-archive:", ArchiveReference),
    )
    for prefix, kind in kinds:
        if text.startswith(prefix):
            path, _, tag = text.removeprefix(prefix).partition(":")
            if not path:
                raise _bad(text, "the path is empty")
            return kind(Path(path), tag or None)
    if "://" in text:
        raise _bad(text, "unknown transport")
    return _parse_registry(text, text)
