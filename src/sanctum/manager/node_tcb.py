"""Re-appraising a node's platform against fresh collateral: the pure core of the node re-check.

A node joins with a verified quote (:mod:`sanctum.manager.services.nodes`). Intel later
publishes new TCB info (a TCB recovery moves levels to OutOfDate, a level is Revoked, a PCK
certificate is revoked), and a platform that was acceptable may no longer be. This module
answers "is this node still acceptable?" without the node, in three pure steps:

1. :func:`platform_tcb_from_quote` reads what TCB evaluation needs from the node's verified
   quote and its PCK certificate (FMSPC, PCE ID, the 16 SGX TCB component SVNs, PCESVN, the
   QE's ISVSVN, TDX TEE_TCB_SVNs, the PCK certificate's serial and issuer) as a frozen
   :class:`NodePlatformTcb`; the manager records it at join (its JSON form).
2. :func:`verify_node_collateral` checks fresh collateral's signatures under a trust anchor
   (root CA CRL, PCK CRL and its issuer chain, the TCB signing chain, the signatures over the
   exact TCB info and QE identity text) and every validity window at ``now``, with the very
   verification quote verification uses
   (:func:`sanctum.attestation.collateral_verify.verify_collateral`).
3. :func:`reappraise_node` evaluates the recorded TCB against that collateral with the
   attestation package's evaluation (:func:`~sanctum.attestation.tcb.evaluate_sgx_tcb`,
   :func:`~sanctum.attestation.tcb.evaluate_tdx_tcb`: Intel's QVL rules, not re-implemented
   here), checks PCK revocation, and applies the node policy.

The split of failures matters: collateral that cannot be trusted or does not belong to the
platform raises (the re-check cannot judge; the node is left alone and the problem reported),
while a platform that *is* judged and found wanting is a returned :class:`NodeReappraisal` with
``acceptable=False`` and a dotted code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sanctum.attestation.chain import Validity, VerifiedCrl, load_pem_chain, verify_pck_chain
from sanctum.attestation.collateral import Collateral
from sanctum.attestation.collateral_verify import (
    ValidityWindow,
    VerifiedCollateral,
    judge_validity,
    verify_collateral,
)
from sanctum.attestation.pck import parse_pck_extensions
from sanctum.attestation.quote import CertificationType, Quote, TdReportBody, TeeType, parse_quote
from sanctum.attestation.tcb import (
    TcbEvaluation,
    TcbStatus,
    evaluate_sgx_tcb,
    evaluate_tdx_tcb,
    match_qe_level,
)
from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import EvidenceError, UnavailableError, UsageError
from sanctum.manager.policy import DEFAULT_ACCEPTED_TCB_STATUSES

__all__ = [
    "NodePlatformTcb",
    "NodePolicy",
    "NodeReappraisal",
    "platform_tcb_from_quote",
    "reappraise_node",
    "refuse_collateral_rollback",
    "verify_node_collateral",
]

_COMPONENTS: Final = 16
_JSON_VERSION: Final = 1


def _malformed(message: str) -> EvidenceError:
    return EvidenceError(
        f"the recorded platform TCB is malformed: {message}", code="node.tcb_malformed"
    )


def _hex(value: object) -> bytes:
    """Return the bytes of canonical lowercase hex text.

    Raises:
        TypeError: ``value`` is not text.
        ValueError: It is not canonical lowercase hex.
    """
    if not isinstance(value, str):
        msg = f"{value!r} is not hex text"
        raise TypeError(msg)
    data = bytes.fromhex(value)
    if data.hex() != value:
        msg = f"{value!r} is not canonical lowercase hex"
        raise ValueError(msg)
    return data


def _serial(value: object) -> int:
    """Return a serial number written as lowercase hex without leading zeros.

    Raises:
        TypeError: ``value`` is not text.
        ValueError: It is not that form.
    """
    if not isinstance(value, str):
        msg = f"{value!r} is not hex text"
        raise TypeError(msg)
    number = int(value, 16)
    if format(number, "x") != value:
        msg = f"{value!r} is not a canonical serial number"
        raise ValueError(msg)
    return number


def _int(value: object) -> int:
    """Return ``value`` if it is a JSON integer (not a boolean or text).

    Raises:
        TypeError: It is not.
    """
    if type(value) is not int:
        msg = f"{value!r} is not an integer"
        raise TypeError(msg)
    return value


@dataclass(frozen=True, slots=True)
class NodePlatformTcb:
    """What a node's platform reported at join, as far as TCB evaluation needs it.

    Attributes:
        tee: ``sgx`` or ``tdx``.
        fmspc: The FMSPC (6 bytes) from the PCK certificate.
        pce_id: The PCE ID (2 bytes).
        ppid: The PPID (16 bytes).
        ca_type: ``platform`` or ``processor``: the PCK CA that issued the PCK certificate.
        cpu_svn_components: The 16 SGX TCB component SVNs of the PCK certificate.
        pce_svn: The PCE SVN of the PCK certificate.
        qe_isv_svn: The quoting enclave's ISVSVN.
        tee_tcb_svn: TDX TEE_TCB_SVN (16 bytes), else ``None``.
        tee_tcb_svn2: TDX TEE_TCB_SVN2 of a TD report 1.5 (16 bytes), else ``None``.
        pck_serial: Serial number of the PCK certificate (for the PCK CRL).
        pck_issuer: DER of the PCK certificate's issuer name.
        pck_ca_serial: Serial number of the PCK CA certificate (for the root CA CRL).
    """

    tee: Literal["sgx", "tdx"]
    fmspc: bytes
    pce_id: bytes
    ppid: bytes
    ca_type: str
    cpu_svn_components: tuple[int, ...]
    pce_svn: int
    qe_isv_svn: int
    tee_tcb_svn: bytes | None
    tee_tcb_svn2: bytes | None
    pck_serial: int
    pck_issuer: bytes
    pck_ca_serial: int

    def __post_init__(self) -> None:
        """Check the shapes a TCB evaluation relies on.

        Raises:
            EvidenceError: A field has the wrong size or range (``node.tcb_malformed``).
        """
        if self.tee not in ("sgx", "tdx"):
            raise _malformed(f"unknown TEE {self.tee!r}")
        if self.ca_type not in ("platform", "processor"):
            raise _malformed(f"unknown PCK CA type {self.ca_type!r}")
        if len(self.fmspc) != 6 or len(self.pce_id) != 2:
            raise _malformed("the FMSPC is 6 bytes and the PCE ID 2")
        if len(self.cpu_svn_components) != _COMPONENTS or not all(
            type(svn) is int and 0 <= svn < 256 for svn in self.cpu_svn_components
        ):
            raise _malformed("there must be 16 SGX TCB component SVNs in 0..255")
        if not 0 <= self.pce_svn <= 0xFFFF or not 0 <= self.qe_isv_svn <= 0xFFFF:
            raise _malformed("the PCE SVN and QE ISVSVN are 16-bit")
        if (self.tee == "tdx") != (self.tee_tcb_svn is not None):
            raise _malformed("a TDX platform (and only a TDX platform) has a TEE_TCB_SVN")
        for svn in (self.tee_tcb_svn, self.tee_tcb_svn2):
            if svn is not None and len(svn) != _COMPONENTS:
                raise _malformed("a TEE_TCB_SVN is 16 bytes")
        if self.tee_tcb_svn2 is not None and self.tee_tcb_svn is None:
            raise _malformed("a TEE_TCB_SVN2 needs a TEE_TCB_SVN")

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form stored with the node (hex for bytes, serials as hex text)."""
        return {
            "version": _JSON_VERSION,
            "tee": self.tee,
            "fmspc": self.fmspc.hex(),
            "pce_id": self.pce_id.hex(),
            "ppid": self.ppid.hex(),
            "ca_type": self.ca_type,
            "cpu_svn_components": list(self.cpu_svn_components),
            "pce_svn": self.pce_svn,
            "qe_isv_svn": self.qe_isv_svn,
            "tee_tcb_svn": None if self.tee_tcb_svn is None else self.tee_tcb_svn.hex(),
            "tee_tcb_svn2": None if self.tee_tcb_svn2 is None else self.tee_tcb_svn2.hex(),
            "pck_serial": format(self.pck_serial, "x"),
            "pck_issuer": self.pck_issuer.hex(),
            "pck_ca_serial": format(self.pck_ca_serial, "x"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodePlatformTcb:
        """Read the JSON form of :meth:`to_json`.

        Raises:
            EvidenceError: Missing or malformed fields, or an unknown version
                (``node.tcb_malformed``).
        """
        version = data.get("version")
        if type(version) is not int or version != _JSON_VERSION:
            raise _malformed(f"unknown version {version!r}")
        try:
            svn = data["tee_tcb_svn"]
            svn2 = data["tee_tcb_svn2"]
            components = data["cpu_svn_components"]
            if not isinstance(components, list):
                raise _malformed("the component SVNs are not a list")
            return cls(
                tee=data["tee"],
                fmspc=_hex(data["fmspc"]),
                pce_id=_hex(data["pce_id"]),
                ppid=_hex(data["ppid"]),
                ca_type=data["ca_type"],
                cpu_svn_components=tuple(components),
                pce_svn=_int(data["pce_svn"]),
                qe_isv_svn=_int(data["qe_isv_svn"]),
                tee_tcb_svn=None if svn is None else _hex(svn),
                tee_tcb_svn2=None if svn2 is None else _hex(svn2),
                pck_serial=_serial(data["pck_serial"]),
                pck_issuer=_hex(data["pck_issuer"]),
                pck_ca_serial=_serial(data["pck_ca_serial"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise _malformed(f"{type(error).__name__}: {error}") from error


def platform_tcb_from_quote(
    quote: bytes | Quote, anchor: TrustAnchor, *, pck_chain_pem: str | bytes | None = None
) -> NodePlatformTcb:
    """Read a node's platform TCB from its quote and PCK certificate chain.

    The chain is the one embedded in the quote (certification data type 5), else
    ``pck_chain_pem`` (types 1 to 3, whose chain comes with the collateral); it is checked
    under ``anchor`` (structure and signatures, not time: a node's PCK certificate is judged
    at join), so the SVNs read from it are Intel's (or the simulation's), not the caller's.
    For types 1 to 3 the quote's own CPUSVN, PCESVN and PCE ID must match the certificate.

    Raises:
        EvidenceError: The quote is malformed, no chain is available
            (``quote.pck_chain_missing``), the chain does not verify (``pck.chain_invalid``),
            or it is not this platform's certificate (``pck.mismatch``).
    """
    parsed = parse_quote(bytes(quote)) if isinstance(quote, bytes | bytearray) else quote
    certification = parsed.signature.qe.certification
    if certification.cert_type == CertificationType.PCK_CERT_CHAIN:
        pem: str | bytes = b"".join(certification.pck_chain_pem())
    elif pck_chain_pem is not None:
        pem = pck_chain_pem
    else:
        raise EvidenceError(
            f"the quote (certification data type {certification.cert_type}) carries no PCK "
            "certificate chain and none was supplied",
            code="quote.pck_chain_missing",
        )
    chain = verify_pck_chain(
        load_pem_chain(pem, code="pck.chain_invalid", what="PCK certificate chain"), anchor
    )
    extensions = parse_pck_extensions(chain.leaf)
    if certification.cert_type != CertificationType.PCK_CERT_CHAIN:
        identity = certification.pck_identity()
        if (
            identity.cpu_svn != extensions.tcb.cpu_svn
            or identity.pce_svn != extensions.tcb.pce_svn
            or identity.pce_id != extensions.pce_id
            or (not identity.ppid_encrypted and identity.ppid != extensions.ppid)
        ):
            raise EvidenceError(
                "the supplied PCK certificate is not the one of the quote's platform TCB",
                code="pck.mismatch",
            )
    body = parsed.body
    is_tdx = parsed.header.tee_type == TeeType.TDX
    tee_tcb_svn = body.tee_tcb_svn if isinstance(body, TdReportBody) else None
    tee_tcb_svn2 = body.tee_tcb_svn2 if isinstance(body, TdReportBody) else None
    if is_tdx and tee_tcb_svn is None:
        raise EvidenceError("a TDX quote must carry a TD report", code="quote.malformed")
    return NodePlatformTcb(
        tee="tdx" if is_tdx else "sgx",
        fmspc=extensions.fmspc,
        pce_id=extensions.pce_id,
        ppid=extensions.ppid,
        ca_type=chain.ca_type,
        cpu_svn_components=tuple(extensions.tcb.cpu_svn_components),
        pce_svn=extensions.tcb.pce_svn,
        qe_isv_svn=parsed.signature.qe.qe_report.isv_svn,
        tee_tcb_svn=tee_tcb_svn,
        tee_tcb_svn2=tee_tcb_svn2,
        pck_serial=chain.leaf.serial_number,
        pck_issuer=chain.leaf.issuer.public_bytes(),
        pck_ca_serial=chain.intermediate.serial_number,
    )


def _aware(now: datetime) -> datetime:
    """Return ``now`` in UTC.

    Raises:
        UsageError: ``now`` is naive (``usage.invalid_time``).
    """
    if now.tzinfo is None:
        raise UsageError("the re-check time must be timezone-aware", code="usage.invalid_time")
    return now.astimezone(UTC)


def verify_node_collateral(
    collateral: Collateral, anchor: TrustAnchor, *, now: datetime
) -> VerifiedCollateral:
    """Verify fresh collateral under ``anchor`` and judge its validity at ``now``.

    The attestation package's collateral verification
    (:func:`~sanctum.attestation.collateral_verify.verify_collateral`, the one quote
    verification uses): the root CA CRL (signed by the anchor), the PCK CRL issuer chain and
    the PCK CRL, the TCB signing chain of the TCB info and the QE identity (ending in the
    anchor, not revoked), their signatures over the exact signed text, and every validity
    window (CRLs, certificates, ``issueDate``/``nextUpdate``). A revoked PCK CA is not refused
    here: :func:`reappraise_node` judges it per node (``pck.ca_revoked``).

    Raises:
        EvidenceError: A signature, chain or CRL does not verify (``crl.invalid``,
            ``tcb_info.*``, ``qe_identity.*``), or something is outside its
            validity at ``now`` (``collateral.expired``).
        UsageError: ``now`` is naive.
    """
    # Safe here: reappraise_node judges the node's own PCK CA against the root CA CRL.
    return verify_collateral(collateral, anchor, now=_aware(now), unsafe_report_revoked_pck_ca=True)


@dataclass(frozen=True, slots=True)
class NodePolicy:
    """What a node's platform must satisfy to stay active.

    Attributes:
        accepted_tcb_statuses: TCB statuses a node may have (the apps' default:
            ``UpToDate`` and ``SWHardeningNeeded``).
        allow_simulated: Whether simulated evidence is acceptable for the node's account (the
            manager's simulation settings decide; never on by default).
    """

    accepted_tcb_statuses: frozenset[TcbStatus] = DEFAULT_ACCEPTED_TCB_STATUSES
    allow_simulated: bool = False


@dataclass(frozen=True, slots=True)
class NodeReappraisal:
    """The outcome of re-appraising a node with fresh collateral.

    Attributes:
        status: The converged TCB status per Intel, or ``None`` when no TCB level covers the
            platform any more (``tcb.not_supported``).
        advisory_ids: Sorted unique advisory IDs of the matched levels.
        tcb_date: The earliest tcbDate of the matched levels, or ``None``.
        tcb_evaluation_data_number: Of the TCB info used.
        qe_tcb_evaluation_data_number: Of the QE identity used.
        acceptable: Whether the node still satisfies the node policy.
        code: Why not (``node.tcb_status_rejected``, ``tcb.not_supported``, ``pck.revoked``,
            ``pck.ca_revoked``, ``attest.simulated_not_allowed``), else ``None``.
        reason: An operator-facing sentence, else ``None``.
    """

    status: TcbStatus | None
    advisory_ids: tuple[str, ...]
    tcb_date: datetime | None
    tcb_evaluation_data_number: int
    qe_tcb_evaluation_data_number: int
    acceptable: bool
    code: str | None
    reason: str | None


def _revoked(crl: VerifiedCrl, serial: int, issuer: bytes) -> bool:
    """Whether ``crl`` (of ``issuer``) lists ``serial``.

    Raises:
        EvidenceError: An entry of the CRL cannot be decoded (``crl.invalid``).
    """
    if crl.issuer_der != issuer:
        return False
    try:
        entry = crl.crl.get_revoked_certificate_by_serial_number(serial)
    except ValueError as error:
        raise EvidenceError(f"the {crl.what} has a malformed entry", code="crl.invalid") from error
    return entry is not None


def _check_applies(platform: NodePlatformTcb, collateral: VerifiedCollateral) -> None:
    """Check the collateral is for the node's TEE, FMSPC, PCE ID and PCK CA.

    Raises:
        EvidenceError: ``tcb_info.tee_mismatch``, ``qe_identity.tee_mismatch``,
            ``tcb_info.fmspc_mismatch``, ``tcb_info.pceid_mismatch`` or ``crl.invalid``.
    """
    tcb_info = collateral.tcb_info
    wanted = "TDX" if platform.tee == "tdx" else "SGX"
    if tcb_info.id != wanted or (platform.tee == "tdx" and tcb_info.version < 3):
        raise EvidenceError(
            f"the TCB info is for {tcb_info.id} but the node is {wanted}",
            code="tcb_info.tee_mismatch",
        )
    if collateral.qe_identity.id != ("TD_QE" if platform.tee == "tdx" else "QE"):
        raise EvidenceError(
            f"the QE identity {collateral.qe_identity.id!r} is not for {wanted}",
            code="qe_identity.tee_mismatch",
        )
    if tcb_info.fmspc != platform.fmspc:
        raise EvidenceError(
            f"the TCB info is for FMSPC {tcb_info.fmspc.hex().upper()}, the node's is "
            f"{platform.fmspc.hex().upper()}",
            code="tcb_info.fmspc_mismatch",
        )
    if tcb_info.pce_id != platform.pce_id:
        raise EvidenceError(
            f"the TCB info is for PCE ID {tcb_info.pce_id.hex()}, the node's is "
            f"{platform.pce_id.hex()}",
            code="tcb_info.pceid_mismatch",
        )
    if collateral.pck_crl.issuer_der != platform.pck_issuer:
        raise EvidenceError(
            "the PCK CRL is not the one of the CA that issued the node's PCK certificate",
            code="crl.invalid",
        )


def _evaluate(platform: NodePlatformTcb, collateral: VerifiedCollateral) -> TcbEvaluation:
    """Evaluate the platform's TCB with the attestation package (Intel's rules).

    Raises:
        EvidenceError: No level covers the platform or its QE (``tcb.not_supported``).
    """
    qe_level = match_qe_level(collateral.qe_identity, platform.qe_isv_svn)
    if platform.tee_tcb_svn is not None:
        return evaluate_tdx_tcb(
            collateral.tcb_info,
            cpu_svn_components=platform.cpu_svn_components,
            pce_svn=platform.pce_svn,
            tee_tcb_svn=platform.tee_tcb_svn,
            qe_level=qe_level,
            tee_tcb_svn2=platform.tee_tcb_svn2,
        )
    return evaluate_sgx_tcb(
        collateral.tcb_info,
        cpu_svn_components=platform.cpu_svn_components,
        pce_svn=platform.pce_svn,
        qe_level=qe_level,
    )


def refuse_collateral_rollback(
    tcb_evaluation_data_number: int,
    qe_tcb_evaluation_data_number: int,
    *,
    highest_tcb: int | None,
    highest_qe: int | None,
) -> None:
    """Refuse collateral older than what a node was already judged with.

    Intel raises ``tcbEvaluationDataNumber`` with every TCB recovery, in the TCB info and
    (separately) in the QE identity. A node records the highest number of each it was judged
    with (at join and by each re-check); collateral with a lower one is an older issue (a
    lagging or replaying PCCS, or old collateral sent with a join) that could hide a recovery.

    Args:
        tcb_evaluation_data_number: The TCB info's number.
        qe_tcb_evaluation_data_number: The QE identity's number.
        highest_tcb: The highest TCB info number the node was judged with, if any.
        highest_qe: The highest QE identity number the node was judged with, if any.

    Raises:
        UnavailableError: Either is lower than recorded (``collateral.rollback``, with the
            part, the number and the highest seen in ``details``): retry with current
            collateral.
    """
    for part, number, highest in (
        ("TCB info", tcb_evaluation_data_number, highest_tcb),
        ("QE identity", qe_tcb_evaluation_data_number, highest_qe),
    ):
        if highest is not None and number < highest:
            raise UnavailableError(
                f"the {part} has tcbEvaluationDataNumber {number}, older than the {highest} "
                "the node was already judged with; it could hide a TCB recovery",
                code="collateral.rollback",
                hint=f"the collateral is an older issue of the {part}; check the PCCS or "
                "fetch current collateral",
                details={
                    "part": "tcb_info" if part == "TCB info" else "qe_identity",
                    "tcb_evaluation_data_number": number,
                    "highest_seen": highest,
                },
            )


def reappraise_node(
    platform: NodePlatformTcb,
    collateral: VerifiedCollateral,
    policy: NodePolicy,
    *,
    now: datetime,
    highest_tcb_evaluation_data_number: int | None = None,
    highest_qe_tcb_evaluation_data_number: int | None = None,
) -> NodeReappraisal:
    """Re-evaluate a node's recorded platform TCB against fresh collateral and the node policy.

    The first failing rule decides the code: simulated evidence the policy does not allow,
    a revoked PCK CA or PCK certificate, a TCB no level covers, then the TCB status.

    Args:
        platform: The node's platform TCB as recorded at join.
        collateral: Verified collateral (:func:`verify_node_collateral`).
        policy: The node policy.
        now: The time of the re-appraisal (timezone-aware).
        highest_tcb_evaluation_data_number: The highest ``tcbEvaluationDataNumber`` the node
            was already judged with, if any. Intel raises the number with every TCB recovery,
            so collateral with a lower one is an older issue (a lagging or replaying PCCS) that
            could hide a recovery: it is refused, and the node is not judged with it.
        highest_qe_tcb_evaluation_data_number: The same for the QE identity (Intel numbers
            it separately; an older QE identity could hide a QE TCB recovery).

    Raises:
        EvidenceError: The collateral is not for this platform (TEE, FMSPC, PCE ID, PCK CA:
            ``tcb_info.*_mismatch``, ``qe_identity.tee_mismatch``, ``crl.invalid``) or was not
            judged current at ``now`` (``collateral.expired``): the node cannot be judged.
        UnavailableError: The TCB info or the QE identity is older than the node was already
            judged with (``collateral.rollback``): retry when the source serves current
            collateral.
        UsageError: ``now`` is naive.
    """
    now = _aware(now)
    tcb_info, identity = collateral.tcb_info, collateral.qe_identity
    refuse_collateral_rollback(
        tcb_info.tcb_evaluation_data_number,
        identity.tcb_evaluation_data_number,
        highest_tcb=highest_tcb_evaluation_data_number,
        highest_qe=highest_qe_tcb_evaluation_data_number,
    )
    judge_validity(
        (
            ValidityWindow.of(
                (
                    collateral.root_crl.validity,
                    collateral.pck_crl.validity,
                    Validity("TCB info", tcb_info.issue_date, tcb_info.next_update),
                    Validity("QE identity", identity.issue_date, identity.next_update),
                )
            ),
        ),
        now,
    )
    _check_applies(platform, collateral)
    number = tcb_info.tcb_evaluation_data_number
    qe_number = identity.tcb_evaluation_data_number
    try:
        evaluation: TcbEvaluation | None = _evaluate(platform, collateral)
        unsupported: EvidenceError | None = None
    except EvidenceError as error:
        if error.code != "tcb.not_supported":
            raise
        evaluation, unsupported = None, error
    status = None if evaluation is None else evaluation.status
    advisories = () if evaluation is None else evaluation.advisory_ids
    tcb_date = None if evaluation is None else evaluation.tcb_date

    def outcome(code: str | None, reason: str | None) -> NodeReappraisal:
        return NodeReappraisal(
            status=status,
            advisory_ids=advisories,
            tcb_date=tcb_date,
            tcb_evaluation_data_number=number,
            qe_tcb_evaluation_data_number=qe_number,
            acceptable=code is None,
            code=code,
            reason=reason,
        )

    if collateral.simulated and not policy.allow_simulated:
        return outcome(
            "attest.simulated_not_allowed",
            "the node's evidence is simulated and simulation is not allowed for its account",
        )
    if _revoked(collateral.root_crl, platform.pck_ca_serial, collateral.root_crl.issuer_der):
        return outcome("pck.ca_revoked", "the node's PCK CA certificate is revoked")
    if _revoked(collateral.pck_crl, platform.pck_serial, platform.pck_issuer):
        return outcome("pck.revoked", "the node's PCK certificate is revoked by the PCK CRL")
    if unsupported is not None:
        return outcome("tcb.not_supported", unsupported.message)
    if status not in policy.accepted_tcb_statuses:
        return outcome("node.tcb_status_rejected", f"TCB status {status} is not accepted for nodes")
    return outcome(None, None)
