"""The result of DCAP verification: a frozen :class:`VerifiedQuote` and its identity parts.

A :class:`VerifiedQuote` exists only when every check of Intel's algorithm passed; failures are
raised, never returned. It states *facts* (TCB status, advisories, collateral dates, platform facts
from the PCK certificate, QE status and the full enclave or TD identity). Judging them (is debug
allowed, which statuses, which measurements) is policy and lives elsewhere.

``simulated`` comes from the trust anchor the quote was verified under and from nothing in the
quote: evidence from a simulated platform can never pass as hardware evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sanctum.attestation.tcb import TcbStatus

__all__ = [
    "PlatformFacts",
    "QeFacts",
    "SgxEnclaveIdentity",
    "TdIdentity",
    "VerifiedQuote",
]


@dataclass(frozen=True, slots=True)
class SgxEnclaveIdentity:
    """The identity of an SGX enclave, from its report body.

    Attributes:
        mrenclave: MRENCLAVE (32 bytes).
        mrsigner: MRSIGNER (32 bytes).
        isv_prod_id: ISVPRODID.
        isv_svn: ISVSVN.
        attributes: ATTRIBUTES (16 bytes: flags u64 LE, xfrm u64 LE).
        debug: Whether ATTRIBUTES.DEBUG is set (the enclave's memory is readable).
        misc_select: MISCSELECT.
        cpu_svn: CPUSVN (16 bytes).
        config_id: CONFIGID (64 bytes).
        config_svn: CONFIGSVN.
        isv_ext_prod_id: ISVEXTPRODID (16 bytes).
        isv_family_id: ISVFAMILYID (16 bytes).
        report_data: REPORTDATA (64 bytes).
    """

    mrenclave: bytes
    mrsigner: bytes
    isv_prod_id: int
    isv_svn: int
    attributes: bytes
    debug: bool
    misc_select: int
    cpu_svn: bytes
    config_id: bytes
    config_svn: int
    isv_ext_prod_id: bytes
    isv_family_id: bytes
    report_data: bytes


@dataclass(frozen=True, slots=True)
class TdIdentity:
    """The identity of a TDX trust domain, from its TD report.

    Attributes:
        mr_td: MRTD (48 bytes).
        mr_config_id: MRCONFIGID (48).
        mr_owner: MROWNER (48).
        mr_owner_config: MROWNERCONFIG (48).
        rtmr0: RTMR0 (48).
        rtmr1: RTMR1 (48).
        rtmr2: RTMR2 (48).
        rtmr3: RTMR3 (48).
        td_attributes: TDATTRIBUTES (8).
        debug: Whether TDATTRIBUTES.DEBUG (bit 0) is set.
        xfam: XFAM (8).
        mr_seam: MRSEAM of the TDX module (48).
        mr_signer_seam: MRSIGNERSEAM (48, zero for Intel's module).
        seam_attributes: SEAMATTRIBUTES (8).
        tee_tcb_svn: TEE_TCB_SVN (16).
        tee_tcb_svn2: TEE_TCB_SVN2 of a TD report 1.5 (16), else ``None``.
        mr_servicetd: MRSERVICETD of a TD report 1.5 (48), else ``None``.
        report_data: REPORTDATA (64).
    """

    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    td_attributes: bytes
    debug: bool
    xfam: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    tee_tcb_svn: bytes
    tee_tcb_svn2: bytes | None
    mr_servicetd: bytes | None
    report_data: bytes


@dataclass(frozen=True, slots=True)
class PlatformFacts:
    """Facts about the platform, from the PCK certificate's SGX extension and issuer.

    Attributes:
        fmspc: FMSPC (6 bytes).
        pce_id: PCE-ID (2 bytes).
        ppid: PPID (16 bytes).
        sgx_type: ``Standard``, ``Scalable`` or ``ScalableWithIntegrity``.
        ca_type: ``platform`` or ``processor`` (which PCK CA issued the certificate).
        cpu_svn: CPUSVN of the PCK certificate (16 bytes).
        pce_svn: PCESVN of the PCK certificate.
        platform_instance_id: Platform instance ID (platform-CA certificates only).
        dynamic_platform: Configuration flag (platform-CA certificates only).
        cached_keys: Configuration flag (platform-CA certificates only).
        smt_enabled: Configuration flag (platform-CA certificates only).
    """

    fmspc: bytes
    pce_id: bytes
    ppid: bytes
    sgx_type: str
    ca_type: str
    cpu_svn: bytes
    pce_svn: int
    platform_instance_id: bytes | None
    dynamic_platform: bool | None
    cached_keys: bool | None
    smt_enabled: bool | None


@dataclass(frozen=True, slots=True)
class QeFacts:
    """The quoting enclave and its status under the QE identity.

    Attributes:
        status: The QE identity TCB level's status.
        isv_svn: The QE's ISVSVN.
        isv_prod_id: The QE's ISVPRODID.
        mrsigner: The QE's MRSIGNER.
        advisory_ids: The matched QE level's advisory IDs.
        tcb_date: The matched QE level's tcbDate.
        identity_id: ``QE`` or ``TD_QE``.
        tcb_evaluation_data_number: Of the QE identity.
    """

    status: TcbStatus
    isv_svn: int
    isv_prod_id: int
    mrsigner: bytes
    advisory_ids: tuple[str, ...]
    tcb_date: datetime
    identity_id: str
    tcb_evaluation_data_number: int


@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    """A quote that passed every check of Intel's verification algorithm.

    Attributes:
        tee: ``sgx`` or ``tdx``.
        version: Quote format version (3, 4 or 5).
        status: Converged TCB status per Intel (never Revoked: that is refused).
        advisory_ids: Sorted unique Intel security advisory IDs (union of platform, QE and module).
        platform_status: Status of the matched platform TCB level alone.
        tdx_module_status: Status of the matched TDX module level, else ``None``.
        tdx_module_advisory_ids: Advisory IDs of the matched TDX module level.
        tcb_date: Earliest tcbDate of the matched levels.
        tcb_evaluation_data_number: Of the TCB info.
        collateral_expired: True only when verified with ``allow_expired_collateral`` and some
            collateral was outside its validity at the verification time (Intel's flag).
        earliest_issue_date: Earliest issue / notBefore of all collateral used.
        latest_issue_date: Latest issue / notBefore of all collateral used.
        earliest_expiration_date: Earliest nextUpdate / notAfter of all collateral used.
        verified_at: The verification time the caller passed.
        platform: Facts from the PCK certificate.
        qe: The quoting enclave's facts and status.
        identity: The enclave (SGX) or TD (TDX) identity.
        simulated: Whether the trust anchor was a simulated platform's root.
        pck_crl_number: CRL number of the PCK CRL used.
        root_ca_crl_number: CRL number of the root CA CRL used.
    """

    tee: Literal["sgx", "tdx"]
    version: int
    status: TcbStatus
    advisory_ids: tuple[str, ...]
    platform_status: TcbStatus
    tdx_module_status: TcbStatus | None
    tdx_module_advisory_ids: tuple[str, ...]
    tcb_date: datetime
    tcb_evaluation_data_number: int
    collateral_expired: bool
    earliest_issue_date: datetime
    latest_issue_date: datetime
    earliest_expiration_date: datetime
    verified_at: datetime
    platform: PlatformFacts
    qe: QeFacts
    identity: SgxEnclaveIdentity | TdIdentity
    simulated: bool
    pck_crl_number: int
    root_ca_crl_number: int

    @property
    def debug(self) -> bool:
        """Whether the enclave or TD runs in debug mode."""
        return self.identity.debug

    @property
    def report_data(self) -> bytes:
        """The 64 bytes of report data the enclave or TD bound into the quote."""
        return self.identity.report_data

    @property
    def fmspc(self) -> bytes:
        """The platform's FMSPC."""
        return self.platform.fmspc

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready summary (hex lowercase, dates RFC 3339), flat at the top level.

        It carries the keys ``sanctum quote verify --json`` documents: ``tee``, ``version``,
        ``status``, ``advisory_ids``, ``debug``, ``report_data``, ``fmspc``, ``qe_status``, and
        the SGX or TDX identity fields, plus the collateral dates and platform facts.
        """

        def hexed(value: bytes | None) -> str | None:
            return None if value is None else value.hex()

        out: dict[str, object] = {
            "tee": self.tee,
            "version": self.version,
            "status": str(self.status),
            "advisory_ids": list(self.advisory_ids),
            "platform_status": str(self.platform_status),
            "debug": self.debug,
            "report_data": self.report_data.hex(),
            "fmspc": self.platform.fmspc.hex(),
            "pce_id": self.platform.pce_id.hex(),
            "ppid": self.platform.ppid.hex(),
            "sgx_type": self.platform.sgx_type,
            "pck_ca": self.platform.ca_type,
            "dynamic_platform": self.platform.dynamic_platform,
            "cached_keys": self.platform.cached_keys,
            "smt_enabled": self.platform.smt_enabled,
            "qe_status": str(self.qe.status),
            "qe_advisory_ids": list(self.qe.advisory_ids),
            "qe_isv_svn": self.qe.isv_svn,
            "tcb_date": _iso(self.tcb_date),
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
            "collateral_expired": self.collateral_expired,
            "earliest_issue_date": _iso(self.earliest_issue_date),
            "latest_issue_date": _iso(self.latest_issue_date),
            "earliest_expiration_date": _iso(self.earliest_expiration_date),
            "verified_at": _iso(self.verified_at),
            "simulated": self.simulated,
        }
        identity = self.identity
        if isinstance(identity, SgxEnclaveIdentity):
            out.update(
                mrenclave=identity.mrenclave.hex(),
                mrsigner=identity.mrsigner.hex(),
                isv_prod_id=identity.isv_prod_id,
                isv_svn=identity.isv_svn,
                attributes=identity.attributes.hex(),
                misc_select=identity.misc_select,
                config_id=identity.config_id.hex(),
                config_svn=identity.config_svn,
            )
        else:
            out.update(
                mr_td=identity.mr_td.hex(),
                mr_config_id=identity.mr_config_id.hex(),
                mr_owner=identity.mr_owner.hex(),
                mr_owner_config=identity.mr_owner_config.hex(),
                rtmr0=identity.rtmr0.hex(),
                rtmr1=identity.rtmr1.hex(),
                rtmr2=identity.rtmr2.hex(),
                rtmr3=identity.rtmr3.hex(),
                td_attributes=identity.td_attributes.hex(),
                xfam=identity.xfam.hex(),
                mr_seam=identity.mr_seam.hex(),
                mr_signer_seam=identity.mr_signer_seam.hex(),
                seam_attributes=identity.seam_attributes.hex(),
                tee_tcb_svn=identity.tee_tcb_svn.hex(),
                tee_tcb_svn2=hexed(identity.tee_tcb_svn2),
                mr_servicetd=hexed(identity.mr_servicetd),
                tdx_module_status=(
                    None if self.tdx_module_status is None else str(self.tdx_module_status)
                ),
                tdx_module_advisory_ids=list(self.tdx_module_advisory_ids),
            )
        return out


def _iso(value: datetime) -> str:
    """Return an RFC 3339 UTC timestamp with a ``Z`` suffix."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
