"""Wire models of the attestation protocol (``/v1/attest/challenge`` and ``/v1/attest``).

Manager and launcher both build and parse these models, so a field renamed on one side fails
their shared tests instead of failing in production. Encodings:

- binary values (nonce, quote, collateral blobs, sealed boxes) are standard base64 with padding
  (RFC 4648 section 4) and are validated strictly; in Python they are ``bytes``;
- certificates and the CSR are PEM text;
- times are RFC 3339 with an offset.

Requests forbid unknown fields (a typo is an error, not a silently ignored option). Responses
ignore unknown fields, so a newer manager can add fields without breaking older launchers.

The flow (see ``docs/adr/0081-key-binding-and-secret-sealing.md``)::

    launcher                                   manager
       |  POST /v1/attest/challenge               |
       |<------------- ChallengeResponse ---------|   single-use nonce
       |  key pair + CSR in the enclave;          |
       |  quote(report_data_for(nonce, SPKI))     |
       |  POST /v1/attest  AttestRequest -------->|   verify, appraise, issue
       |<------------- AttestResponse ------------|   certificate, sealed secrets and
       |  open_secrets(private key)               |   directory keys, token
       |  open_dir_keys(private key)              |
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Final, Literal, Self

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from sanctum.protocol.errors import SealingError
from sanctum.protocol.sealing import SealedBox, SuiteName, open_sealed, sealing_info, secret_aad

__all__ = [
    "AttestRequest",
    "AttestResponse",
    "B64Bytes",
    "ChallengeResponse",
    "Collateral",
    "DirectoryKey",
    "PolicyCheck",
    "PreviousDirKey",
    "SealedBoxWire",
    "SealedDirKey",
    "SealedPreviousDirKey",
    "SealedSecret",
    "SealingContext",
    "VerifyEvidenceRequest",
    "VerifyEvidenceResponse",
    "dir_key_aad",
]

#: Largest quote accepted on the wire (SGX and TDX v4/v5 quotes with certification data are
#: a few KiB; this leaves generous room).
MAX_QUOTE_BYTES: Final = 64 * 1024
#: Bounds of supplied collateral (generous: Intel's are a few KiB each).
MAX_CHAIN_CHARS: Final = 32 * 1024
MAX_CRL_BYTES: Final = 256 * 1024
MAX_COLLATERAL_JSON_CHARS: Final = 256 * 1024
MAX_SIGNATURE_BYTES: Final = 1024

_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CSR_HEADER: Final = "-----BEGIN CERTIFICATE REQUEST-----"
_DIR_KEY_AAD_LABEL: Final = b"sanctum/encrypted-dir/v1"


def _b64decode(value: object) -> bytes:
    """Return the bytes of a strict standard-base64 string (bytes pass through unchanged).

    Raises:
        ValueError: ``value`` is neither bytes nor valid padded standard base64.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if not isinstance(value, str):
        msg = "expected a base64 string"
        raise TypeError(msg)
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        msg = "not valid standard base64 (RFC 4648 section 4, with padding)"
        raise ValueError(msg) from exc


def _b64encode(value: bytes) -> str:
    """Return ``value`` as standard base64 with padding."""
    return base64.b64encode(value).decode("ascii")


