"""Settings of the Enclave Manager, from a TOML config file and ``SANCTUM_MANAGER_*`` variables.

Settings fail closed: there is no default secret anywhere. The key-encryption key (KEK) comes
from a file or a named environment variable (or a pluggable key provider passed to the app); an
inline bootstrap password is accepted only in the explicit ``dev`` profile. With no KEK at all,
``sanctum manager serve`` creates one in the data directory and warns (see ADR 0051).

Precedence (highest first): explicit keyword arguments, environment variables, the config file
named by ``SANCTUM_MANAGER_CONFIG`` (or the ``config_file`` argument), defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sanctum.errors import UsageError
from sanctum.manager.services.registry_allowlist import LOOPBACK_PATTERNS, parse_host_pattern

__all__ = ["ManagerSettings", "default_data_dir", "load_settings"]


def default_data_dir() -> Path:
    """Return the default data directory (``$XDG_DATA_HOME/sanctum/manager``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sanctum" / "manager"


class ManagerSettings(BaseSettings):
    """Every knob of the manager; see the field descriptions (also in ``--help`` of serve)."""

    model_config = SettingsConfigDict(
        env_prefix="SANCTUM_MANAGER_", extra="forbid", frozen=True, validate_default=True
    )

    profile: Literal["production", "dev"] = Field(
        "production", description="'dev' relaxes secret handling for local development only."
    )
    data_dir: Path = Field(default_factory=default_data_dir, description="State directory.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite file manager.db in the data directory."
    )
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    tls_cert: Path | None = Field(None, description="PEM server certificate (chain) to serve.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    insecure_http: bool = Field(default=False, description="Serve plain HTTP (tests only).")
    kek_file: Path | None = Field(None, description="File holding the 32-byte KEK (raw or b64).")
    kek_env: str | None = Field(None, description="Name of an env variable holding the KEK (b64).")
    previous_kek_files: tuple[Path, ...] = Field(
        (), description="Older KEKs still accepted for unwrapping during a rotation."
    )
    migrate_on_start: bool = True
    token_ttl_seconds: int = Field(900, ge=30, le=86400)
    task_expiry_seconds: int = Field(7 * 86400, ge=60)
    invitation_ttl_seconds: int = Field(7 * 86400, ge=60)
    login_failure_window_seconds: int = Field(900, ge=1)
    login_max_failures_per_identity: int = Field(5, ge=1)
    login_max_failures_per_address: int = Field(50, ge=1)
    audit_sign_interval_seconds: float = Field(300.0, gt=0)
    bootstrap_admin_email: str = "admin@localhost"
    bootstrap_admin_name: str = "Administrator"
    bootstrap_account_name: str = "default"
    bootstrap_password_file: Path | None = Field(
        None, description="File holding the first administrator's password (else generated)."
    )
    bootstrap_password: SecretStr | None = Field(
        None, description="Inline bootstrap password: only in the 'dev' profile."
    )
    unsafe_fast_password_hashing: bool = Field(
        default=False, description="Weak Argon2 parameters for test suites: 'dev' profile only."
    )
    trust_forwarded_for: bool = Field(
        default=False, description="Take the client address from X-Forwarded-For (behind a proxy)."
    )
    # Attestation and issuance (see ADR 0090).
    public_url: str | None = Field(
        None,
        description="The manager's URL as workloads reach it: token issuer and CRL location.",
    )
    simulation_enabled: bool = Field(
        default=False,
        description="Trust the simulated platform's root CA (no hardware: demos and tests).",
    )
    simulation_accounts: tuple[str, ...] = Field(
        (), description="Account names whose apps may accept simulated evidence ('*': all)."
    )
    simulation_pki_dir: Path | None = Field(
        None, description="Directory of the simulation PKI (default: <data_dir>/simulation)."
    )
    collateral_dir: Path | None = Field(
        None, description="Offline collateral (bundle file or PCS-format folder) for quotes."
    )
    pcs_url: str | None = Field(None, description="Intel PCS or a PCCS to fetch collateral from.")
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    attest_nonce_ttl_seconds: int = Field(120, ge=5, le=3600)
    attest_rate_per_second: float = Field(
        50.0, gt=0, description="Attestation calls accepted per second per source address."
    )
    attest_rate_burst: int = Field(200, ge=1)
    attest_token_ttl_seconds: int = Field(3600, ge=60, le=7 * 86400)
    node_join_token_ttl_seconds: int = Field(86400, ge=60)
    node_recheck_interval_seconds: float = Field(
        3600.0,
        ge=0,
        description="How often active nodes are re-appraised with fresh collateral (0: never; "
        "needs pcs_url or collateral_dir).",
    )
    # Conversion jobs (see ADR 0091).
    launcher_path: Path | None = Field(
        None,
        description="Launcher shipped in converted images: the executable of `make launcher`; "
        "its directory form (PATH.d beside it, or a directory) is what Gramine builds ship "
        "(default: an exec shim without attestation, flagged launcher-exec-shim).",
    )
    jobs_enabled: bool = Field(
        default=True, description="Run a background job worker in this manager process."
    )
    job_lease_seconds: float = Field(120.0, ge=5, description="Lease of a running job.")
    job_max_attempts: int = Field(3, ge=1, le=20, description="Runs of a job before it fails.")
    job_poll_seconds: float = Field(1.0, gt=0, description="How often an idle worker looks.")
    converter_registry_ca: Path | None = Field(
        None, description="CA bundle for registries the converter talks to (default: system)."
    )
    converter_registry_allowlist: tuple[str, ...] | None = Field(
        None,
        description="host[:port] patterns of the registries (and their token and storage hosts) "
        "server-side conversions may contact: 'r.example.com', 'r.example.com:5000', "
        "'*.example.com', 'host:*'. Default: none in production (conversions need it), the "
        "loopback registries in the 'dev' profile (ADR 0076).",
    )
    public_ca_file: Path | None = Field(
        None,
        description="PEM of the CA workloads pin for the manager's TLS endpoint (public_url); "
        "default: the manager's own TLS CA when it serves its own certificate (ADR 0076).",
    )

    @field_validator("public_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            msg = "public_url must be an https:// URL without query or fragment"
            raise ValueError(msg)
        if parts.username is not None or parts.password is not None:
            msg = "public_url must not carry credentials"
            raise ValueError(msg)
        _ = parts.port  # Raises ValueError for a port out of range.
        return value.strip().rstrip("/")

    @field_validator("converter_registry_allowlist")
    @classmethod
    def _registry_patterns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        return tuple(str(parse_host_pattern(pattern)) for pattern in value)

    @field_validator("bootstrap_admin_email")
    @classmethod
    def _email_shape(cls, value: str) -> str:
        value = value.strip().lower()
        if "@" not in value or value.startswith("@") or " " in value:
            msg = "bootstrap_admin_email must look like an email address"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _fail_closed(self) -> ManagerSettings:
        if self.profile != "dev" and self.bootstrap_password is not None:
            msg = (
                "bootstrap_password is only accepted in the 'dev' profile; "
                "use bootstrap_password_file"
            )
            raise ValueError(msg)
        if self.profile != "dev" and self.unsafe_fast_password_hashing:
            msg = "unsafe_fast_password_hashing is only accepted in the 'dev' profile"
            raise ValueError(msg)
        if (self.tls_cert is None) != (self.tls_key is None):
            msg = "tls_cert and tls_key go together"
            raise ValueError(msg)
        if self.kek_file is not None and self.kek_env is not None:
            msg = "choose one KEK source: kek_file or kek_env"
            raise ValueError(msg)
        return self

    def registry_allowlist(self) -> tuple[str, ...]:
        """Return the effective registry allowlist (the profile's default when unset)."""
        if self.converter_registry_allowlist is not None:
            return self.converter_registry_allowlist
        return LOOPBACK_PATTERNS if self.profile == "dev" else ()

    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'manager.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read init arguments, then the environment, then the TOML config file."""
        del dotenv_settings, file_secret_settings
        config = settings_cls.model_config.get("toml_file") or os.environ.get(
            "SANCTUM_MANAGER_CONFIG"
        )
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if isinstance(config, str | Path):
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> ManagerSettings:
    """Build settings from ``config_file`` (TOML), the environment and ``overrides``.

    Args:
        config_file: Optional TOML file; overrides ``SANCTUM_MANAGER_CONFIG``.
        **overrides: Field values that win over every other source (``None`` values are ignored).

    Raises:
        UsageError: The settings are invalid (``settings.invalid``).
    """
    values = {key: value for key, value in overrides.items() if value is not None}
    try:
        if config_file is not None:
            if not config_file.is_file():
                raise UsageError(
                    f"config file {config_file} does not exist", code="settings.invalid"
                )

            class _FromFile(ManagerSettings):
                model_config = SettingsConfigDict(toml_file=config_file)

            return _FromFile(**values)
        return ManagerSettings(**values)
    except ValueError as error:
        raise UsageError(f"invalid manager settings: {error}", code="settings.invalid") from error
