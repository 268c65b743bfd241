"""Collateral for simulated quotes: TCB info v3, QE identity v2, CRLs, and the JSON bundle.

Intel publishes, per platform family (FMSPC), a signed *TCB info* listing TCB levels with their
status (UpToDate, SWHardeningNeeded, OutOfDate, ...) and advisory IDs, and a signed *QE identity*
describing the genuine Quoting Enclave. This module writes both in Intel's exact JSON shape (TCB
info v3 for SGX and TDX with TDX module identities; QE identity v2 with id ``QE`` or ``TD_QE``),
built deterministically as compact text and signed over that exact text with the simulation
TCB signing key, and wraps everything with the CRLs into the bundle format of
``tests/vectors/dcap/cases/*.collateral.json`` (the field names of dcap-qvl's
``QuoteCollateralV3``).

The TCB levels are laid out around the simulated platform's own TCB so that a *dial*
(:class:`TcbDial`) decides which status a verifier computes, without any special case in the
verifier: for example ``out_of_date`` publishes a level above the platform's, marked UpToDate,
and the platform's own level marked OutOfDate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from sanctum.platforms.simulated.identity import SgxIdentity
from sanctum.platforms.simulated.pki import CLOCK_SKEW_ALLOWANCE, PckCaKind, SimulationPki

__all__ = [
    "ADVISORY_IDS",
    "QE_IDENTITY",
    "TD_QE_IDENTITY",
    "CollateralDates",
    "PlatformTcb",
    "TcbDial",
    "build_collateral_bundle",
    "build_qe_identity",
    "build_tcb_info",
    "format_date",
    "signed_json",
]

Tee = Literal["sgx", "tdx"]


class TcbDial(StrEnum):
    """Which TCB status the published TCB info gives the simulated platform.

    ``not_supported`` publishes only levels above the platform's (verifiers refuse: TCB not
    supported); ``revoked`` marks the platform's level Revoked (verifiers refuse).
    """

    UP_TO_DATE = "up_to_date"
    SW_HARDENING_NEEDED = "sw_hardening_needed"
    CONFIGURATION_NEEDED = "configuration_needed"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "configuration_and_sw_hardening_needed"
    OUT_OF_DATE = "out_of_date"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "out_of_date_configuration_needed"
    NOT_SUPPORTED = "not_supported"
    REVOKED = "revoked"


#: Intel's ``tcbStatus`` string for each dial that names a status.
_STATUS: Final[dict[TcbDial, str]] = {
    TcbDial.UP_TO_DATE: "UpToDate",
    TcbDial.SW_HARDENING_NEEDED: "SWHardeningNeeded",
    TcbDial.CONFIGURATION_NEEDED: "ConfigurationNeeded",
    TcbDial.CONFIGURATION_AND_SW_HARDENING_NEEDED: "ConfigurationAndSWHardeningNeeded",
    TcbDial.OUT_OF_DATE: "OutOfDate",
    TcbDial.OUT_OF_DATE_CONFIGURATION_NEEDED: "OutOfDateConfigurationNeeded",
    TcbDial.REVOKED: "Revoked",
}

#: Advisory IDs published with the platform's level for each dial (simulated IDs, chosen so
#: they can never be mistaken for Intel's ``INTEL-SA-nnnnn``).
ADVISORY_IDS: Final[dict[TcbDial, tuple[str, ...]]] = {
    TcbDial.UP_TO_DATE: (),
    TcbDial.SW_HARDENING_NEEDED: ("SANCTUM-SIM-SA-00001",),
    TcbDial.CONFIGURATION_NEEDED: ("SANCTUM-SIM-SA-00002",),
    TcbDial.CONFIGURATION_AND_SW_HARDENING_NEEDED: (
        "SANCTUM-SIM-SA-00001",
        "SANCTUM-SIM-SA-00002",
    ),
    TcbDial.OUT_OF_DATE: ("SANCTUM-SIM-SA-00003", "SANCTUM-SIM-SA-00004"),
    TcbDial.OUT_OF_DATE_CONFIGURATION_NEEDED: ("SANCTUM-SIM-SA-00002", "SANCTUM-SIM-SA-00003"),
    TcbDial.NOT_SUPPORTED: (),
    TcbDial.REVOKED: ("SANCTUM-SIM-SA-00005",),
}
# Advisories of the old level published below the platform's in every TCB info.
_OLD_LEVEL_ADVISORIES: Final = ("SANCTUM-SIM-SA-00003", "SANCTUM-SIM-SA-00004")

# Attributes of the simulated QEs: INIT | MODE64BIT | PROVISIONKEY, like Intel's production QEs.
_QE_ATTRIBUTES: Final = bytes.fromhex("1500000000000000e700000000000000")

#: The simulated SGX Quoting Enclave (QE identity id ``QE``, product ID 1 as Intel's).
QE_IDENTITY: Final = SgxIdentity(
    mr_enclave=hashlib.sha256(b"Sanctum Simulated SGX QE").digest(),
    mr_signer=hashlib.sha256(b"Sanctum Simulated SGX QE signer").digest(),
    isv_prod_id=1,
    isv_svn=8,
    attributes=_QE_ATTRIBUTES,
)
#: The simulated TD Quoting Enclave (QE identity id ``TD_QE``, product ID 2 as Intel's).
TD_QE_IDENTITY: Final = SgxIdentity(
    mr_enclave=hashlib.sha256(b"Sanctum Simulated TD QE").digest(),
    mr_signer=hashlib.sha256(b"Sanctum Simulated TD QE signer").digest(),
    isv_prod_id=2,
    isv_svn=4,
    attributes=_QE_ATTRIBUTES,
)


def format_date(moment: datetime) -> str:
    """Return ``moment`` as Intel writes dates in collateral: ``2025-06-19T10:16:03Z``.

    Raises:
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None:
        msg = "times must be timezone-aware"
        raise ValueError(msg)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _compact(document: object) -> str:
    """Serialise JSON compactly, in insertion order, as Intel's PCS does."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True)


def signed_json(pki: SimulationPki, name: str, body: str) -> str:
    """Return the PCS response form ``{"<name>":<body>,"signature":"<hex r||s>"}``.

    The signature covers the exact text of ``body``.
    """
    signature = pki.sign_collateral(body.encode()).hex()
    return f'{{"{name}":{body},"signature":"{signature}"}}'


@dataclass(frozen=True, slots=True)
class CollateralDates:
    """Issue and next-update times of collateral (TCB info, QE identity, CRLs).

    Attributes:
        issue: ``issueDate`` / CRL ``thisUpdate``.
        next_update: ``nextUpdate`` / CRL ``nextUpdate``.
    """

    issue: datetime
    next_update: datetime

    @classmethod
    def fresh(cls, now: datetime, *, lifetime: timedelta = timedelta(days=30)) -> CollateralDates:
        """Return dates valid from ``now`` for ``lifetime`` (Intel uses 30 days).

        The issue date is backdated by :data:`~sanctum.platforms.simulated.pki.CLOCK_SKEW_ALLOWANCE`
        so a verifier whose clock is slightly behind still accepts it.
        """
        start = now.astimezone(UTC).replace(microsecond=0)
        return cls(issue=start - CLOCK_SKEW_ALLOWANCE, next_update=start + lifetime)

    @classmethod
    def expired(cls, now: datetime) -> CollateralDates:
        """Return dates issued 60 days before ``now`` whose next update passed 30 days ago."""
        start = now.astimezone(UTC).replace(microsecond=0) - timedelta(days=60)
        return cls(issue=start, next_update=start + timedelta(days=30))


@dataclass(frozen=True, slots=True)
class PlatformTcb:
    """The TCB a simulated platform runs at (what its PCK certificate and quotes report).

    Attributes:
        cpu_svn: CPUSVN; its 16 bytes are also the SGX TCB component SVNs.
        pce_svn: PCE security version.
        tee_tcb_svn: TDX TEE_TCB_SVN (16 bytes; [0] module minor SVN, [1] module major
            version); only used by TDX platforms.
        tee_tcb_svn2: TEE_TCB_SVN of the running TDX module, reported by TD report 1.5 (quote
            v5); defaults to ``tee_tcb_svn`` (no module update since the TD launched).
    """

    cpu_svn: bytes = bytes([11, 11, 2, 2, 255, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    pce_svn: int = 13
    tee_tcb_svn: bytes = bytes([3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    tee_tcb_svn2: bytes | None = None

    def __post_init__(self) -> None:
        """Check sizes and ranges.

        Raises:
            ValueError: A field is out of range; ``pce_svn`` must leave room for a higher level.
        """
        if len(self.cpu_svn) != 16 or len(self.tee_tcb_svn) != 16:
            msg = "cpu_svn and tee_tcb_svn must be 16 bytes"
            raise ValueError(msg)
        if self.tee_tcb_svn2 is not None and len(self.tee_tcb_svn2) != 16:
            msg = "tee_tcb_svn2 must be 16 bytes"
            raise ValueError(msg)
        if not 0 <= self.pce_svn < 0xFFFF:
            msg = "pce_svn must be in 0..65534"
            raise ValueError(msg)


def _components(svns: bytes) -> list[dict[str, int]]:
    """Return a TCB info component list (``[{"svn": n}, ...]``)."""
    return [{"svn": svn} for svn in svns]


def _level(
    *,
    tee: Tee,
    cpu_svn: bytes,
    pce_svn: int,
    tee_tcb_svn: bytes,
    date: datetime,
    status: str,
    advisories: Sequence[str],
) -> dict[str, Any]:
    """Return one TCB level in Intel's v3 shape."""
    tcb: dict[str, Any] = {"sgxtcbcomponents": _components(cpu_svn), "pcesvn": pce_svn}
    if tee == "tdx":
        tcb["tdxtcbcomponents"] = _components(tee_tcb_svn)
    level: dict[str, Any] = {"tcb": tcb, "tcbDate": format_date(date), "tcbStatus": status}
    if advisories:
        level["advisoryIDs"] = list(advisories)
    return level