#: Bytes in Python, standard base64 text on the wire.
B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(_b64encode, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class _Request(BaseModel):
    """Base of request models: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class _Response(BaseModel):
    """Base of response models: frozen, unknown fields ignored for forward compatibility."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ChallengeResponse(_Response):
    """Answer of ``POST /v1/attest/challenge``.

    Attributes:
        nonce: The single-use nonce to bind into the quote's report data.
        expires_at: When the manager stops accepting the nonce.
    """

    nonce: B64Bytes = Field(min_length=16, max_length=64)
    expires_at: AwareDatetime


class Collateral(_Request):
    """DCAP verification collateral a workload may send along with its quote.

    The fields mirror Intel's ``sgx_ql_qve_collateral_t`` (and dcap-qvl's
    ``QuoteCollateralV3``): PEM issuer chains as text, CRLs as DER bytes, TCB info and QE
    identity as the exact JSON text Intel signed, and their signatures as raw bytes.
    Supplied collateral is verified exactly like fetched collateral; it is only a transport.
    Every field is bounded (an unauthenticated caller sends it): PEM chains to
    :data:`MAX_CHAIN_CHARS`, CRLs to :data:`MAX_CRL_BYTES`, the signed JSON documents to
    :data:`MAX_COLLATERAL_JSON_CHARS` and signatures to :data:`MAX_SIGNATURE_BYTES`.
    """

    pck_crl_issuer_chain: str = Field(max_length=MAX_CHAIN_CHARS)
    root_ca_crl: B64Bytes = Field(max_length=MAX_CRL_BYTES)
    pck_crl: B64Bytes = Field(max_length=MAX_CRL_BYTES)
    tcb_info_issuer_chain: str = Field(max_length=MAX_CHAIN_CHARS)
    tcb_info: str = Field(max_length=MAX_COLLATERAL_JSON_CHARS)
    tcb_info_signature: B64Bytes = Field(max_length=MAX_SIGNATURE_BYTES)
    qe_identity_issuer_chain: str = Field(max_length=MAX_CHAIN_CHARS)
    qe_identity: str = Field(max_length=MAX_COLLATERAL_JSON_CHARS)
    qe_identity_signature: B64Bytes = Field(max_length=MAX_SIGNATURE_BYTES)
    pck_certificate_chain: str | None = Field(default=None, max_length=MAX_CHAIN_CHARS)


class AttestRequest(_Request):
    """Body of ``POST /v1/attest``.

    Attributes:
        app: The app (name or id) the workload claims to be.
        quote: The raw DCAP quote whose report data binds ``nonce`` and the CSR key.
        csr: PEM PKCS#10 request for the workload key generated in the enclave.
        nonce: The nonce of the challenge this attestation answers.
        collateral: Optional collateral; by default the manager uses its configured source.
        instance: Optional stable id of this workload instance (renewals and last-seen).
    """

    app: str = Field(min_length=1, max_length=200)
    quote: B64Bytes = Field(min_length=48, max_length=MAX_QUOTE_BYTES)
    csr: str = Field(min_length=len(_CSR_HEADER), max_length=16 * 1024)
    nonce: B64Bytes = Field(min_length=16, max_length=64)
    collateral: Collateral | None = None
    instance: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _csr_is_pem(self) -> Self:
        """Check that ``csr`` is a PEM certificate request (parsing happens in the manager)."""
        if _CSR_HEADER not in self.csr:
            msg = f"csr must be a PEM certificate request starting with {_CSR_HEADER}"
            raise ValueError(msg)
        return self


class SealedBoxWire(_Response):
    """A :class:`~sanctum.protocol.sealing.SealedBox` on the wire."""

    suite: SuiteName
    enc: B64Bytes
    ciphertext: B64Bytes

    @classmethod
    def from_box(cls, box: SealedBox) -> SealedBoxWire:
        """Return the wire form of ``box``."""
        return cls(suite=box.suite, enc=box.enc, ciphertext=box.ciphertext)

    def to_box(self) -> SealedBox:
        """Return the sealed box this wire form carries."""
        return SealedBox(self.suite, self.enc, self.ciphertext)


class SealedSecret(_Response):
    """One application secret, sealed to the attested key, with where to deliver it.

    Attributes:
        name: The secret's name in the app configuration.
        delivery: ``file`` (written to ``path``) or ``env`` (exported as ``env_name``).
        path: Absolute path inside the workload, for ``file`` delivery.
        env_name: Environment variable name, for ``env`` delivery.
        box: The sealed value; its associated data binds name, delivery and target.
    """

    name: str = Field(min_length=1, max_length=200)
    delivery: Literal["file", "env"]
    path: str | None = None
    env_name: str | None = None
    box: SealedBoxWire

    @model_validator(mode="after")
    def _target_matches_delivery(self) -> Self:
        """Check that exactly the target of the delivery kind is set and well formed."""
        if self.delivery == "file":
            if self.path is None or self.env_name is not None:
                msg = "file delivery needs path and no env_name"
                raise ValueError(msg)
            parts = self.path.split("/")
            if not self.path.startswith("/") or ".." in parts or "\x00" in self.path:
                msg = "path must be absolute, without '..' components or NUL bytes"
                raise ValueError(msg)
        else:
            if self.env_name is None or self.path is not None:
                msg = "env delivery needs env_name and no path"
                raise ValueError(msg)
            if not _ENV_NAME.fullmatch(self.env_name):
                msg = "env_name must match [A-Za-z_][A-Za-z0-9_]*"
                raise ValueError(msg)
        return self

    @property
    def target(self) -> str:
        """Return the path or environment variable name the secret goes to."""
        target = self.path if self.delivery == "file" else self.env_name
        if target is None:  # pragma: no cover (the validator guarantees a target)
            msg = "sealed secret without target"
            raise AssertionError(msg)
        return target

    def aad(self) -> bytes:
        """Return the associated data the box was sealed with."""
        return secret_aad(name=self.name, delivery=self.delivery, target=self.target)


def dir_key_aad(*, path: str, version: int) -> bytes:
    """Return the associated data an encrypted directory's key is sealed with.

    It names the directory and the key version, so a box cannot be moved to another directory
    (or passed off as another version) without failing to open.

    Args:
        path: The directory's absolute path inside the workload (``encryptedDirs`` entry).
        version: The key's version (rotation increments it).

    Returns:
        Length-prefixed label, path and version.
    """
    encoded = path.encode("utf-8")
    return (
        _DIR_KEY_AAD_LABEL
        + len(encoded).to_bytes(4, "big")
        + encoded
        + version.to_bytes(8, "big", signed=False)
    )


class SealedPreviousDirKey(_Response):
    """An older key of an encrypted directory, still needed while a rotation is not finished.

    Attributes:
        version: Version of that key (lower than the current one).
        min_epoch: Rollback floor of the directory while still under this key, if known.
        box: The sealed 32-byte key; its associated data names the path and ``version``.
    """

    version: int = Field(ge=1, le=2**31 - 1)
    min_epoch: int | None = Field(default=None, ge=0)
    box: SealedBoxWire


class SealedDirKey(_Response):
    """The key of one encrypted directory, sealed to the attested key.

    Attributes:
        path: Absolute directory path inside the workload (an ``encryptedDirs`` entry).
        version: Version of the key (1 for the first; rotation increments it).
        min_epoch: Oldest index epoch the workload may accept (rollback floor), if known.
        box: The sealed 32-byte key; its associated data names ``path`` and ``version``.
        previous: Older key versions not yet retired (a rotation in progress), newest first.
    """

    path: str = Field(min_length=2, max_length=500)
    version: int = Field(ge=1, le=2**31 - 1)
    min_epoch: int | None = Field(default=None, ge=0)
    box: SealedBoxWire
    previous: list[SealedPreviousDirKey] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _path_is_absolute(self) -> Self:
        """Check that ``path`` is absolute, not the root, without ``..`` or NUL."""
        parts = self.path.split("/")
        if not self.path.startswith("/") or ".." in parts or "\x00" in self.path:
            msg = "path must be absolute, without '..' components or NUL bytes"
            raise ValueError(msg)
        return self

    def aad(self) -> bytes:
        """Return the associated data the box was sealed with."""
        return dir_key_aad(path=self.path, version=self.version)


class PreviousDirKey(BaseModel):
    """An opened older key of an encrypted directory (a rotation in progress).

    Attributes:
        version: The key version.
        min_epoch: Rollback floor of the directory while under this key (0: none).
        key: The 32-byte key.
    """

    model_config = ConfigDict(frozen=True)

    version: int
    min_epoch: int = 0
    key: bytes = Field(repr=False)


class DirectoryKey(BaseModel):
    """An opened encrypted-directory key (in the workload's memory only).

    Attributes:
        path: The directory path inside the workload.
        version: The key version.
        min_epoch: Rollback floor for the directory's index (0 when the manager sets none).
        key: The 32-byte key.
        previous: Older key versions still needed (a rotation in progress), newest first.
    """

    model_config = ConfigDict(frozen=True)

    path: str
    version: int
    min_epoch: int = 0
    key: bytes = Field(repr=False)
    previous: tuple[PreviousDirKey, ...] = ()


class SealingContext(_Response):
    """The attestation context every secret of a response is sealed under.

    Attributes:
        manager_id: The issuing manager (the token issuer).
        app: The app the workload attested as.
        build: The id of the allowlisted build that matched the quote.
        nonce: The challenge nonce of this attestation.
    """

    manager_id: str
    app: str
    build: str
    nonce: B64Bytes

    def info(self) -> bytes:
        """Return the sealing ``info`` bytes of this context."""
        return sealing_info(
            manager_id=self.manager_id, app=self.app, build=self.build, nonce=self.nonce
        )


class AttestResponse(_Response):
    """Answer of ``POST /v1/attest`` when the workload is accepted.

    Attributes:
        certificate: PEM certificate for the CSR key, with the attestation extension.
        chain: PEM intermediates from the certificate up to, not including, ``ca``.
        ca: PEM root certificate of the account's CA.
        sealing: The context the secrets are sealed under.
        sealed_secrets: The app's secrets, each sealed to the CSR key.
        sealed_dir_keys: The keys of the app's encrypted directories, each sealed to the CSR
            key under the same context as the secrets.
        token: The attestation result token (EAR JWT, verifiable with the manager's JWKS).
        expires_at: When the certificate expires (re-attest before then).
    """

    certificate: str
    chain: list[str]
    ca: str
    sealing: SealingContext
    sealed_secrets: list[SealedSecret] = Field(default_factory=list)
    sealed_dir_keys: list[SealedDirKey] = Field(default_factory=list, max_length=64)
    token: str
    expires_at: datetime

    def open_secrets(
        self, private_key: PrivateKeyTypes, *, expected_nonce: bytes, expected_app: str
    ) -> dict[str, bytes]:
        """Open every sealed secret with the workload key, after checking the context.

        Args:
            private_key: The workload key whose CSR this attestation sent.
            expected_nonce: The nonce the workload bound into its quote.
            expected_app: The app the workload attested as.

        Returns:
            The secret values by name.

        Raises:
            SealingError: The response's context is not this attestation's (code
                ``sealing.context_mismatch``), or a box does not open (``sealing.invalid``).
        """
        if self.sealing.nonce != expected_nonce or self.sealing.app != expected_app:
            raise SealingError(
                "the response is sealed for another attestation (nonce or app differ)",
                code="sealing.context_mismatch",
            )
        info = self.sealing.info()
        return {
            secret.name: open_sealed(private_key, secret.box.to_box(), info=info, aad=secret.aad())
            for secret in self.sealed_secrets
        }

    def open_dir_keys(
        self, private_key: PrivateKeyTypes, *, expected_nonce: bytes, expected_app: str
    ) -> dict[str, DirectoryKey]:
        """Open every sealed encrypted-directory key, after checking the context.

        Args:
            private_key: The workload key whose CSR this attestation sent.
            expected_nonce: The nonce the workload bound into its quote.
            expected_app: The app the workload attested as.

        Returns:
            The opened keys by directory path.

        Raises:
            SealingError: The response's context is not this attestation's (code
                ``sealing.context_mismatch``), a box does not open (``sealing.invalid``), a
                directory appears twice (``sealing.duplicate_dir``), or an older key is not
                older (``sealing.dir_version_invalid``).
        """
        if self.sealing.nonce != expected_nonce or self.sealing.app != expected_app:
            raise SealingError(
                "the response is sealed for another attestation (nonce or app differ)",
                code="sealing.context_mismatch",
            )
        info = self.sealing.info()
        keys: dict[str, DirectoryKey] = {}
        for sealed in self.sealed_dir_keys:
            if sealed.path in keys:
                raise SealingError(
                    f"the response carries two keys for {sealed.path}",
                    code="sealing.duplicate_dir",
                )
            key = open_sealed(private_key, sealed.box.to_box(), info=info, aad=sealed.aad())
            if any(older.version >= sealed.version for older in sealed.previous):
                raise SealingError(
                    f"the response offers {sealed.path} an older key that is not older",
                    code="sealing.dir_version_invalid",
                )
            previous = tuple(
                PreviousDirKey(
                    version=older.version,
                    min_epoch=older.min_epoch or 0,
                    key=open_sealed(
                        private_key,
                        older.box.to_box(),
                        info=info,
                        aad=dir_key_aad(path=sealed.path, version=older.version),
                    ),
                )
                for older in sealed.previous
            )
            keys[sealed.path] = DirectoryKey(
                path=sealed.path,
                version=sealed.version,
                min_epoch=sealed.min_epoch or 0,
                key=key,
                previous=previous,
            )
        return keys


class VerifyEvidenceRequest(_Request):
    """Body of ``POST /v1/attest/verify-evidence``: appraise a quote without issuing anything.

    Attributes:
        app: The app whose policy and builds to appraise against.
        quote: The raw DCAP quote.
        collateral: Optional collateral; by default the manager uses its configured source.
    """

    app: str = Field(min_length=1, max_length=200)
    quote: B64Bytes = Field(min_length=48, max_length=MAX_QUOTE_BYTES)
    collateral: Collateral | None = None


class PolicyCheck(_Response):
    """One check of an appraisal (see :mod:`sanctum.manager.policy`).

    Attributes:
        name: Stable check name, for example ``tcb.status``.
        outcome: ``pass``, ``fail`` or ``skip``.
        code: The refusal code the check gives when it fails.
        reason: What the check found, for an operator.
    """

    name: str
    outcome: Literal["pass", "fail", "skip"]
    code: str
    reason: str


class VerifyEvidenceResponse(_Response):
    """Answer of ``POST /v1/attest/verify-evidence``: every check, and what the quote says.

    Attributes:
        accepted: Whether an attestation with this quote would pass the app's policy.
        policy_hash: SHA-256 of the app's canonical policy.
        build: The allowlisted build the measurement matched, if any.
        checks: Every check in evaluation order.
        failed: The codes of the failed checks, in order.
        ear_status: The EAR status an attestation result token would carry.
        trustworthiness_vector: The AR4SI vector such a token would carry.
        verified: The verified quote's facts (``VerifiedQuote.to_dict()``).
    """

    accepted: bool
    policy_hash: str
    build: str | None
    checks: list[PolicyCheck]
    failed: list[str]
    ear_status: Literal["none", "affirming", "warning", "contraindicated"]
    trustworthiness_vector: dict[str, int]
    verified: dict[str, object]
