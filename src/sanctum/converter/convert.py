"""The conversion pipeline: an OCI image in, a shielded image out.

:func:`convert` reads the input image through an :class:`~sanctum.converter.oci.ImageSource`,
computes its final filesystem (SHA-256 of every file) while copying the original layers to the
:class:`~sanctum.converter.oci.ImageSink` untouched (by digest, never recompressed, skipped when
the sink already has them), builds and signs the enclave manifest, adds **one** deterministic
runtime layer (``/sanctum/``: launcher, manifest, SIGSTRUCT, Gramine manifest) and writes a new
config whose entrypoint is the launcher. The original entrypoint is recorded in the manifest.

Reproducible: the same input image and options give the same output digest. Nothing depends on
the clock or the host: the new history entry and the SIGSTRUCT date derive from the input image's
``created`` time unless ``now`` is passed explicitly.

Request and response use the field names of Data Shield's converter (``inputImageName``,
``memSize``, ``encryptedDirs``, ..., ``newImage``, ``imageDigest``, ``mrenclave``, ``mrsigner``)
plus Sanctum's own (``target``, ``flags``, ``hostEnvPassthrough``, ``managerUrl``,
``managerCaPin``).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import hashlib
import io
import json
import os
import posixpath
import queue
import re
import shlex
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from sanctum.converter.analysis import FileSystemListing, analyse_image
from sanctum.converter.errors import ImageError, RegistryUnavailable
from sanctum.converter.gramine import (
    MANIFEST_JSON_PATH,
    SIGSTRUCT_PATH,
    GramineOptions,
    GramineTools,
    check_provisioned_paths,
    find_gramine_tools,
    render_gramine_manifest,
    sign_with_gramine,
)
from sanctum.converter.keys import (
    debug_signing_key,
    is_debug_signing_key,
    load_signing_key,
    signing_key_mrsigner,
)
from sanctum.converter.manifest import (
    DEFAULT_LAUNCHER_PATH,
    CaCertificateSpec,
    CertificateSpec,
    EnclaveManifest,
    EnclaveSpec,
    ManagerSpec,
    Target,
    sign_manifest,
    verify_signed_manifest,
)
from sanctum.converter.manifest_errors import BuildOptionError, ManifestError, SigningKeyError
from sanctum.converter.oci.layout import LayoutSource
from sanctum.converter.oci.model import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
)
from sanctum.converter.oci.registry import RegistrySink, RegistrySource, is_transient
from sanctum.converter.oci.store import (
    CHUNK_SIZE,
    BlobReader,
    ImageSink,
    ImageSource,
    ProgressCallback,
    SpooledBlobReader,
)
from sanctum.converter.runtime_layer import (
    LauncherAsset,
    RuntimeFile,
    ShippedLauncher,
    build_runtime_layer,
    launcher_asset_of,
    ship_launcher,
)
from sanctum.converter.sigstruct import Sigstruct

__all__ = [
    "RUNTIME_DIR",
    "AuthConfig",
    "CaCertificateRequest",
    "CertificateRequest",
    "ConvertProgress",
    "ConvertRequest",
    "ConvertResponse",
    "PemSigningKey",
    "check_request",
    "convert",
    "exec_shim_launcher",
    "parse_mem_size",
]

#: Directory of the runtime files in the shielded image.
RUNTIME_DIR: Final = "/sanctum"
GRAMINE_TOML_PATH: Final = "/sanctum/gramine.manifest.toml"
GRAMINE_SGX_PATH: Final = "/sanctum/gramine.manifest.sgx"
_LABEL_PREFIX: Final = "org.sanctum."
_SIZE_RE: Final = re.compile(r"^([0-9]+)([KMG]?)$")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_mem_size(value: str | int) -> int:
    """Return an enclave size in bytes from ``2G``, ``2048M``, ``512K`` or a byte count.

    Raises:
        BuildOptionError: Not a size, or not a power of two (SGX needs one).
    """
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(value.strip().upper())
        if match is None:
            raise BuildOptionError(
                f"memSize {value!r} is not a size such as 2G, 2048M or 512K",
                code="build.size_invalid",
            )
        size = int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)]
    if size <= 0 or size & (size - 1):
        raise BuildOptionError(
            f"memSize {value!r} is not a power of two (SGX enclave sizes must be)",
            code="build.size_invalid",
        )
    return size


# Request and response --------------------------------------------------------------------------


class _Model(BaseModel):
    """Shared settings: camelCase JSON names, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class AuthConfig(_Model):
    """Registry credentials of a request (never logged, never echoed)."""

    username: str
    password: SecretStr


class CertificateRequest(_Model):
    """A certificate the workload obtains from the manager (Data Shield ``certificates``)."""

    issuer: Literal["MANAGER_CA"] = "MANAGER_CA"
    subject: str | None = None
    alt_names: tuple[str, ...] = ()
    key_type: Literal["rsa", "ec"] = "ec"
    key_param: dict[str, int] = Field(default_factory=dict)
    key_path: str
    cert_path: str
    chain_path: str | None = None

    def to_spec(self) -> CertificateSpec:
        """Return the manifest form.

        Raises:
            ManifestError: A path or key parameter is invalid.
        """
        default = 2048 if self.key_type == "rsa" else 256
        size = self.key_param.get("size", self.key_param.get("curveBits", default))
        chain = None if self.chain_path in {None, "none"} else self.chain_path
        return CertificateSpec(
            key_path=self.key_path,
            cert_path=self.cert_path,
            chain_path=chain,
            subject=self.subject,
            alt_names=self.alt_names,
            key_type=self.key_type,
            key_size=size,
            issuer=self.issuer,
        )