def tcb_levels(*, tee: Tee, tcb: PlatformTcb, dial: TcbDial, now: datetime) -> list[dict[str, Any]]:
    """Return the TCB levels that give a platform at ``tcb`` the status named by ``dial``.

    Levels are listed in Intel's order (highest first): a level above the platform's (its PCE
    SVN plus one) when the platform is not the newest, for an out-of-date TDX platform whose
    running module (``tee_tcb_svn2``) was updated an UpToDate level at that module's SVNs (a TD
    relaunch is then advised), the platform's own level, and an old all-zero OutOfDate level.
    """
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    recent, old = day - timedelta(days=30), day - timedelta(days=365)
    higher = _level(
        tee=tee,
        cpu_svn=tcb.cpu_svn,
        pce_svn=tcb.pce_svn + 1,
        tee_tcb_svn=tcb.tee_tcb_svn,
        date=recent,
        status="UpToDate",
        advisories=(),
    )
    levels: list[dict[str, Any]] = []
    behind = dial in {TcbDial.OUT_OF_DATE, TcbDial.OUT_OF_DATE_CONFIGURATION_NEEDED}
    if behind or dial in {TcbDial.REVOKED, TcbDial.NOT_SUPPORTED}:
        levels.append(higher)
    updated = tcb.tee_tcb_svn2
    if tee == "tdx" and behind and updated is not None and updated != tcb.tee_tcb_svn:
        # The running TDX module (TEE_TCB_SVN2, TD report 1.5) is newer than the one the TD
        # launched with: publish it as UpToDate so a verifier advises a TD relaunch.
        levels.append(
            _level(
                tee=tee,
                cpu_svn=tcb.cpu_svn,
                pce_svn=tcb.pce_svn,
                tee_tcb_svn=updated,
                date=recent,
                status="UpToDate",
                advisories=(),
            )
        )
    if dial is not TcbDial.NOT_SUPPORTED:
        levels.append(
            _level(
                tee=tee,
                cpu_svn=tcb.cpu_svn,
                pce_svn=tcb.pce_svn,
                tee_tcb_svn=tcb.tee_tcb_svn,
                date=recent if dial is not TcbDial.OUT_OF_DATE else old,
                status=_STATUS[dial],
                advisories=ADVISORY_IDS[dial],
            )
        )
        if any(tcb.cpu_svn) or tcb.pce_svn or (tee == "tdx" and any(tcb.tee_tcb_svn)):
            levels.append(
                _level(
                    tee=tee,
                    cpu_svn=bytes(16),
                    pce_svn=0,
                    tee_tcb_svn=bytes(16),
                    date=old - timedelta(days=365),
                    status="OutOfDate",
                    advisories=_OLD_LEVEL_ADVISORIES,
                )
            )
    return levels


