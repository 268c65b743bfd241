"""The OCI image model: media types, descriptors, manifests, indexes and image configs.

Everything here is parsed strictly from bytes and keeps those bytes: a manifest's digest is the
digest of the exact bytes that were read, so a manifest is never re-serialised once read (a copy
writes ``Manifest.raw`` unchanged and the digest stays identical). Both the OCI image spec and
Docker's image manifest schema 2 are understood; Docker schema 1 is refused.

This module does no I/O: stores in :mod:`sanctum.converter.oci` fetch bytes and hand them here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from sanctum.converter.errors import ImageError

__all__ = [
    "ALL_MANIFEST_MEDIA_TYPES",
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER_GZIP",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_TAR",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "REF_NAME_ANNOTATION",
    "Compression",
    "Descriptor",
    "HistoryEntry",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "check_digest",
    "digest_of",
    "layer_compression",
    "new_hasher",
    "parse_manifest_or_index",
]

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
#: Uncompressed Docker layer, as presented by docker-archive readers (skopeo uses it too).
DOCKER_LAYER_TAR: Final = "application/vnd.docker.image.rootfs.diff.tar"
_DOCKER_SCHEMA1: Final = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
#: Annotation naming a tag in an OCI layout's ``index.json``.
REF_NAME_ANNOTATION: Final = "org.opencontainers.image.ref.name"

MANIFEST_MEDIA_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_MEDIA_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
ALL_MANIFEST_MEDIA_TYPES: Final = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
_CONFIG_MEDIA_TYPES: Final = frozenset({OCI_CONFIG, DOCKER_CONFIG})

Compression = Literal["none", "gzip", "zstd"]

_LAYER_COMPRESSION: Final[Mapping[str, Compression]] = MappingProxyType(
    {
        OCI_LAYER_TAR: "none",
        OCI_LAYER_GZIP: "gzip",
        OCI_LAYER_ZSTD: "zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
        DOCKER_LAYER_GZIP: "gzip",
        DOCKER_FOREIGN_LAYER_GZIP: "gzip",
        DOCKER_LAYER_TAR: "none",
    }
)

_DIGEST_RE: Final = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")
_MEDIA_TYPE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9!#$&^_.+-]+")


def _malformed(what: str, why: str) -> ImageError:
    return ImageError(f"{what} is malformed: {why}", code="image.malformed")


def check_digest(value: object, what: str = "digest") -> str:
    """Return ``value`` if it is a ``sha256:`` or ``sha512:`` digest in canonical form.

    Raises:
        ImageError: ``value`` is not such a digest (code ``image.malformed``).
    """
    if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
        raise _malformed(what, f"{value!r} is not a lowercase sha256/sha512 digest")
    return value


def new_hasher(digest: str) -> hashlib._Hash:
    """Return a fresh hash object for the algorithm of ``digest``.

    Raises:
        ImageError: ``digest`` is not a supported digest (code ``image.malformed``).
    """
    algorithm = check_digest(digest).partition(":")[0]
    return hashlib.new(algorithm)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """Return the ``algorithm:hex`` digest of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def layer_compression(media_type: str) -> Compression:
    """Return how a layer of ``media_type`` is compressed.

    Raises:
        ImageError: The media type is not a layer type Sanctum reads
            (code ``image.unsupported_media_type``).
    """
    try:
        return _LAYER_COMPRESSION[media_type]
    except KeyError:
        raise ImageError(
            f"layer media type {media_type!r} is not supported",
            code="image.unsupported_media_type",
            hint="Sanctum reads OCI and Docker schema 2 tar layers (uncompressed, gzip, zstd)",
        ) from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _malformed("JSON document", f"key {key!r} appears twice")
        out[key] = value
    return out


def _load_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _malformed(what, f"not UTF-8 JSON ({exc})") from None
    except RecursionError:
        raise _malformed(what, "nested too deeply") from None
    if not isinstance(doc, dict):
        raise _malformed(what, "the top level is not a JSON object")
    return doc