class CaCertificateRequest(_Model):
    """Where the manager's CA certificate goes (Data Shield ``caCertificates``)."""

    ca_path: str | None = None
    system: bool = False


class PemSigningKey(_Model):
    """A signing key given as PEM text (RSA-3072, exponent 3)."""

    pem: SecretStr


class ConvertRequest(_Model):
    """What to convert and how (Data Shield converter field names, plus Sanctum's)."""

    input_image_name: str
    output_image_name: str
    input_auth_config: AuthConfig | None = None
    output_auth_config: AuthConfig | None = None
    auth_config: AuthConfig | None = None
    app: str | None = None
    isvprodid: int = Field(default=0, ge=0, le=0xFFFF)
    isvsvn: int = Field(default=0, ge=0, le=0xFFFF)
    mem_size: str | int = "2G"
    threads: int = Field(default=16, ge=1, le=65535)
    debug: bool = False
    entrypoint: tuple[str, ...] | None = None
    entrypoint_args: tuple[str, ...] | None = None
    encrypted_dirs: tuple[str, ...] = ()
    rw_dirs: tuple[str, ...] = ("/tmp",)  # noqa: S108 (an in-enclave tmpfs, not a host path)
    manifest_env: dict[str, str] = Field(default_factory=dict)
    allow_cmdline_args: bool = False
    host_env_passthrough: tuple[str, ...] = ()
    certificates: tuple[CertificateRequest, ...] = ()
    ca_certificates: tuple[CaCertificateRequest, ...] = ()
    signing_key: Literal["default"] | PemSigningKey = "default"
    manager_url: str | None = None
    manager_ca_pin: str | None = None
    target: Literal["auto", "simulated", "gramine-sgx"] = "auto"

    @field_validator("manifest_env", mode="before")
    @classmethod
    def _env_list(cls, value: object) -> object:
        """Accept ``["K=V", ...]`` as well as ``{"K": "V"}``."""
        if isinstance(value, list | tuple):
            out: dict[str, str] = {}
            for item in value:
                if not isinstance(item, str) or "=" not in item:
                    msg = f"manifestEnv entry {item!r} is not KEY=VALUE"
                    raise ValueError(msg)
                key, _, val = item.partition("=")
                out[key] = val
            return out
        return value


class ConvertResponse(_Model):
    """What a conversion produced (Data Shield response fields plus Sanctum's)."""

    new_image: str
    image_digest: str
    image_size: int
    config_digest: str
    runtime_layer_digest: str
    mrenclave: str
    mrsigner: str
    isvprodid: int
    isvsvn: int
    debug: bool
    target: Target
    flags: tuple[str, ...]
    layers_uploaded: int
    layers_skipped: int
    layers_mounted: int
    trusted_files: int


@dataclass(frozen=True, slots=True)
class ConvertProgress:
    """One progress report.

    Attributes:
        event: ``step`` (a phase begins; see ``message``), ``layer-start``, ``layer-advance``
            (bytes read), ``layer-done`` (``outcome`` says what happened to the blob).
        message: Human-readable step description.
        layer: Index of the layer concerned (original layers only), else None.
        layer_count: Number of original layers.
        descriptor: The layer's descriptor, else None.
        done: Bytes of this layer read so far.
        outcome: ``uploaded``, ``skipped`` or ``mounted`` for ``layer-done``.
    """

    event: Literal["step", "layer-start", "layer-advance", "layer-done"]
    message: str = ""
    layer: int | None = None
    layer_count: int = 0
    descriptor: Descriptor | None = None
    done: int = 0
    outcome: str | None = None


ProgressHandler = Callable[[ConvertProgress], None]


# Reading each layer once -----------------------------------------------------------------------


