"""Request and response models of apps, builds, domains, nodes, certificates and the CA.

The attestation protocol's own wire models (challenge, attest) live in
:mod:`sanctum.protocol.messages`, shared with the launcher; this module has everything else the
attestation part of the API needs. Secret values appear only in requests (``AppSecretIn``):
no response model has a field that could carry one.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sanctum.manager.models_attestation import (
    BuildStatus,
    CertificateStatus,
    DomainStatus,
    NodeStatus,
)
from sanctum.manager.schemas import TaskPublic
from sanctum.protocol.messages import B64Bytes, Collateral
from sanctum.protocol.messages import VerifyEvidenceRequest as WireVerifyEvidenceRequest

__all__ = [
    "AppCreate",
    "AppPolicy",
    "AppPublic",
    "AppSecretIn",
    "AppSecretPublic",
    "AppUpdate",
    "ArgsPolicy",
    "BuildCreate",
    "BuildCreated",
    "BuildPublic",
    "BuildRevoked",
    "CaPublic",
    "CertificateConfig",
    "CertificatePublic",
    "CertificateRevoke",
    "DomainCreate",
    "DomainCreated",
    "DomainPublic",
    "EnvPolicy",
    "NodeCreate",
    "NodeCreated",
    "NodeJoin",
    "NodeJoined",
    "NodePublic",
    "NodeRefreshed",
    "VerifyEvidenceRequest",
    "WorkloadInstancePublic",
]

_STRICT = ConfigDict(extra="forbid")
_ORM = ConfigDict(from_attributes=True)
_APP_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RSA_OR_EC = Literal["ec-p256", "rsa-2048", "rsa-3072"]


def _absolute(path: str) -> str:
    if not path.startswith("/") or ".." in path.split("/") or "\x00" in path:
        msg = "paths must be absolute, without '..' components"
        raise ValueError(msg)
    return path


class CertificateConfig(BaseModel):
    """What the workload certificate looks like and where the launcher writes it."""

    model_config = _STRICT

    subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Common name (default: first domain).",
    )
    key_type: _RSA_OR_EC = "ec-p256"
    validity_seconds: int = Field(default=86400, ge=300, le=397 * 86400)
    key_path: str = "/run/sanctum/tls/key.pem"
    certificate_path: str = "/run/sanctum/tls/cert.pem"
    chain_path: str = "/run/sanctum/tls/chain.pem"
    ca_path: str = "/run/sanctum/tls/ca.pem"

    @field_validator("key_path", "certificate_path", "chain_path", "ca_path")
    @classmethod
    def _paths(cls, value: str) -> str:
        return _absolute(value)


class EnvPolicy(BaseModel):
    """The workload's environment: fixed values, and host variables let through."""

    model_config = _STRICT

    set: dict[str, str] = Field(default_factory=dict)
    passthrough: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> Self:
        for name in [*self.set, *self.passthrough]:
            if not _ENV_NAME.fullmatch(name):
                msg = f"{name!r} is not an environment variable name"
                raise ValueError(msg)
        return self


class ArgsPolicy(BaseModel):
    """The workload's arguments: the image's, fixed ones, or fixed plus caller-appended."""

    model_config = _STRICT

    mode: Literal["image", "fixed", "append"] = "image"
    args: list[str] = Field(default_factory=list, max_length=256)


class AppPolicy(BaseModel):
    """The app's attestation policy (see :class:`sanctum.manager.policy.AttestationPolicy`)."""

    model_config = _STRICT

    accepted_tcb_statuses: list[str] = Field(
        default_factory=lambda: ["SWHardeningNeeded", "UpToDate"]
    )
    accepted_advisory_ids: list[str] | None = None
    rejected_advisory_ids: list[str] = Field(default_factory=list)
    min_qe_status: str = "UpToDate"
    unsafe_allow_debug: bool = False
    unsafe_allow_simulated: bool = False
    unsafe_allow_expired_collateral: bool = False
    require_registered_node: bool = False
    min_tcb_evaluation_data_number: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)


