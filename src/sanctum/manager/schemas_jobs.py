"""API models of conversion jobs (Data Shield converter field names) and of jobs.

:class:`ConversionIn` takes the fields of Data Shield's ``ConversionRequest`` (camelCase:
``inputImageName``, ``outputImageName``, ``inputAuthConfig``, ``outputAuthConfig``,
``authConfig``, ``isvprodid``, ``isvsvn``, ``memSize``, ``threads``, ``debug``, ``entrypoint``,
``entrypointArgs``, ``encryptedDirs``, ``rwDirs``, ``manifestEnv``, ``allowCmdlineArgs``,
``certificates``, ``caCertificates``, ``signingKey``, ``app``) plus Sanctum's ``target``,
``hostEnvPassthrough``, ``managerUrl``, ``managerCaPin`` and ``saveCredentials``. A finished job's
``result`` carries Data Shield's response fields (``newImage``, ``imageSHA``, ``imageSize``,
``isvprodid``, ``isvsvn``, ``mrenclave``, ``mrsigner``) and Sanctum's (``imageDigest``,
``target``, ``flags``, ``debug``, ``managerUrl``, ``managerCaPin``, ``buildId``, ``taskId``).
The manager fills in ``managerUrl`` and ``managerCaPin`` itself (ADR 0076).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from sanctum.converter.convert import AuthConfig, CaCertificateRequest, CertificateRequest
from sanctum.manager.models_jobs import JobStatus

__all__ = [
    "ConversionIn",
    "JobError",
    "JobPublic",
    "RegistryCredentialPublic",
]


class ConversionIn(BaseModel):
    """A conversion request (Data Shield's field names; credentials are never echoed)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    input_image_name: str = Field(min_length=1, max_length=500)
    output_image_name: str = Field(min_length=1, max_length=500)
    input_auth_config: AuthConfig | None = None
    output_auth_config: AuthConfig | None = None
    auth_config: AuthConfig | None = Field(
        default=None, description="Credentials for both registries (when the others are absent)."
    )
    app: str | None = Field(
        default=None, max_length=200, description="App id or name (convert-app only)."
    )
    isvprodid: int = Field(default=0, ge=0, le=0xFFFF)
    isvsvn: int = Field(default=0, ge=0, le=0xFFFF)
    mem_size: str | int = "2G"
    threads: int = Field(default=16, ge=1, le=65535)
    debug: bool = False
    entrypoint: list[str] | None = None
    entrypoint_args: list[str] | None = None
    encrypted_dirs: list[str] = Field(default_factory=list)
    rw_dirs: list[str] | None = None
    manifest_env: dict[str, str] | list[str] = Field(default_factory=dict)
    allow_cmdline_args: bool = False
    host_env_passthrough: list[str] = Field(default_factory=list)
    certificates: list[CertificateRequest] = Field(default_factory=list)
    ca_certificates: list[CaCertificateRequest] = Field(default_factory=list)
    signing_key: Literal["account", "default"] = Field(
        default="account",
        description="'account': the account's signing key (created on first use); 'default': "
        "Sanctum's public debug key, with debug only.",
    )
    manager_url: str | None = Field(
        default=None,
        max_length=500,
        description="https URL workloads use to reach the manager; default: the manager's "
        "public URL (its CA pin authenticates whatever answers).",
    )
    manager_ca_pin: str | None = Field(
        default=None,
        max_length=80,
        description="Filled in by the manager (the pin of its TLS endpoint's CA); a request "
        "may repeat it but not name another.",
    )
    target: Literal["auto", "simulated", "gramine-sgx"] = "auto"
    save_credentials: bool = Field(
        default=False,
        description="Keep the given registry credentials (sealed) for later conversions.",
    )


class JobError(BaseModel):
    """Why a job failed."""

    code: str
    message: str


class JobPublic(BaseModel):
    """A background job: status, progress, and its result or error."""

    id: str
    account_id: str
    app_id: str | None
    kind: str
    status: JobStatus
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: JobError | None
    build_id: str | None
    task_id: str | None
    attempts: int
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class RegistryCredentialPublic(BaseModel):
    """Saved registry credentials (the password is never returned)."""

    model_config = ConfigDict(from_attributes=True)

    host: str
    username: str
    created_at: dt.datetime
    updated_at: dt.datetime