def _opt_str(doc: Mapping[str, Any], key: str, what: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _malformed(what, f"{key!r} is not a string")
    return value


def _str_map(value: object, what: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _malformed(what, "expected an object of strings")
    return MappingProxyType(dict(value))


def _str_list(value: object, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _malformed(what, "expected a list of strings")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Platform:
    """The platform an index entry is built for.

    Attributes:
        os: Operating system, for example ``linux``.
        architecture: CPU architecture in Go's spelling, for example ``amd64``.
        variant: CPU variant (``v8`` for arm64), or None.
    """

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def from_json(cls, doc: object) -> Platform:
        """Parse a ``platform`` object.

        Raises:
            ImageError: The object is malformed (code ``image.malformed``).
        """
        if not isinstance(doc, dict):
            raise _malformed("platform", "not an object")
        os_name, arch = doc.get("os"), doc.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise _malformed("platform", "'os' and 'architecture' must be strings")
        return cls(os_name, arch, _opt_str(doc, "variant", "platform"))


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: a typed, sized, digested pointer to a blob.

    Attributes:
        media_type: Media type of the referenced content.
        digest: Digest of the exact bytes (``sha256:...``).
        size: Size in bytes.
        annotations: Arbitrary string annotations.
        platform: Platform of an index entry, or None.
        urls: Alternative download URLs (foreign layers), usually empty.
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, doc: object, what: str = "descriptor") -> Descriptor:
        """Parse a descriptor object.

        Raises:
            ImageError: The descriptor is malformed (code ``image.malformed``).
        """
        if not isinstance(doc, dict):
            raise _malformed(what, "not an object")
        media_type = doc.get("mediaType")
        if not isinstance(media_type, str) or not _MEDIA_TYPE_RE.fullmatch(media_type):
            raise _malformed(what, f"mediaType {media_type!r} is not a media type")
        size = doc.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _malformed(what, f"size {size!r} is not a non-negative integer")
        platform = doc.get("platform")
        return cls(
            media_type=media_type,
            digest=check_digest(doc.get("digest"), f"{what} digest"),
            size=size,
            annotations=_str_map(doc.get("annotations"), f"{what} annotations"),
            platform=None if platform is None else Platform.from_json(platform),
            urls=_str_list(doc.get("urls"), f"{what} urls") or (),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object form (key order as in the OCI spec's examples)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            plat = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                plat["variant"] = self.platform.variant
            out["platform"] = plat
        return out


def _detect_media_type(doc: Mapping[str, Any], hint: str | None, what: str) -> str:
    schema = doc.get("schemaVersion")
    body_type = _opt_str(doc, "mediaType", what)
    if schema == 1 or body_type in _DOCKER_SCHEMA1 or hint in _DOCKER_SCHEMA1:
        raise ImageError(
            "Docker image manifest schema 1 is not supported",
            code="image.unsupported_media_type",
            hint="re-push the image with a current client (Docker schema 2 or OCI)",
        )
    if schema != 2 or isinstance(schema, bool):
        raise _malformed(what, f"schemaVersion is {schema!r}, expected 2")
    if body_type is not None:
        return body_type
    if hint in ALL_MANIFEST_MEDIA_TYPES:
        return hint
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc or "layers" in doc:
        return OCI_MANIFEST
    raise _malformed(what, "cannot tell whether it is a manifest or an index")


def _unsupported(media_type: str, expected: Iterable[str]) -> ImageError:
    return ImageError(
        f"media type {media_type!r} is not supported here (expected one of {sorted(expected)})",
        code="image.unsupported_media_type",
    )


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2), with the exact bytes it was parsed from.

    Attributes:
        raw: The exact bytes; ``digest`` is their digest. Write these, never a re-serialisation.
        media_type: ``OCI_MANIFEST`` or ``DOCKER_MANIFEST``.
        digest: ``sha256:`` digest of ``raw``.
        config: Descriptor of the image config blob.
        layers: Descriptors of the layer blobs, base layer first.
        annotations: Manifest annotations (OCI only).
    """

    raw: bytes
    media_type: str
    digest: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    @property
    def size(self) -> int:
        """Return the size of the manifest in bytes."""
        return len(self.raw)

    @property
    def descriptor(self) -> Descriptor:
        """Return a descriptor pointing to this manifest."""
        return Descriptor(self.media_type, self.digest, len(self.raw))

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None) -> Manifest:
        """Parse manifest bytes; ``media_type`` is the transport's hint (Content-Type), if any.

        Raises:
            ImageError: The bytes are not a schema 2 / OCI image manifest (codes
                ``image.malformed``, ``image.unsupported_media_type``).
        """
        doc = _load_object(raw, "image manifest")
        kind = _detect_media_type(doc, media_type, "image manifest")
        if kind not in MANIFEST_MEDIA_TYPES:
            raise _unsupported(kind, MANIFEST_MEDIA_TYPES)
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise _malformed("image manifest", "'layers' is not a list")
        config = Descriptor.from_json(doc.get("config"), "manifest config")
        if config.media_type not in _CONFIG_MEDIA_TYPES:
            raise _unsupported(config.media_type, _CONFIG_MEDIA_TYPES)
        return cls(
            raw=raw,
            media_type=kind,
            digest=digest_of(raw),
            config=config,
            layers=tuple(Descriptor.from_json(d, f"layer {i}") for i, d in enumerate(layers)),
            annotations=_str_map(doc.get("annotations"), "manifest annotations"),
        )

    @classmethod
    def build(
        cls,
        config: Descriptor,
        layers: Sequence[Descriptor],
        *,
        media_type: str = OCI_MANIFEST,
        annotations: Mapping[str, str] | None = None,
    ) -> Manifest:
        """Serialise a new manifest deterministically (compact JSON, fixed key order) and parse it.

        Raises:
            ImageError: ``media_type`` is not a manifest media type, or a descriptor is invalid.
        """
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        doc["config"] = config.to_json()
        doc["layers"] = [layer.to_json() for layer in layers]
        if annotations:
            doc["annotations"] = dict(sorted(annotations.items()))
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return cls.parse(raw, media_type)


@dataclass(frozen=True, slots=True)
class Index:
    """An image index (OCI) or manifest list (Docker), with its exact bytes.

    Attributes:
        raw: The exact bytes.
        media_type: ``OCI_INDEX`` or ``DOCKER_MANIFEST_LIST``.
        digest: ``sha256:`` digest of ``raw``.
        manifests: The entries, in document order.
        annotations: Index annotations.
    """

    raw: bytes
    media_type: str
    digest: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None) -> Index:
        """Parse index bytes.

        Raises:
            ImageError: The bytes are not an image index (``image.malformed``,
                ``image.unsupported_media_type``).
        """
        doc = _load_object(raw, "image index")
        kind = _detect_media_type(doc, media_type, "image index")
        if kind not in INDEX_MEDIA_TYPES:
            raise _unsupported(kind, INDEX_MEDIA_TYPES)
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise _malformed("image index", "'manifests' is not a list")
        return cls(
            raw=raw,
            media_type=kind,
            digest=digest_of(raw),
            manifests=tuple(
                Descriptor.from_json(d, f"index entry {i}") for i, d in enumerate(entries)
            ),
            annotations=_str_map(doc.get("annotations"), "index annotations"),
        )

    def select(self, os: str = "linux", architecture: str = "amd64") -> Descriptor:
        """Return the first image manifest entry for ``os``/``architecture``.

        Raises:
            ImageError: No entry matches (code ``image.no_amd64`` for linux/amd64, else
                ``image.no_platform``).
        """
        for entry in self.manifests:
            plat = entry.platform
            if (
                entry.media_type in MANIFEST_MEDIA_TYPES
                and plat is not None
                and (plat.os, plat.architecture) == (os, architecture)
            ):
                return entry
        found = sorted(
            f"{d.platform.os}/{d.platform.architecture}" for d in self.manifests if d.platform
        )
        code = "image.no_amd64" if (os, architecture) == ("linux", "amd64") else "image.no_platform"
        raise ImageError(
            f"the image index has no {os}/{architecture} image "
            f"(it has: {', '.join(found) or 'none'})",
            code=code,
        )


def parse_manifest_or_index(raw: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse bytes that may be either an image manifest or an index.

    Raises:
        ImageError: The bytes are neither (``image.malformed``, ``image.unsupported_media_type``).
    """
    doc = _load_object(raw, "manifest")
    kind = _detect_media_type(doc, media_type, "manifest")
    if kind in INDEX_MEDIA_TYPES:
        return Index.parse(raw, kind)
    if kind in MANIFEST_MEDIA_TYPES:
        return Manifest.parse(raw, kind)
    raise _unsupported(kind, ALL_MANIFEST_MEDIA_TYPES)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step of the image's build history.

    Attributes:
        created: RFC 3339 creation time as written, or None.
        created_by: The command that created the step, or None.
        comment: Free-text comment, or None.
        empty_layer: True when the step produced no layer.
    """

    created: str | None
    created_by: str | None
    comment: str | None
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The image configuration: how to run the image and which layers make it up.

    Attributes:
        raw: The exact config bytes; ``digest`` is their digest.
        digest: ``sha256:`` digest of ``raw``.
        architecture: CPU architecture, for example ``amd64``.
        os: Operating system, for example ``linux``.
        entrypoint: ``Entrypoint`` or None when unset.
        cmd: ``Cmd`` or None when unset.
        env: ``Env`` entries (``KEY=VALUE``) in order.
        workdir: ``WorkingDir`` or None.
        user: ``User`` or None.
        labels: ``Labels``.
        exposed_ports: Keys of ``ExposedPorts`` (``80/tcp``), sorted.
        stop_signal: ``StopSignal`` or None.
        diff_ids: ``rootfs.diff_ids``: digests of the uncompressed layers, base first.
        history: Build history entries.
        created: RFC 3339 creation time as written, or None.
    """

    raw: bytes
    digest: str
    architecture: str
    os: str
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[str, ...]
    workdir: str | None
    user: str | None
    labels: Mapping[str, str]
    exposed_ports: tuple[str, ...]
    stop_signal: str | None
    diff_ids: tuple[str, ...]
    history: tuple[HistoryEntry, ...]
    created: str | None

    @property
    def env_map(self) -> Mapping[str, str]:
        """Return ``env`` as a mapping (a later duplicate key wins, as at run time)."""
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return MappingProxyType(out)

    def to_json(self) -> dict[str, Any]:
        """Return a fresh copy of the parsed JSON document (to derive a new config from)."""
        doc: dict[str, Any] = json.loads(self.raw)
        return doc

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        """Parse image config bytes.

        Raises:
            ImageError: The config is malformed (code ``image.malformed``).
        """
        what = "image config"
        doc = _load_object(raw, what)
        arch, os_name = doc.get("architecture"), doc.get("os")
        if not isinstance(arch, str) or not isinstance(os_name, str):
            raise _malformed(what, "'architecture' and 'os' must be strings")
        run = doc.get("config") or {}
        if not isinstance(run, dict):
            raise _malformed(what, "'config' is not an object")
        rootfs = doc.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise _malformed(what, "'rootfs' must be an object of type 'layers'")
        diff_ids = _str_list(rootfs.get("diff_ids"), "rootfs.diff_ids")
        if diff_ids is None:
            raise _malformed(what, "'rootfs.diff_ids' is missing")
        for diff_id in diff_ids:
            check_digest(diff_id, "rootfs diff_id")
        history_doc = doc.get("history") or []
        if not isinstance(history_doc, list):
            raise _malformed(what, "'history' is not a list")
        history = []
        for item in history_doc:
            if not isinstance(item, dict):
                raise _malformed(what, "a history entry is not an object")
            empty = item.get("empty_layer", False)
            if not isinstance(empty, bool):
                raise _malformed(what, "history 'empty_layer' is not a boolean")
            history.append(
                HistoryEntry(
                    created=_opt_str(item, "created", what),
                    created_by=_opt_str(item, "created_by", what),
                    comment=_opt_str(item, "comment", what),
                    empty_layer=empty,
                )
            )
        ports = run.get("ExposedPorts") or {}
        if not isinstance(ports, dict):
            raise _malformed(what, "'ExposedPorts' is not an object")
        return cls(
            raw=raw,
            digest=digest_of(raw),
            architecture=arch,
            os=os_name,
            entrypoint=_str_list(run.get("Entrypoint"), "Entrypoint"),
            cmd=_str_list(run.get("Cmd"), "Cmd"),
            env=_str_list(run.get("Env"), "Env") or (),
            workdir=_opt_str(run, "WorkingDir", what) or None,
            user=_opt_str(run, "User", what) or None,
            labels=_str_map(run.get("Labels"), "Labels"),
            exposed_ports=tuple(sorted(str(p) for p in ports)),
            stop_signal=_opt_str(run, "StopSignal", what) or None,
            diff_ids=diff_ids,
            history=tuple(history),
            created=_opt_str(doc, "created", what),
        )