class AppSecretIn(BaseModel):
    """A secret value to deliver to the app's workloads (write-only: never returned)."""

    model_config = _STRICT

    value: str = Field(max_length=64 * 1024, description="The value (UTF-8 or base64).")
    encoding: Literal["utf-8", "base64"] = "utf-8"
    delivery: Literal["file", "env"] = "env"
    path: str | None = Field(default=None, max_length=500)
    env_name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _target(self) -> Self:
        if self.delivery == "file":
            if self.path is None or self.env_name is not None:
                msg = "file delivery needs path (and no env_name)"
                raise ValueError(msg)
            _absolute(self.path)
        elif self.path is not None:
            msg = "env delivery takes env_name, not path"
            raise ValueError(msg)
        elif self.env_name is not None and not _ENV_NAME.fullmatch(self.env_name):
            msg = "env_name must match [A-Za-z_][A-Za-z0-9_]*"
            raise ValueError(msg)
        return self


class AppSecretPublic(BaseModel):
    """A secret's name and where it goes; never its value."""

    model_config = _ORM

    name: str
    delivery: str
    target: str
    created_at: dt.datetime
    updated_at: dt.datetime


class _AppFields(BaseModel):
    description: str | None = Field(default=None, max_length=1000)
    input_image: str | None = Field(default=None, max_length=500)
    output_image: str | None = Field(default=None, max_length=500)
    isvprodid: int | None = Field(default=None, ge=0, le=0xFFFF)
    min_isvsvn: int | None = Field(default=None, ge=0, le=0xFFFF)
    enclave_size_mib: int | None = Field(default=None, ge=16, le=1024 * 1024)
    threads: int | None = Field(default=None, ge=1, le=4096)
    certificate: CertificateConfig | None = None
    install_ca_trust: bool | None = None
    encrypted_dirs: list[str] | None = Field(default=None, max_length=64)
    env: EnvPolicy | None = None
    args: ArgsPolicy | None = None
    policy: AppPolicy | None = None

    @field_validator("encrypted_dirs")
    @classmethod
    def _dirs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_absolute(v) for v in value]


class AppCreate(_AppFields):
    """A new app; its domains each open an approval task."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=100)
    domains: list[str] = Field(default_factory=list, max_length=100)
    secrets: dict[str, AppSecretIn] = Field(default_factory=dict, max_length=100)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _APP_NAME.fullmatch(value):
            msg = "app names are lowercase letters, digits, '.', '_' and '-'"
            raise ValueError(msg)
        return value


class AppUpdate(_AppFields):
    """Changes to an app (every field optional)."""

    model_config = _STRICT


class AppPublic(BaseModel):
    """An app, without secret values."""

    id: str
    account_id: str
    name: str
    description: str
    input_image: str | None
    output_image: str | None
    isvprodid: int | None
    min_isvsvn: int
    enclave_size_mib: int
    threads: int
    certificate: CertificateConfig
    install_ca_trust: bool
    encrypted_dirs: list[str]
    env: EnvPolicy
    args: ArgsPolicy
    policy: AppPolicy
    policy_hash: str
    domains: list[DomainPublic]
    secrets: list[AppSecretPublic]
    tasks: list[TaskPublic] = Field(default_factory=list)
    created_at: dt.datetime
    updated_at: dt.datetime


class DomainCreate(BaseModel):
    """Ask for a certificate name for an app."""

    model_config = _STRICT

    app: str = Field(min_length=1, max_length=200, description="App id or name.")
    name: str = Field(min_length=1, max_length=253)


class DomainPublic(BaseModel):
    """A certificate name of an app and its approval status."""

    model_config = _ORM

    id: str
    app_id: str
    name: str
    status: DomainStatus
    task_id: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None


class DomainCreated(BaseModel):
    """The domain and its approval task."""

    domain: DomainPublic
    task: TaskPublic | None


def _hex(value: str | None, sizes: set[int], what: str) -> str | None:
    if value is None:
        return None
    lowered = value.lower()
    if not _HEX.fullmatch(lowered) or len(lowered) // 2 not in sizes:
        msg = f"{what} must be hex of {' or '.join(str(s) for s in sorted(sizes))} bytes"
        raise ValueError(msg)
    return lowered


class BuildCreate(BaseModel):
    """Register a converted image's measurement; allowlisting opens an approval task."""

    model_config = _STRICT

    app: str = Field(min_length=1, max_length=200, description="App id or name.")
    image_name: str | None = Field(default=None, max_length=500)
    image_digest: str | None = Field(default=None, max_length=100)
    tee: Literal["sgx", "tdx"] = "sgx"
    measurement: str = Field(description="MRENCLAVE (SGX) or MRTD (TDX), hex.")
    signer: str | None = Field(default=None, description="MRSIGNER or MRSIGNERSEAM, hex.")
    rtmrs: list[str | None] = Field(default_factory=list, max_length=4)
    isvprodid: int | None = Field(default=None, ge=0, le=0xFFFF)
    isvsvn: int | None = Field(default=None, ge=0, le=0xFFFF)
    debug: bool = False
    simulated: bool = False

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        size = {32} if self.tee == "sgx" else {48}
        self.measurement = _hex(self.measurement, size, "measurement") or ""
        self.signer = _hex(self.signer, size, "signer")
        if self.tee == "sgx" and self.rtmrs:
            msg = "SGX builds have no RTMRs"
            raise ValueError(msg)
        self.rtmrs = [_hex(r, {48}, "rtmr") for r in self.rtmrs]
        return self