class _TeeReader(BlobReader):
    """A verified blob stream that also writes what it reads to a streamed spool (optional).

    It delegates to the source's own :class:`BlobReader` (which checks size and digest), so the
    bytes are hashed once on the way in; ``on_close`` runs after the inner stream is closed.
    """

    def __init__(
        self,
        inner: BlobReader,
        *,
        spool: _StreamedSpool | _MemoryPipe | None,
        on_close: Callable[[bool], None],
    ) -> None:
        super().__init__(iter(()), inner.descriptor)
        self._inner = inner
        self._spool = spool
        self._after = on_close

    @property
    def verified(self) -> bool:
        """Return whether the inner stream reached a verified EOF."""
        return self._inner.verified

    @property
    def bytes_read(self) -> int:
        """Return how many bytes have passed through the stream."""
        return self._inner.bytes_read

    # Every public read method is overridden (not only ``readinto``), so this class relies on
    # nothing but BlobReader's public interface.

    def _copy(self, data: bytes | memoryview) -> None:
        if data and self._spool is not None:
            self._spool.write(data)

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Read from the verified source stream, copying into the spool file.

        Raises:
            sanctum.converter.errors.ImageError: The data does not match its descriptor.
        """
        count = self._inner.readinto(buffer)
        self._copy(memoryview(buffer)[:count])
        return count

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all remaining when negative), copying into the spool.

        Raises:
            sanctum.converter.errors.ImageError: The data does not match its descriptor.
        """
        data = self._inner.read(size)
        self._copy(data)
        return data

    def readall(self) -> bytes:
        """Read everything that is left (verified at EOF).

        Raises:
            sanctum.converter.errors.ImageError: The data does not match its descriptor.
        """
        return self.read(-1)

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the remaining data; the last chunk only after verification.

        Raises:
            sanctum.converter.errors.ImageError: The data does not match its descriptor.
        """
        for chunk in self._inner.chunks(size):
            self._copy(chunk)
            yield chunk

    def finish(self) -> int:
        """Read (and spool) what is left, and verify; return the total size.

        Raises:
            sanctum.converter.errors.ImageError: The data does not match its descriptor.
        """
        for _ in self.chunks():
            pass
        return self._inner.bytes_read

    def close(self) -> None:
        """Close the inner stream and the spool, then report whether the blob was verified."""
        if self.closed:
            return
        try:
            self._inner.close()
        finally:
            if self._spool is not None:
                self._spool.end(verified=self._inner.verified)
            super().close()
            self._after(self._inner.verified)


class _SpoolAbandonedError(Exception):
    """The analysis stopped writing a spool before a verified EOF (it reports why)."""


class _StreamedSpool:
    """A private spool file that an upload reads while the analysis is still writing it.

    The writer (the analysis' tee) appends the blob's bytes as they stream in; the reader (an
    upload thread) follows behind and sees the end of the file only once the writer ended it
    after a **verified** EOF, so the upload's last bytes (and the commit) wait for the digest
    check. When the writer ends without a verified EOF, the reader raises
    :class:`_SpoolAbandonedError` and the upload is cancelled: nothing is committed.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._out = os.fdopen(fd, "wb")
        self._in = path.open("rb", buffering=0)
        self._changed = threading.Condition()
        self._written = 0
        self._taken = 0
        self._state: Literal["open", "verified", "abandoned"] = "open"

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (writer side) and wake the reader."""
        self._out.write(data)
        self._out.flush()
        with self._changed:
            self._written += len(data)
            self._changed.notify_all()

    def end(self, *, verified: bool) -> None:
        """Close the writer side; ``verified`` says whether the blob matched its digest."""
        try:
            self._out.close()
        finally:
            with self._changed:
                self._state = "verified" if verified else "abandoned"
                self._changed.notify_all()

    def read(self, size: int = -1, /) -> bytes:
        """Read what the writer has written (reader side), waiting for more or for the end.

        Raises:
            _SpoolAbandonedError: The writer ended without a verified EOF.
            ImageError: The file is shorter than what was written (``image.incomplete``).
        """
        with self._changed:
            while self._taken >= self._written and self._state == "open":
                self._changed.wait()
            available = self._written - self._taken
            state = self._state
        if state == "abandoned":
            raise _SpoolAbandonedError
        if available == 0:
            return b""
        data = self._in.read(available if size < 0 else min(size, available))
        if not data:
            raise ImageError(
                f"the spool file {self.path} is shorter than written", code="image.incomplete"
            )
        self._taken += len(data)
        return data

    def release(self) -> None:
        """Close the reader side and delete the file (the writer may still be writing)."""
        self._in.close()
        self.path.unlink(missing_ok=True)


class _MemoryPipe:
    """A bounded in-memory hand-over of a blob from the analysis to an upload thread.

    The same contract as :class:`_StreamedSpool` without the file: the writer (the analysis'
    tee) appends chunks, and blocks while :attr:`limit` bytes wait for the reader; the reader
    (an upload thread) sees the end only after the writer ended the pipe after a **verified**
    EOF, and raises :class:`_SpoolAbandonedError` when it ended otherwise. Chunks are handed
    over by reference, never copied. When the reader gives up (:meth:`release`, after a failed
    upload), later writes are dropped so that the analysis never waits for it.

    The writer can block, so every pipe needs a reader that is, or will be, running: the
    converter uses pipes only when there are at least as many upload threads as analysis
    workers (a layer whose upload has not started yet then always finds a free uploader).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._changed = threading.Condition()
        self._state: Literal["open", "verified", "abandoned"] = "open"
        self._released = False
        # Who waits: notifying only then saves a lock hand-over per chunk on the hot path.
        self._writer_waits = False
        self._reader_waits = False
        # A waiting side is woken once half the limit is held (reader) or free (writer), not
        # for every chunk: each wake-up is a thread switch and a GIL hand-over (ADR 0125).
        self._half = limit // 2

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (writer side), waiting while the pipe is full."""
        chunk = data if isinstance(data, bytes) else bytes(data)
        with self._changed:
            while self._held >= self.limit and not self._released:
                self._writer_waits = True
                self._changed.wait()
                self._writer_waits = False
            if self._released:
                return
            self._chunks.append(chunk)
            self._held += len(chunk)
            if self._reader_waits and self._held >= self._half:
                self._changed.notify_all()

    def end(self, *, verified: bool) -> None:
        """Close the writer side; ``verified`` says whether the blob matched its digest."""
        with self._changed:
            self._state = "verified" if verified else "abandoned"
            self._changed.notify_all()

    def read(self, size: int = -1, /) -> bytes:  # noqa: ARG002 (chunks are returned whole)
        """Return the next chunk (reader side), waiting for one or for the end.

        Raises:
            _SpoolAbandonedError: The writer ended without a verified EOF.
        """
        with self._changed:
            while not self._chunks and self._state == "open":
                self._reader_waits = True
                self._changed.wait()
                self._reader_waits = False
            if self._state == "abandoned":
                raise _SpoolAbandonedError
            if not self._chunks:
                return b""
            chunk = self._chunks.popleft()
            self._held -= len(chunk)
            if self._writer_waits and self._held <= self._half:
                self._changed.notify_all()
            return chunk

    def release(self) -> None:
        """Stop reading: drop what is held and whatever the writer still writes."""
        with self._changed:
            self._released = True
            self._chunks.clear()
            self._held = 0
            self._changed.notify_all()


class _CopyingSource:
    """An ImageSource wrapper that copies every layer to the sink as the analysis reads it.

    Each original layer is read from the source **once**, by the analysis, which reads several
    layers at a time (:attr:`analysis_workers`) when the source allows concurrent reads. A layer
    the sink already has (or can mount from another repository) is only read. Any other layer is
    handed over as the analysis reads it to background threads (three for a registry, like a
    registry client's parallel blob copies; one for local sinks) that upload it at the same
    time, following the analysis: through a bounded in-memory pipe (:class:`_MemoryPipe`) when
    there are as many uploaders as analysis workers, else through a private spool file
    (:class:`_StreamedSpool`); either is read through a :class:`SpooledBlobReader` (the bytes
    were hashed on the way in, so they are not hashed again). An upload ends, and commits, only
    after the analysis verified the blob's digest. At most two layers wait for a free uploader
    (the analysis waits when they do), so memory and disk use stay bounded by a few layers. An
    upload that fails on a transient registry error is repeated from the source (ADR 0073).
    :meth:`finish_uploads` waits for the uploads and re-raises the first error.
    """

    _QUEUE_DEPTH: Final = 2
    _UPLOADERS: Final = 3
    #: Layers analysed at the same time when the source allows it: two keep both cores of a
    #: small machine busy with zlib and hashlib (which release the GIL), a third hides the
    #: network latency of a registry.
    _ANALYSIS_WORKERS: Final = 3
    #: Bytes of one layer held in memory between the analysis and its upload.
    _PIPE_LIMIT: Final = 8 * CHUNK_SIZE

    def __init__(
        self,
        source: ImageSource,
        sink: ImageSink,
        *,
        mount_from: str | None,
        tmpdir: Path,
        progress: ProgressHandler | None,
    ) -> None:
        self._source = source
        self._sink = sink
        self._mount_from = mount_from
        self._tmpdir = tmpdir
        self._progress = progress
        manifest = source.manifest()
        self._layers = {d.digest: i for i, d in enumerate(manifest.layers)}
        self._count = len(manifest.layers)
        self.outcomes: dict[str, str] = {}
        self._queue: queue.Queue[tuple[Descriptor, _StreamedSpool | _MemoryPipe] | None] = (
            queue.Queue(self._QUEUE_DEPTH)
        )
        self._failures: list[BaseException] = []
        self._uploaders: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        # Parallel uploads only to registries (HTTP); local sinks get one writer thread.
        self._uploader_count = self._UPLOADERS if isinstance(sink, RegistrySink) else 1
        # Registries and OCI layouts open every blob independently, so several layers can be
        # read at once; a docker-archive shares one file and is read one layer at a time.
        concurrent_reads = isinstance(source, RegistrySource | LayoutSource)
        #: How many layers :func:`analyse_image` may read at the same time.
        self.analysis_workers = self._ANALYSIS_WORKERS if concurrent_reads else 1
        # A memory pipe needs a reader for every writer that may block (see _MemoryPipe);
        # otherwise layers go through spool files, whose writers never wait.
        self._use_pipes = self._uploader_count >= self.analysis_workers
        # A failed streamed upload is repeated by reading the layer from the source again, which
        # an upload thread may do only when the source allows concurrent reads.
        self._can_recopy = concurrent_reads and isinstance(sink, RegistrySink)
        if concurrent_reads and isinstance(sink, RegistrySink):
            # First requests settle per-client state (loopback TLS probe, auth): make them here,
            # in one thread, before several threads share the clients.
            sink.has_blob(manifest.config.digest)

    def manifest(self) -> Manifest:
        return self._source.manifest()

    def index(self) -> Index | None:
        return self._source.index()

    def config(self) -> ImageConfig:
        return self._source.config()

    def blob_exists(self, digest: str) -> bool:
        return self._source.blob_exists(digest)

    def close(self) -> None:
        """Nothing to release: the wrapped source is closed by its owner."""

    def _emit(self, event: ConvertProgress) -> None:
        if self._progress is not None:
            self._progress(event)

    def _done(self, descriptor: Descriptor, outcome: str) -> None:
        self.outcomes[descriptor.digest] = outcome
        self._emit(ConvertProgress("layer-done", layer=self._layers[descriptor.digest],
                                   layer_count=self._count, descriptor=descriptor,
                                   done=descriptor.size, outcome=outcome))  # fmt: skip

    def _upload_loop(self) -> None:
        """Upload spooled layers one by one (runs in a background thread)."""
        while (item := self._queue.get()) is not None:
            descriptor, spool = item
            try:
                if not self._failures:
                    chunks = iter(functools.partial(spool.read, CHUNK_SIZE), b"")
                    try:
                        self._sink.put_blob(descriptor, SpooledBlobReader(chunks, descriptor))
                    except RegistryUnavailable as error:
                        if not self._can_recopy or not is_transient(error):
                            raise
                        spool.release()
                        self._recopy(descriptor, error)
                    self._done(descriptor, "uploaded")
            except _SpoolAbandonedError:
                pass  # The analysis failed on this layer and raises the reason itself.
            except BaseException as error:  # noqa: BLE001 (re-raised by finish_uploads)
                self._failures.append(error)
            finally:
                spool.release()

    def _recopy(self, descriptor: Descriptor, first: RegistryUnavailable) -> None:
        """Upload a layer again from scratch, read again (and verified again) from the source.

        The streamed upload of a layer cannot restart by itself (its bytes were handed over
        once); when it failed on a transient registry error, the layer is copied once more,
        per the sink's retry policy.

        Raises:
            RegistryUnavailable: The registry still fails after the retries.
            ImageError: The source blob is corrupt.
        """
        sink = self._sink
        if not isinstance(sink, RegistrySink):  # pragma: no cover (see _can_recopy)
            raise first
        policy = sink.client.retry
        error = first
        for attempt in range(1, policy.attempts):
            sink.client._sleep(policy.delay(attempt))  # noqa: SLF001
            try:
                with self._source.open_blob(descriptor) as reader:
                    sink.put_blob(descriptor, reader)
            except RegistryUnavailable as again:
                if not is_transient(again):
                    raise
                error = again
            else:
                return
        raise error

    def _enqueue(self, descriptor: Descriptor, spool: _StreamedSpool | _MemoryPipe) -> None:
        with self._start_lock:  # Analysis threads may enqueue at the same time.
            if not self._uploaders:
                for number in range(self._uploader_count):
                    worker = threading.Thread(
                        target=self._upload_loop, name=f"sanctum-upload-{number}", daemon=True
                    )
                    worker.start()
                    self._uploaders.append(worker)
        self._queue.put((descriptor, spool))

    def finish_uploads(self) -> None:
        """Wait for the queued uploads and re-raise the first failure.

        Raises:
            BaseException: Whatever an upload raised (registry or image errors).
        """
        for _ in self._uploaders:
            self._queue.put(None)
        for worker in self._uploaders:
            worker.join()
        self._uploaders.clear()
        if self._failures:
            raise self._failures[0]

    def open_blob(
        self, descriptor: Descriptor, *, progress: ProgressCallback | None = None
    ) -> BlobReader:
        index = self._layers.get(descriptor.digest)
        if index is None:
            return self._source.open_blob(descriptor, progress=progress)
        if self._failures:
            raise self._failures[0]
        self._emit(ConvertProgress("layer-start", layer=index, layer_count=self._count,
                                   descriptor=descriptor))  # fmt: skip
        read = 0

        def advance(count: int) -> None:
            nonlocal read
            read += count
            self._emit(ConvertProgress("layer-advance", layer=index, layer_count=self._count,
                                       descriptor=descriptor, done=read))  # fmt: skip
            if progress is not None:
                progress(count)

        outcome = None
        if self._sink.has_blob(descriptor.digest):
            outcome = "skipped"
        elif self._mount_from is not None and self._sink.mount_blob(
            descriptor.digest, self._mount_from
        ):
            outcome = "mounted"
        if outcome is not None:
            reported = outcome

            def report(verified: bool) -> None:
                if verified:
                    self._done(descriptor, reported)

            inner = self._source.open_blob(descriptor, progress=advance)
            return _TeeReader(inner, spool=None, on_close=report)
        spool: _StreamedSpool | _MemoryPipe
        if self._use_pipes:
            spool = _MemoryPipe(self._PIPE_LIMIT)
        else:
            fd, name = tempfile.mkstemp(dir=self._tmpdir, prefix="layer-")
            spool = _StreamedSpool(Path(name), fd)
        # The upload starts now and follows the analysis through the spool file.
        self._enqueue(descriptor, spool)
        try:
            inner = self._source.open_blob(descriptor, progress=advance)
        except BaseException:
            spool.end(verified=False)
            raise
        return _TeeReader(inner, spool=spool, on_close=lambda _verified: None)


# Building the manifest -------------------------------------------------------------------------


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _check_dirs(dirs: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Return the directories normalised (trailing slashes removed).

    Raises:
        BuildOptionError: A relative path or ``/``.
    """
    out = []
    for item in dirs:
        path = posixpath.normpath(item) if item.startswith("/") else ""
        if not path or path == "/" or path.startswith("//"):
            raise BuildOptionError(
                f"{what} entry {item!r} is not an absolute directory below /",
                code="build.path_invalid",
            )
        out.append(path)
    return tuple(out)


def _command(
    request: ConvertRequest, config: ImageConfig
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (entrypoint, args) with Docker's override rules.

    Raises:
        BuildOptionError: Nothing to run.
    """
    if request.entrypoint is not None:
        entrypoint = request.entrypoint
        args = request.entrypoint_args if request.entrypoint_args is not None else ()
    else:
        entrypoint = config.entrypoint or ()
        args = (
            request.entrypoint_args if request.entrypoint_args is not None else (config.cmd or ())
        )
    if not entrypoint:
        entrypoint, args = args[:1], args[1:]
    if not entrypoint or not entrypoint[0]:
        raise BuildOptionError(
            "the image has no entrypoint or command; pass one with entrypoint",
            code="build.option_invalid",
        )
    return tuple(entrypoint), tuple(args)


def _build_manifest(
    request: ConvertRequest,
    listing: FileSystemListing,
    *,
    target: Target,
    launcher: ShippedLauncher,
) -> EnclaveManifest:
    """Build the enclave manifest for ``listing`` and the request.

    Raises:
        BuildOptionError: An option is invalid or the image already holds ``/sanctum``.
        ManifestError: The result breaks the manifest format.
    """
    config = listing.config
    encrypted = _check_dirs(request.encrypted_dirs, "encryptedDirs")
    rw_dirs = _check_dirs(request.rw_dirs, "rwDirs")
    if _under(RUNTIME_DIR, (*encrypted, *rw_dirs)):
        raise BuildOptionError(
            f"{RUNTIME_DIR} cannot be encrypted or writable", code="build.path_invalid"
        )
    if any(_under(path, (RUNTIME_DIR,)) for path in listing.files):
        raise BuildOptionError(
            f"the image already contains {RUNTIME_DIR}: is it already shielded?",
            code="build.path_invalid",
        )
    mutable = (*encrypted, *rw_dirs)
    trusted: dict[str, str] = {}
    symlinks: dict[str, str] = {}
    for path, entry in listing.files.items():
        if _under(path, mutable):
            continue
        if entry.kind in {"file", "hardlink"} and entry.sha256 is not None:
            trusted[path] = entry.sha256
        elif entry.kind == "symlink" and entry.link_target is not None:
            symlinks[path] = entry.link_target
    # Every file of the shipped launcher (the executable, or each file of the launcher
    # directory for Gramine) is measured like the image's own files (ADR 0135).
    trusted.update(launcher.hashes)
    env = dict(config.env_map)
    for name, value in request.manifest_env.items():
        if not name or "=" in name or "\x00" in name:
            raise BuildOptionError(
                f"manifestEnv name {name!r} is invalid", code="build.env_invalid"
            )
        env[name] = value
    entrypoint, args = _command(request, config)
    return EnclaveManifest(
        target=target,
        app=request.app,
        entrypoint=entrypoint,
        args=args,
        workdir=posixpath.normpath("/" + (config.workdir or "").lstrip("/")),
        user=config.user or "",
        env=env,
        allow_cmdline_args=request.allow_cmdline_args,
        host_env_passthrough=request.host_env_passthrough,
        encrypted_dirs=encrypted,
        rw_dirs=rw_dirs,
        enclave=EnclaveSpec(
            size=parse_mem_size(request.mem_size),
            threads=request.threads,
            debug=request.debug,
            isvprodid=request.isvprodid,
            isvsvn=request.isvsvn,
        ),
        trusted_files=trusted,
        symlinks=symlinks,
        manager=ManagerSpec(url=request.manager_url, ca_pin=request.manager_ca_pin),
        certificates=tuple(cert.to_spec() for cert in request.certificates),
        ca_certificates=tuple(
            CaCertificateSpec(ca_path=ca.ca_path, system=ca.system)
            for ca in request.ca_certificates
        ),
        launcher=launcher.path,
    )


def exec_shim_launcher(manifest: EnclaveManifest) -> bytes:
    """Return a POSIX shell launcher that runs the original entrypoint without attestation.

    Used only when no launcher executable is supplied (the real launcher is built separately):
    it prints a warning, clears the environment to the frozen one plus the allowed host variables,
    and ``exec``s the original command. It needs ``/bin/sh`` and ``env`` in the image.
    """
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(manifest.env.items()))
    passthrough = "".join(
        f' ${{{name}+"{name}=${name}"}}' for name in manifest.host_env_passthrough
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
    )  # fmt: skip
    command = " ".join(shlex.quote(part) for part in manifest.entrypoint)
    fixed = " ".join(shlex.quote(part) for part in manifest.args)
    if manifest.allow_cmdline_args:
        run_args = f'if [ "$#" -eq 0 ]; then set -- {fixed}; fi\n' if fixed else ""
    else:
        run_args = f"set -- {fixed}\n" if fixed else "set --\n"
    return (
        "#!/bin/sh\n"
        "# Sanctum exec shim: no launcher executable was bundled with this image, so it runs\n"
        "# the original entrypoint WITHOUT attestation (no certificates, no secrets).\n"
        'echo "sanctum: exec shim, no attestation; running the original entrypoint" >&2\n'
        f"cd {shlex.quote(manifest.workdir)} || exit 1\n"
        f"{run_args}"
        f'exec env -i {assignments}{passthrough} {command} "$@"\n'
    ).encode()


# The pipeline ----------------------------------------------------------------------------------


def _resolve_key(request: ConvertRequest) -> tuple[rsa.RSAPrivateKey, bool]:
    """Return the signing key and whether it is the public debug key.

    Raises:
        SigningKeyError: The debug key without ``debug``, or an unusable PEM.
    """
    if request.signing_key == "default":
        key = debug_signing_key()
    else:
        key = load_signing_key(request.signing_key.pem.get_secret_value().encode())
    is_debug_key = is_debug_signing_key(key)
    if is_debug_key and not request.debug:
        raise SigningKeyError(
            "the default signing key is public: it may sign debug builds only",
            code="signing_key.debug_key_requires_debug",
            hint="pass your own key (sanctum builds keygen --out key.pem), or convert with debug",
        )
    return key, is_debug_key


def check_request(request: ConvertRequest) -> None:
    """Check the options that need no image (key, size, paths, manager) before opening a store.

    Raises:
        SigningKeyError: The signing key cannot be used for this build.
        BuildOptionError: The size, a directory, a certificate path, the manager URL or the CA
            pin is invalid, or a certificate or CA file could not be kept inside the enclave
            (``build.path_invalid``).
    """
    _resolve_key(request)
    parse_mem_size(request.mem_size)
    encrypted = _check_dirs(request.encrypted_dirs, "encryptedDirs")
    rw_dirs = _check_dirs(request.rw_dirs, "rwDirs")
    try:
        certs = [cert.to_spec() for cert in request.certificates]
        cas = [
            CaCertificateSpec(ca_path=ca.ca_path, system=ca.system)
            for ca in request.ca_certificates
        ]
        ManagerSpec(url=request.manager_url, ca_pin=request.manager_ca_pin)
    except ManifestError as error:
        raise BuildOptionError(error.message, code="build.option_invalid") from error
    # Under Gramine these files go to an in-enclave tmpfs (see gramine.provisioned_tmpfs_dirs).
    check_provisioned_paths(certs, cas, rw_dirs=rw_dirs, encrypted_dirs=encrypted)


def _created(config: ImageConfig, now: dt.datetime | None) -> dt.datetime:
    """Return the time written into the new history entry and the SIGSTRUCT date."""
    if now is not None:
        return now.astimezone(dt.UTC)
    if config.created:
        try:
            return dt.datetime.fromisoformat(config.created).astimezone(dt.UTC)
        except ValueError:
            pass
    return _EPOCH


def _new_config(
    config: ImageConfig,
    *,
    diff_id: str,
    created: dt.datetime,
    mrenclave: str,
    mrsigner: str,
    target: Target,
    launcher: str = DEFAULT_LAUNCHER_PATH,
) -> bytes:
    """Return the shielded image's config: launcher entrypoint, one more layer, Sanctum labels."""
    doc: dict[str, Any] = config.to_json()
    run: dict[str, Any] = dict(doc.get("config") or {})
    run["Entrypoint"] = [launcher]
    run.pop("Cmd", None)
    labels = dict(run.get("Labels") or {})
    labels.update({
        f"{_LABEL_PREFIX}mrenclave": mrenclave,
        f"{_LABEL_PREFIX}mrsigner": mrsigner,
        f"{_LABEL_PREFIX}target": target,
        f"{_LABEL_PREFIX}manifest": MANIFEST_JSON_PATH,
    })  # fmt: skip
    run["Labels"] = labels
    doc["config"] = run
    rootfs = dict(doc["rootfs"])
    rootfs["diff_ids"] = [*rootfs["diff_ids"], diff_id]
    doc["rootfs"] = rootfs
    history = list(doc.get("history") or [])
    history.append({
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_by": "sanctum convert",
        "comment": "Sanctum runtime: launcher and signed enclave manifest",
    })  # fmt: skip
    doc["history"] = history
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _default_mount_from(source: ImageSource, sink: ImageSink) -> str | None:
    """Return the source repository when source and sink are repositories of one registry."""
    if isinstance(source, RegistrySource) and isinstance(sink, RegistrySink):
        src, dst = source.reference, sink.reference
        if src.registry == dst.registry and src.repository != dst.repository:
            return src.repository
    return None


def _choose_target(
    request: ConvertRequest, gramine_tools: GramineTools | None
) -> tuple[Target, GramineTools | None]:
    """Return the build target and the tools to use for it.

    Raises:
        BuildOptionError: ``gramine-sgx`` asked for but Gramine's tools are not on PATH.
    """
    if request.target == "simulated":
        return "simulated", None
    if gramine_tools is None:
        if request.target == "gramine-sgx":
            raise BuildOptionError(
                "target gramine-sgx needs gramine-manifest and gramine-sgx-sign on PATH",
                code="build.option_invalid",
            )
        return "simulated", None
    return "gramine-sgx", gramine_tools


def convert(
    request: ConvertRequest,
    *,
    source: ImageSource,
    sink: ImageSink,
    launcher_asset: bytes | LauncherAsset | None = None,
    progress: ProgressHandler | None = None,
    now: dt.datetime | None = None,
    gramine_tools: GramineTools | Literal["auto"] | None = "auto",
    gramine_options: GramineOptions | None = None,
    mount_from: str | None = None,
    tag: str | None = None,
    workdir: Path | None = None,
) -> ConvertResponse:
    """Convert the source image into a shielded image written to the sink.

    Args:
        request: What to convert and how.
        source: The input image (already opened with the input credentials).
        sink: Where the output image goes (opened with the output credentials).
        launcher_asset: The launcher to ship: its executable (bytes), or a
            :class:`~sanctum.converter.runtime_layer.LauncherAsset` with the executable and/or
            the launcher directory (a Gramine build ships the directory, every file a trusted
            file; :func:`~sanctum.converter.runtime_layer.ship_launcher`). ``None`` ships the
            exec shim (:func:`exec_shim_launcher`, no attestation; flagged
            ``launcher-exec-shim``). A Gramine build without the directory is flagged
            ``launcher-not-for-gramine``.
        progress: Called with :class:`ConvertProgress` reports.
        now: Time for the SIGSTRUCT date and history entry; ``None`` (reproducible) uses the
            input image's ``created`` time.
        gramine_tools: Gramine's tools, ``None`` for none, or ``"auto"`` to look on ``PATH``.
        gramine_options: Where Gramine's files are in the image.
        mount_from: Repository of the sink's registry to mount original layers from (default:
            the source repository when source and sink are on the same registry).
        tag: Tag to write (default: the sink reference's tag).
        workdir: Directory for temporary files (default: the system's).

    Returns:
        The response fields (digest, size, measurement, signer, flags...).

    Raises:
        sanctum.converter.errors.ImageError: The input image is missing, malformed or corrupt.
        sanctum.converter.errors.RegistryUnavailable: A registry could not be reached.
        sanctum.converter.errors.RegistryAuthError: A registry refused access.
        BuildOptionError: An option is invalid.
        SigningKeyError: The signing key cannot be used.
        sanctum.converter.manifest_errors.ManifestError: The manifest cannot be built (for
            example a file name that is not NFC).
        sanctum.converter.manifest_errors.GramineToolError: Gramine's tools failed.
    """

    def step(message: str) -> None:
        if progress is not None:
            progress(ConvertProgress("step", message=message))

    check_request(request)
    key, is_debug_key = _resolve_key(request)
    tools = find_gramine_tools() if gramine_tools == "auto" else gramine_tools
    target, tools = _choose_target(request, tools)
    step("reading the image manifest and config")
    manifest = source.manifest()
    config = source.config()
    if mount_from is None:
        mount_from = _default_mount_from(source, sink)
    with tempfile.TemporaryDirectory(prefix="sanctum-convert-", dir=workdir) as tmp:
        step(f"analysing and copying {len(manifest.layers)} layers")
        copying = _CopyingSource(
            source, sink, mount_from=mount_from, tmpdir=Path(tmp), progress=progress
        )
        try:
            listing = analyse_image(copying, workers=copying.analysis_workers)
        except BaseException:
            copying.finish_uploads()
            raise
        # The last uploads finish while the manifest is built and signed.
        try:
            step("building and signing the enclave manifest")
            # The shim depends on the manifest, which depends on the launcher's hash: build the
            # manifest with a provisional hash, render the shim, and rebuild with the shim's hash.
            if launcher_asset is None:
                provisional = ship_launcher(LauncherAsset(executable=b""), target=target)
                draft = _build_manifest(request, listing, target=target, launcher=provisional)
                asset = LauncherAsset(executable=exec_shim_launcher(draft))
            else:
                asset = launcher_asset_of(launcher_asset)
            shipped = ship_launcher(asset, target=target)
            enclave_manifest = _build_manifest(request, listing, target=target, launcher=shipped)
            manifest_bytes = enclave_manifest.canonical_bytes()
            toml_text = render_gramine_manifest(
                enclave_manifest,
                manifest_json_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
                options=gramine_options,
            )
            created = _created(config, now)
            runtime_files = [
                RuntimeFile(MANIFEST_JSON_PATH, manifest_bytes),
                *shipped.files,
            ]
            sigstruct: Sigstruct
            if tools is not None:
                step("signing with gramine-sgx-sign")
                gramine_dir = Path(tmp) / "gramine"
                gramine_dir.mkdir()
                build = sign_with_gramine(toml_text, key=key, tools=tools, workdir=gramine_dir)
                sigstruct = build.sigstruct
                runtime_files += [
                    RuntimeFile(SIGSTRUCT_PATH, build.sigstruct_bytes),
                    RuntimeFile(GRAMINE_TOML_PATH, build.manifest_toml.encode()),
                    RuntimeFile(GRAMINE_SGX_PATH, build.manifest_sgx),
                ]
            else:
                sigstruct = sign_manifest(enclave_manifest, key=key, date=created.date()).sigstruct
                runtime_files += [
                    RuntimeFile(SIGSTRUCT_PATH, sigstruct.to_bytes()),
                    RuntimeFile(GRAMINE_TOML_PATH, toml_text.encode()),
                ]
        finally:
            copying.finish_uploads()
    # Self-check: what the launcher will verify must verify now, with this key as the signer.
    verify_signed_manifest(
        manifest_bytes, sigstruct.to_bytes(), expected_mrsigner=signing_key_mrsigner(key)
    )
    step("writing the runtime layer, config and manifest")
    layer = build_runtime_layer(runtime_files)
    docker = manifest.media_type == DOCKER_MANIFEST
    layer_desc = Descriptor(
        DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP, layer.digest, layer.size
    )
    if not sink.has_blob(layer.digest):
        sink.put_blob(layer_desc, io.BytesIO(layer.blob))
    config_bytes = _new_config(
        config,
        diff_id=layer.diff_id,
        created=created,
        mrenclave=sigstruct.mrenclave.hex(),
        mrsigner=sigstruct.mrsigner.hex(),
        target=target,
        launcher=shipped.path,
    )
    config_desc = Descriptor(
        DOCKER_CONFIG if docker else OCI_CONFIG,
        "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
        len(config_bytes),
    )
    if not sink.has_blob(config_desc.digest):
        sink.put_blob(config_desc, io.BytesIO(config_bytes))
    new_manifest = Manifest.build(
        config_desc, [*manifest.layers, layer_desc], media_type=manifest.media_type
    )
    digest = sink.put_manifest(new_manifest.raw, new_manifest.media_type, tag)
    flags = []
    if request.debug:
        flags.append("debug")
    if is_debug_key:
        flags.append("default-signing-key")
    if target == "simulated":
        flags.append("simulated")
    if launcher_asset is None:
        flags.append("launcher-exec-shim")
    if target == "gramine-sgx" and not shipped.directory:
        flags.append("launcher-not-for-gramine")
    outcomes = list(copying.outcomes.values())
    return ConvertResponse(
        new_image=request.output_image_name,
        image_digest=digest,
        image_size=new_manifest.size + config_desc.size + sum(d.size for d in new_manifest.layers),
        config_digest=config_desc.digest,
        runtime_layer_digest=layer.digest,
        mrenclave=sigstruct.mrenclave.hex(),
        mrsigner=sigstruct.mrsigner.hex(),
        isvprodid=sigstruct.isvprodid,
        isvsvn=sigstruct.isvsvn,
        debug=sigstruct.debug,
        target=target,
        flags=tuple(flags),
        layers_uploaded=outcomes.count("uploaded"),
        layers_skipped=outcomes.count("skipped"),
        layers_mounted=outcomes.count("mounted"),
        trusted_files=len(enclave_manifest.trusted_files),
    )
