"""Signed reports of an attested workload about its encrypted directories (ADR 0116).

After it opens an encrypted directory, the workload tells the manager the index epoch it reached
(``mounted``) and, after re-encrypting under a rotated key, that the rotation is done
(``rotated``). The manager keeps the highest epoch per directory key and sends it back as the
directory's ``min_epoch`` in later attestation responses, so a host that restores an older copy
of the whole directory is caught at the next start.

A report carries no user credential: it is signed by the workload's attested key (the key of
its CSR, which only the attested instance holds) and carries the certificate the manager issued
for that key. The manager checks the certificate against its own record (issued by the
account's CA, active, unexpired) and the signature over the exact payload bytes, then takes
the app, build and instance from its record of the certificate, never from the payload.

The signed bytes are a fixed label followed by the JSON payload as sent (no canonicalisation
to get wrong). The payload carries its signing time for the audit log only: a replayed report
changes nothing (the floor is a maximum, and a ``rotated`` report is accepted only for the
newest key version), so no freshness check ties the manager to the workload host's clock.
"""

from __future__ import annotations

from typing import Literal, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from sanctum.errors import EvidenceError, UsageError
from sanctum.protocol.messages import B64Bytes

__all__ = [
    "DIR_REPORT_LABEL",
    "DirReport",
    "DirReportAnswer",
    "SignedDirReport",
    "sign_dir_report",
    "verify_dir_report_signature",
]

#: Domain separation: these signatures can never be mistaken for any other signed message.
DIR_REPORT_LABEL = b"sanctum encrypted-dir report v1\x00"
#: Largest epoch accepted (the index stores it in 64 bits).
MAX_EPOCH = 2**63 - 1


class DirReport(BaseModel):
    """What the workload reports about one encrypted directory.

    Attributes:
        event: ``mounted`` (the directory was opened and its index advanced to ``epoch``) or
            ``rotated`` (the directory is re-encrypted under key ``version``; older versions
            may be retired).
        path: The directory path inside the workload.
        version: The key version that opens the directory now.
        epoch: The directory's index epoch after the event.
        issued_at: When the workload signed the report.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: Literal["mounted", "rotated"]
    path: str = Field(min_length=2, max_length=500)
    version: int = Field(ge=1, le=2**31 - 1)
    epoch: int = Field(ge=0, le=MAX_EPOCH)
    issued_at: AwareDatetime

    @model_validator(mode="after")
    def _path_is_absolute(self) -> Self:
        """Check that ``path`` is absolute, without ``..`` or NUL."""
        if not self.path.startswith("/") or ".." in self.path.split("/") or "\x00" in self.path:
            msg = "path must be absolute, without '..' components or NUL bytes"
            raise ValueError(msg)
        return self


class SignedDirReport(BaseModel):
    """Body of ``POST /v1/workloads/encrypted-dirs/report``.

    Attributes:
        certificate: The PEM certificate the manager issued for the workload's attested key.
        payload: The JSON of a :class:`DirReport`, exactly as signed.
        signature: The signature of :data:`DIR_REPORT_LABEL` ``+ payload`` by the attested key
            (ECDSA with SHA-256 for EC keys, RSA-PSS with SHA-256 for RSA keys).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    certificate: str = Field(min_length=64, max_length=16384)
    payload: B64Bytes = Field(min_length=2, max_length=4096)
    signature: B64Bytes = Field(min_length=8, max_length=1024)

    def report(self) -> DirReport:
        """Return the parsed payload (call only after the signature was verified).

        Raises:
            EvidenceError: The payload is not a valid report (``dir_report.malformed``).
        """
        try:
            return DirReport.model_validate_json(self.payload)
        except ValidationError as error:
            raise EvidenceError(
                f"the directory report is malformed: {error.error_count()} errors",
                code="dir_report.malformed",
            ) from None


class DirReportAnswer(BaseModel):
    """The manager's answer to a report.

    Attributes:
        path: The directory.
        version: The key version reported.
        min_epoch: The rollback floor now recorded (never lower than before).
        retired: Key versions retired by this report (``rotated`` only).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    path: str
    version: int
    min_epoch: int
    retired: list[int] = Field(default_factory=list)


def _signed_bytes(payload: bytes) -> bytes:
    return DIR_REPORT_LABEL + payload


def sign_dir_report(
    private_key: PrivateKeyTypes, certificate_pem: str, report: DirReport
) -> SignedDirReport:
    """Sign ``report`` with the attested key and attach its certificate.

    Raises:
        UsageError: The key type cannot sign reports (``dir_report.key_unsupported``).
    """
    payload = report.model_dump_json().encode("utf-8")
    data = _signed_bytes(payload)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        signature = private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(private_key, rsa.RSAPrivateKey):
        signature = private_key.sign(data, _pss(), hashes.SHA256())
    else:
        raise UsageError(
            f"{type(private_key).__name__} keys cannot sign directory reports",
            code="dir_report.key_unsupported",
        )
    return SignedDirReport(certificate=certificate_pem, payload=payload, signature=signature)


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _signature_valid(public_key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
    """Return whether ``signature`` of ``data`` verifies (other key types never do)."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, _pss(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify_dir_report_signature(public_key: PublicKeyTypes, signed: SignedDirReport) -> DirReport:
    """Verify the signature of ``signed`` with ``public_key`` and return the report.

    Args:
        public_key: The certified workload key (from the manager's record of the certificate).
        signed: The report as received.

    Returns:
        The verified report.

    Raises:
        EvidenceError: A bad signature (``dir_report.signature_invalid``) or a malformed
            payload (``dir_report.malformed``).
    """
    if not _signature_valid(public_key, signed.signature, _signed_bytes(signed.payload)):
        raise EvidenceError(
            "the directory report's signature does not verify with the certified key",
            code="dir_report.signature_invalid",
        )
    return signed.report()