class BuildPublic(BaseModel):
    """A build and its allowlisting status."""

    model_config = _ORM

    id: str
    app_id: str
    image_name: str | None
    image_digest: str | None
    tee: str
    measurement: str
    signer: str | None
    rtmrs: list[str | None]
    isvprodid: int | None
    isvsvn: int | None
    debug: bool
    simulated: bool
    status: BuildStatus
    task_id: str | None
    created_by: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None
    revoked_at: dt.datetime | None


class BuildCreated(BaseModel):
    """The build and its allowlisting task."""

    build: BuildPublic
    task: TaskPublic | None


class BuildRevoked(BaseModel):
    """The revoked build and how many certificates went with it."""

    build: BuildPublic
    certificates_revoked: int


class NodeCreate(BaseModel):
    """Register a node; the answer carries its single-use join token."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200)


class NodePublic(BaseModel):
    """A node and its last attested platform."""

    model_config = _ORM

    id: str
    name: str
    status: NodeStatus
    tee: str | None
    fmspc: str | None
    pck_identity: str | None
    tcb_status: str | None
    advisory_ids: list[str]
    simulated: bool
    flag: str | None
    tcb_evaluation_data_number: int | None = Field(
        default=None,
        description="TCB info evaluation data number the node was last judged with (never lowers)",
    )
    qe_tcb_evaluation_data_number: int | None = Field(
        default=None,
        description="QE identity evaluation data number the node was last judged with",
    )
    certificate_serial: str | None
    join_token_expires_at: dt.datetime | None
    created_at: dt.datetime
    attested_at: dt.datetime | None


class NodeCreated(BaseModel):
    """The node and its join token (shown once)."""

    node: NodePublic
    join_token: str
    join_token_expires_at: dt.datetime


class NodeJoin(BaseModel):
    """A node proves its platform: join token, a quote binding the nonce and its CSR key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=10, max_length=200)
    quote: B64Bytes = Field(min_length=48, max_length=64 * 1024)
    csr: str = Field(min_length=36, max_length=16 * 1024)
    nonce: B64Bytes = Field(min_length=16, max_length=64)
    collateral: Collateral | None = None


class NodeJoined(BaseModel):
    """The joined node's certificate."""

    node: NodePublic
    certificate: str
    chain: list[str]
    ca: str


class NodeRefreshed(BaseModel):
    """Nodes re-appraised with current collateral."""

    checked: int
    flagged: list[NodePublic]


class CertificatePublic(BaseModel):
    """An issued certificate."""

    model_config = _ORM

    id: str
    serial: str
    subject: str
    sans: list[str]
    app_id: str | None
    build_id: str | None
    node_id: str | None
    instance: str | None
    not_before: dt.datetime
    not_after: dt.datetime
    status: CertificateStatus
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    pem: str
    created_at: dt.datetime


class CertificateRevoke(BaseModel):
    """Why a certificate is revoked (an RFC 5280 reason)."""

    model_config = _STRICT

    reason: Literal[
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
    ] = "unspecified"


class CaPublic(BaseModel):
    """The account's CA: the root to pin and the issuing intermediate."""

    account_id: str
    root: str
    chain: list[str]
    crl_path: str


class VerifyEvidenceRequest(WireVerifyEvidenceRequest):
    """The dry run's request: the wire model plus, optionally, the binding inputs.

    With ``nonce`` and ``csr`` the dry run also checks the report-data binding and the CSR's
    names against the approved domains (the nonce is not consumed).
    """

    nonce: B64Bytes | None = Field(default=None, min_length=16, max_length=64)
    csr: str | None = Field(default=None, max_length=16 * 1024)


AppPublic.model_rebuild()


class WorkloadInstancePublic(BaseModel):
    """A workload instance of an app and when it last attested."""

    model_config = _ORM

    instance: str
    build_id: str
    certificate_serial: str | None
    attestations: int
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