def build_tcb_info(
    *,
    tee: Tee,
    fmspc: bytes,
    pce_id: bytes,
    tcb: PlatformTcb,
    dial: TcbDial,
    dates: CollateralDates,
    tdx_module_mr_signer: bytes = bytes(48),
    tcb_evaluation_data_number: int = 1,
) -> str:
    """Return the text of a TCB info v3 object (the part the signature covers).

    For TDX the module identity ``TDX_<major>`` (major = ``tee_tcb_svn[1]``) is published with
    one UpToDate level at the platform's module SVN, and ``tdxModule`` describes the module
    signer for quotes whose major version is zero.

    Args:
        tee: ``sgx`` or ``tdx``.
        fmspc: 6-byte FMSPC, as in the PCK certificate.
        pce_id: 2-byte PCE ID, as in the PCK certificate.
        tcb: The platform's TCB.
        dial: Which status the platform's level gets.
        dates: Issue and next-update dates.
        tdx_module_mr_signer: MRSIGNERSEAM of the TDX module (48 bytes, zero for Intel's).
        tcb_evaluation_data_number: The ``tcbEvaluationDataNumber``.
    """
    document: dict[str, Any] = {
        "id": tee.upper(),
        "version": 3,
        "issueDate": format_date(dates.issue),
        "nextUpdate": format_date(dates.next_update),
        "fmspc": fmspc.hex().upper(),
        "pceId": pce_id.hex().upper(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": tcb_evaluation_data_number,
    }
    if tee == "tdx":
        module = {
            "mrsigner": tdx_module_mr_signer.hex().upper(),
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
        }
        document["tdxModule"] = module
        module_levels = [
            {
                "tcb": {"isvsvn": tcb.tee_tcb_svn[0]},
                "tcbDate": format_date(dates.issue.replace(hour=0, minute=0, second=0)),
                "tcbStatus": "UpToDate",
            }
        ]
        document["tdxModuleIdentities"] = [
            {"id": f"TDX_{tcb.tee_tcb_svn[1]:02X}", **module, "tcbLevels": module_levels}
        ]
    document["tcbLevels"] = tcb_levels(tee=tee, tcb=tcb, dial=dial, now=dates.issue)
    return _compact(document)


def build_qe_identity(
    *,
    tee: Tee,
    qe: SgxIdentity,
    dates: CollateralDates,
    tcb_evaluation_data_number: int = 1,
    qe_status: Literal["UpToDate", "OutOfDate", "Revoked"] = "UpToDate",
) -> str:
    """Return the text of a QE identity v2 object (``QE`` for SGX, ``TD_QE`` for TDX).

    Args:
        tee: ``sgx`` or ``tdx``.
        qe: Identity of the simulated QE (MRSIGNER, product ID, SVN).
        dates: Issue and next-update dates.
        tcb_evaluation_data_number: The ``tcbEvaluationDataNumber``.
        qe_status: Status of the QE's own SVN; anything but UpToDate also publishes a higher,
            UpToDate level so the QE is genuinely behind.
    """
    day = dates.issue.astimezone(UTC).replace(hour=0, minute=0, second=0)
    levels: list[dict[str, Any]] = []
    if qe_status != "UpToDate":
        levels.append(
            {
                "tcb": {"isvsvn": qe.isv_svn + 1},
                "tcbDate": format_date(day),
                "tcbStatus": "UpToDate",
            }
        )
    own: dict[str, Any] = {
        "tcb": {"isvsvn": qe.isv_svn},
        "tcbDate": format_date(day - timedelta(days=30)),
        "tcbStatus": qe_status,
    }
    if qe_status != "UpToDate":
        own["advisoryIDs"] = ["SANCTUM-SIM-SA-00006"]
    levels.append(own)
    document: dict[str, Any] = {
        "id": "QE" if tee == "sgx" else "TD_QE",
        "version": 2,
        "issueDate": format_date(dates.issue),
        "nextUpdate": format_date(dates.next_update),
        "tcbEvaluationDataNumber": tcb_evaluation_data_number,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": qe.mr_signer.hex().upper(),
        "isvprodid": qe.isv_prod_id,
        "tcbLevels": levels,
    }
    return _compact(document)


def build_collateral_bundle(
    pki: SimulationPki,
    *,
    pck_ca: PckCaKind,
    tcb_info: str,
    qe_identity: str,
    crl_dates: CollateralDates,
    revoked_pck_serials: Iterable[int] = (),
    revoked_ca_serials: Iterable[int] = (),
    pck_certificate_chain: str | None = None,
) -> bytes:
    """Sign TCB info and QE identity and return the JSON collateral bundle.

    The bundle has the field names of dcap-qvl's ``QuoteCollateralV3`` (issuer chains in PEM,
    CRLs and signatures in hex), exactly like the real bundles in ``tests/vectors/dcap/cases``.

    Args:
        pki: The simulation PKI that signs everything.
        pck_ca: Which PCK CA's CRL to include (the one that issued the quote's PCK).
        tcb_info: TCB info text from :func:`build_tcb_info` (signed as is).
        qe_identity: QE identity text from :func:`build_qe_identity` (signed as is).
        crl_dates: ``thisUpdate`` / ``nextUpdate`` of both CRLs.
        revoked_pck_serials: PCK leaf serials listed in the PCK CRL.
        revoked_ca_serials: Intermediate serials listed in the root CA CRL.
        pck_certificate_chain: PEM PCK chain (leaf, CA, root) for quotes whose certification
            data does not embed it (types 1 to 3); added as dcap-qvl's optional field.
    """
    bundle: dict[str, str] = {
        "pck_crl_issuer_chain": pki.pck_crl_issuer_chain_pem(pck_ca),
        "root_ca_crl": pki.root_crl(
            this_update=crl_dates.issue,
            next_update=crl_dates.next_update,
            revoked_serials=revoked_ca_serials,
        ).hex(),
        "pck_crl": pki.pck_crl(
            pck_ca,
            this_update=crl_dates.issue,
            next_update=crl_dates.next_update,
            revoked_serials=revoked_pck_serials,
        ).hex(),
        "tcb_info_issuer_chain": pki.tcb_signing_chain_pem(),
        "tcb_info": tcb_info,
        "tcb_info_signature": pki.sign_collateral(tcb_info.encode()).hex(),
        "qe_identity_issuer_chain": pki.tcb_signing_chain_pem(),
        "qe_identity": qe_identity,
        "qe_identity_signature": pki.sign_collateral(qe_identity.encode()).hex(),
    }
    if pck_certificate_chain is not None:
        bundle["pck_certificate_chain"] = pck_certificate_chain
    return json.dumps(bundle, indent=2).encode() + b"\n"
