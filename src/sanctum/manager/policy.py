"""An app's attestation policy and its pure evaluation against a verified quote.

DCAP verification (:mod:`sanctum.attestation.verify`) establishes *facts*: the quote is genuine,
this is the TCB status, these are the advisories, this is the enclave's identity. Whether those
facts are *acceptable* for a given app is policy, decided here:

- the TCB status, advisory IDs and quoting-enclave status the app accepts;
- debug enclaves and simulated evidence, refused unless an ``unsafe_*`` switch allows them;
- the measurement must be an allowlisted (and not revoked) build of the app;
- the product id and the minimum security version;
- optionally, that the quote came from a registered, active node.

:func:`evaluate` runs *every* check and returns an :class:`Appraisal` listing each one with its
outcome and a dotted reason code. The attestation endpoint refuses on the first failure
(:meth:`Appraisal.raise_if_refused`); the dry-run ``verify-evidence`` endpoint shows the whole
list. Nothing here reads a clock, a database or configuration: the caller passes the verified
quote, the builds and the node facts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sanctum.attestation.result import SgxEnclaveIdentity, TdIdentity, VerifiedQuote
from sanctum.attestation.tcb import TcbStatus
from sanctum.errors import EvidenceError, UsageError
from sanctum.manager.ca.extension import AttestationClaims
from sanctum.manager.tokens import TrustVector, WorkloadResult

__all__ = [
    "DEFAULT_ACCEPTED_TCB_STATUSES",
    "Appraisal",
    "AttestationPolicy",
    "BuildRef",
    "Check",
    "CheckOutcome",
    "PolicyRefusedError",
    "attestation_claims",
    "evaluate",
    "loosening_changes",
    "trust_vector",
    "workload_result",
]

#: TCB statuses an app accepts unless its policy says otherwise.
DEFAULT_ACCEPTED_TCB_STATUSES: Final = frozenset(
    {TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED}
)

#: Order of statuses from best to worst, for "minimum QE status".
_STATUS_RANK: Final[Mapping[TcbStatus, int]] = {
    TcbStatus.UP_TO_DATE: 0,
    TcbStatus.SW_HARDENING_NEEDED: 1,
    TcbStatus.CONFIGURATION_NEEDED: 2,
    TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED: 3,
    TcbStatus.TD_RELAUNCH_ADVISED: 4,
    TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED: 5,
    TcbStatus.OUT_OF_DATE: 6,
    TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED: 7,
    TcbStatus.REVOKED: 8,
}

_POLICY_VERSION: Final = 1
_MAX_U16: Final = 0xFFFF
_MAX_U32: Final = 0xFFFFFFFF

CheckOutcome = Literal["pass", "fail", "skip"]


class PolicyRefusedError(EvidenceError):
    """The verified evidence does not satisfy the app's attestation policy."""

    default_code = "attest.policy_refused"


def _status(value: str) -> TcbStatus:
    """Return the TCB status named ``value``.

    Raises:
        UsageError: ``value`` is not a TCB status name (code ``policy.invalid``).
    """
    try:
        return TcbStatus(value)
    except ValueError as exc:
        names = ", ".join(s.value for s in TcbStatus)
        raise UsageError(
            f"{value!r} is not a TCB status; expected one of {names}", code="policy.invalid"
        ) from exc


@dataclass(frozen=True, slots=True)
class AttestationPolicy:
    """What an app accepts from a verified quote.

    Attributes:
        accepted_tcb_statuses: Converged TCB statuses accepted (default UpToDate and
            SWHardeningNeeded). Revoked is never accepted.
        accepted_advisory_ids: If set, every advisory that applies must be listed here;
            ``None`` puts no such restriction.
        rejected_advisory_ids: Advisories that refuse the quote whenever they apply (checked
            before the accepted list).
        min_qe_status: The worst quoting-enclave status accepted (default UpToDate).
        unsafe_allow_debug: Accept debug enclaves, whose memory the host can read.
        unsafe_allow_simulated: Accept evidence from the simulated platform (no hardware).
        unsafe_allow_expired_collateral: Accept quotes verified with expired collateral.
        require_registered_node: Require the quote's platform to be a registered active node.
        isvprodid: The app's ISVPRODID; ``None`` skips the check (SGX only).
        min_isvsvn: The lowest ISVSVN accepted (SGX only).
        min_tcb_evaluation_data_number: If set, collateral supplied with a request whose TCB
            info has a lower ``tcbEvaluationDataNumber`` is refused (stale collateral).
    """

    accepted_tcb_statuses: frozenset[TcbStatus] = DEFAULT_ACCEPTED_TCB_STATUSES
    accepted_advisory_ids: frozenset[str] | None = None
    rejected_advisory_ids: frozenset[str] = frozenset()
    min_qe_status: TcbStatus = TcbStatus.UP_TO_DATE
    unsafe_allow_debug: bool = False
    unsafe_allow_simulated: bool = False
    unsafe_allow_expired_collateral: bool = False
    require_registered_node: bool = False
    isvprodid: int | None = None
    min_isvsvn: int = 0
    min_tcb_evaluation_data_number: int | None = None

    def __post_init__(self) -> None:
        """Check the policy is usable.

        Raises:
            UsageError: A field is out of range or accepts Revoked (code ``policy.invalid``).
        """
        if TcbStatus.REVOKED in self.accepted_tcb_statuses or (
            self.min_qe_status is TcbStatus.REVOKED
        ):
            raise UsageError("a policy can never accept Revoked", code="policy.invalid")
        if not self.accepted_tcb_statuses:
            raise UsageError("a policy must accept at least one TCB status", code="policy.invalid")
        if self.isvprodid is not None and not 0 <= self.isvprodid <= _MAX_U16:
            raise UsageError("isvprodid must be 0..65535", code="policy.invalid")
        if not 0 <= self.min_isvsvn <= _MAX_U16:
            raise UsageError("min_isvsvn must be 0..65535", code="policy.invalid")
        if self.min_tcb_evaluation_data_number is not None and not (
            0 <= self.min_tcb_evaluation_data_number <= _MAX_U32
        ):
            raise UsageError(
                "min_tcb_evaluation_data_number must be 0..4294967295", code="policy.invalid"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON form (sorted lists), as stored and hashed.

        ``min_tcb_evaluation_data_number`` appears only when set, so the hashes of policies
        that do not use it are unchanged.
        """
        data = self._base_dict()
        if self.min_tcb_evaluation_data_number is not None:
            data["min_tcb_evaluation_data_number"] = self.min_tcb_evaluation_data_number
        return data

    def _base_dict(self) -> dict[str, Any]:
        return {
            "version": _POLICY_VERSION,
            "accepted_tcb_statuses": sorted(s.value for s in self.accepted_tcb_statuses),
            "accepted_advisory_ids": (
                None if self.accepted_advisory_ids is None else sorted(self.accepted_advisory_ids)
            ),
            "rejected_advisory_ids": sorted(self.rejected_advisory_ids),
            "min_qe_status": self.min_qe_status.value,
            "unsafe_allow_debug": self.unsafe_allow_debug,
            "unsafe_allow_simulated": self.unsafe_allow_simulated,
            "unsafe_allow_expired_collateral": self.unsafe_allow_expired_collateral,
            "require_registered_node": self.require_registered_node,
            "isvprodid": self.isvprodid,
            "min_isvsvn": self.min_isvsvn,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttestationPolicy:
        """Return the policy of ``data`` (the :meth:`to_dict` form; missing keys take defaults).

        Raises:
            UsageError: Unknown keys, wrong types or values (code ``policy.invalid``).
        """
        known = {*cls().to_dict(), "min_tcb_evaluation_data_number"}
        unknown = set(data) - known
        if unknown:
            raise UsageError(
                f"unknown policy fields: {', '.join(sorted(unknown))}", code="policy.invalid"
            )
        if data.get("version", _POLICY_VERSION) != _POLICY_VERSION:
            raise UsageError("unsupported policy version", code="policy.invalid")
        kwargs: dict[str, Any] = {}
        for name in ("accepted_tcb_statuses", "accepted_advisory_ids", "rejected_advisory_ids"):
            if name in data and data[name] is not None:
                values = data[name]
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise UsageError(f"{name} must be a list of strings", code="policy.invalid")
                kwargs[name] = frozenset(values)
        if "accepted_tcb_statuses" in kwargs:
            kwargs["accepted_tcb_statuses"] = frozenset(
                _status(v) for v in kwargs["accepted_tcb_statuses"]
            )
        if "min_qe_status" in data:
            kwargs["min_qe_status"] = _status(str(data["min_qe_status"]))
        for name in (
            "unsafe_allow_debug",
            "unsafe_allow_simulated",
            "unsafe_allow_expired_collateral",
            "require_registered_node",
        ):
            if name in data:
                if not isinstance(data[name], bool):
                    raise UsageError(f"{name} must be true or false", code="policy.invalid")
                kwargs[name] = data[name]
        for name in ("isvprodid", "min_isvsvn", "min_tcb_evaluation_data_number"):
            if name in data and data[name] is not None:
                value = data[name]
                if not isinstance(value, int) or isinstance(value, bool):
                    raise UsageError(f"{name} must be an integer", code="policy.invalid")
                kwargs[name] = value
        return cls(**kwargs)

    def canonical_json(self) -> bytes:
        """Return the canonical JSON bytes (sorted keys, no whitespace, UTF-8)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    def policy_hash(self) -> str:
        """Return the SHA-256 (hex) of :meth:`canonical_json`: the policy's identity in tokens."""
        return hashlib.sha256(self.canonical_json()).hexdigest()


def loosening_changes(old: AttestationPolicy, new: AttestationPolicy) -> tuple[str, ...]:
    """Return how ``new`` accepts evidence that ``old`` refuses (empty: not looser).

    A change is loosening when it enables an ``unsafe_*`` switch, accepts more TCB statuses,
    advisories or a worse quoting-enclave status, stops rejecting an advisory, drops the
    registered-node requirement, changes the product id, or lowers a minimum. Such changes
    need an approval task; the others only tighten and may apply directly.

    Returns:
        The names of the loosened fields, sorted.
    """
    loosened: set[str] = set()
    for name in ("unsafe_allow_debug", "unsafe_allow_simulated", "unsafe_allow_expired_collateral"):
        if getattr(new, name) and not getattr(old, name):
            loosened.add(name)
    if not new.accepted_tcb_statuses <= old.accepted_tcb_statuses:
        loosened.add("accepted_tcb_statuses")
    if old.accepted_advisory_ids is not None and (
        new.accepted_advisory_ids is None
        or not new.accepted_advisory_ids <= old.accepted_advisory_ids
    ):
        loosened.add("accepted_advisory_ids")
    if not old.rejected_advisory_ids <= new.rejected_advisory_ids:
        loosened.add("rejected_advisory_ids")
    if _STATUS_RANK[new.min_qe_status] > _STATUS_RANK[old.min_qe_status]:
        loosened.add("min_qe_status")
    if old.require_registered_node and not new.require_registered_node:
        loosened.add("require_registered_node")
    if new.isvprodid != old.isvprodid:
        loosened.add("isvprodid")
    if new.min_isvsvn < old.min_isvsvn:
        loosened.add("min_isvsvn")
    if old.min_tcb_evaluation_data_number is not None and (
        new.min_tcb_evaluation_data_number is None
        or new.min_tcb_evaluation_data_number < old.min_tcb_evaluation_data_number
    ):
        loosened.add("min_tcb_evaluation_data_number")
    return tuple(sorted(loosened))


@dataclass(frozen=True, slots=True)
class BuildRef:
    """A build of the app, as far as appraisal needs it.

    Attributes:
        id: The build's identifier.
        tee: ``sgx`` or ``tdx``.
        measurement: MRENCLAVE (SGX) or MRTD (TDX).
        signer: MRSIGNER (SGX) or MRSIGNERSEAM (TDX); ``None`` does not constrain it.
        rtmrs: TDX RTMR0..3 the build pins (``None`` entries do not constrain).
    """

    id: str
    tee: Literal["sgx", "tdx"]
    measurement: bytes
    signer: bytes | None = None
    rtmrs: tuple[bytes | None, ...] = ()

    @classmethod
    def from_hex(
        cls,
        build_id: str,
        tee: str,
        measurement: str,
        signer: str | None = None,
        rtmrs: Sequence[str | None] = (),
    ) -> BuildRef:
        """Return the build described by hex strings (the way the manager stores builds).

        Raises:
            UsageError: ``tee`` is unknown or a value is not hex (code ``policy.build_invalid``).
        """
        if tee not in {"sgx", "tdx"}:
            raise UsageError(
                f"unknown TEE {tee!r} for build {build_id}", code="policy.build_invalid"
            )
        try:
            return cls(
                id=build_id,
                tee="sgx" if tee == "sgx" else "tdx",
                measurement=bytes.fromhex(measurement),
                signer=None if signer is None else bytes.fromhex(signer),
                rtmrs=tuple(None if r is None else bytes.fromhex(r) for r in rtmrs),
            )
        except ValueError as exc:
            raise UsageError(
                f"build {build_id} has a value that is not hex", code="policy.build_invalid"
            ) from exc

    def matches(self, verified: VerifiedQuote) -> bool:
        """Return whether the quote's identity is this build's."""
        identity = verified.identity
        if self.tee != verified.tee:
            return False
        if isinstance(identity, SgxEnclaveIdentity):
            return self.measurement == identity.mrenclave and (
                self.signer is None or self.signer == identity.mrsigner
            )
        actual = (identity.rtmr0, identity.rtmr1, identity.rtmr2, identity.rtmr3)
        return (
            self.measurement == identity.mr_td
            and (self.signer is None or self.signer == identity.mr_signer_seam)
            and all(
                want is None or want == got for want, got in zip(self.rtmrs, actual, strict=False)
            )
        )


@dataclass(frozen=True, slots=True)
class Check:
    """One policy check and its outcome.

    Attributes:
        name: Stable check name, for example ``tcb.status``.
        outcome: ``pass``, ``fail`` or ``skip`` (not applicable).
        code: The refusal code when it fails, for example ``attest.tcb_status_rejected``.
        reason: One sentence for an operator, true for the outcome.
    """

    name: str
    outcome: CheckOutcome
    code: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """Return the JSON form."""
        return {
            "name": self.name,
            "outcome": self.outcome,
            "code": self.code,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Appraisal:
    """The result of evaluating a verified quote against an app's policy.

    Attributes:
        checks: Every check, in evaluation order.
        policy_hash: The hash of the policy applied.
        build: The allowlisted build that matched, if any.
        vector: The AR4SI trustworthiness vector derived from the checks.
    """

    checks: tuple[Check, ...]
    policy_hash: str
    build: BuildRef | None
    vector: TrustVector = field(default_factory=TrustVector)

    @property
    def accepted(self) -> bool:
        """Whether no check failed."""
        return not self.failures

    @property
    def failures(self) -> tuple[Check, ...]:
        """The failed checks, in evaluation order."""
        return tuple(check for check in self.checks if check.outcome == "fail")

    def with_checks(self, extra: Iterable[Check]) -> Appraisal:
        """Return this appraisal with ``extra`` checks (binding, nonce, domains) appended."""
        return Appraisal((*self.checks, *extra), self.policy_hash, self.build, self.vector)

    def raise_if_refused(self) -> None:
        """Raise the first failure as a refusal.

        Raises:
            PolicyRefusedError: A check failed; ``code`` is the first failure's code and
                ``details["failed"]`` lists every failed check's code.
        """
        failures = self.failures
        if failures:
            first = failures[0]
            raise PolicyRefusedError(
                first.reason,
                code=first.code,
                details={"failed": [check.code for check in failures]},
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON explanation used by ``verify-evidence``."""
        return {
            "accepted": self.accepted,
            "policy_hash": self.policy_hash,
            "build": None if self.build is None else self.build.id,
            "checks": [check.to_dict() for check in self.checks],
            "failed": [check.code for check in self.failures],
            "ear_status": self.vector.status(),
            "trustworthiness_vector": self.vector.to_json(),
        }


def _check(name: str, ok: bool, code: str, passed: str, failed: str) -> Check:
    """Return a pass/fail check with the reason that fits the outcome."""
    return Check(name, "pass" if ok else "fail", code, passed if ok else failed)


def _skip(name: str, code: str, reason: str) -> Check:
    """Return a check that does not apply."""
    return Check(name, "skip", code, reason)


def _advisory_checks(policy: AttestationPolicy, advisories: tuple[str, ...]) -> list[Check]:
    """Return the rejected- and accepted-advisory checks."""
    rejected = sorted(set(advisories) & policy.rejected_advisory_ids)
    checks = [
        _check(
            "tcb.advisories_rejected",
            not rejected,
            "attest.advisory_rejected",
            "no advisory the policy rejects applies",
            f"rejected advisories apply: {', '.join(rejected)}",
        )
    ]
    if policy.accepted_advisory_ids is None:
        checks.append(
            _skip(
                "tcb.advisories_accepted",
                "attest.advisory_not_accepted",
                "the policy does not restrict advisories to an accepted list",
            )
        )
    else:
        unlisted = sorted(set(advisories) - policy.accepted_advisory_ids)
        checks.append(
            _check(
                "tcb.advisories_accepted",
                not unlisted,
                "attest.advisory_not_accepted",
                "every applicable advisory is on the accepted list",
                f"advisories not on the accepted list: {', '.join(unlisted)}",
            )
        )
    return checks


def _build_check(
    verified: VerifiedQuote,
    allowlisted_builds: Sequence[BuildRef],
    revoked_builds: Sequence[BuildRef],
) -> tuple[Check, BuildRef | None]:
    """Return the build check and the matching allowlisted build."""
    revoked = next((b for b in revoked_builds if b.matches(verified)), None)
    if revoked is not None:
        return (
            Check(
                "build.allowlisted",
                "fail",
                "attest.build_revoked",
                f"the measurement is build {revoked.id}, which was revoked",
            ),
            None,
        )
    match = next((b for b in allowlisted_builds if b.matches(verified)), None)
    if match is None:
        return (
            Check(
                "build.allowlisted",
                "fail",
                "attest.build_not_allowlisted",
                "the measurement is not an allowlisted build of this app",
            ),
            None,
        )
    return (
        Check(
            "build.allowlisted",
            "pass",
            "attest.build_not_allowlisted",
            f"the measurement is allowlisted build {match.id}",
        ),
        match,
    )


def _identity_checks(policy: AttestationPolicy, verified: VerifiedQuote) -> list[Check]:
    """Return the ISVPRODID and ISVSVN checks (skipped for TDX)."""
    identity = verified.identity
    if not isinstance(identity, SgxEnclaveIdentity):
        return [
            _skip("enclave.isvprodid", "attest.isvprodid_mismatch", "TDX has no ISVPRODID"),
            _skip("enclave.isvsvn", "attest.isvsvn_too_low", "TDX has no ISVSVN"),
        ]
    checks: list[Check] = []
    if policy.isvprodid is None:
        checks.append(
            _skip("enclave.isvprodid", "attest.isvprodid_mismatch", "the app sets no ISVPRODID")
        )
    else:
        checks.append(
            _check(
                "enclave.isvprodid",
                identity.isv_prod_id == policy.isvprodid,
                "attest.isvprodid_mismatch",
                f"ISVPRODID is {policy.isvprodid}",
                f"ISVPRODID is {identity.isv_prod_id}; the app requires {policy.isvprodid}",
            )
        )
    checks.append(
        _check(
            "enclave.isvsvn",
            identity.isv_svn >= policy.min_isvsvn,
            "attest.isvsvn_too_low",
            f"ISVSVN {identity.isv_svn} is at least {policy.min_isvsvn}",
            f"ISVSVN {identity.isv_svn} is below the minimum {policy.min_isvsvn}",
        )
    )
    return checks


def evaluate(
    policy: AttestationPolicy,
    verified: VerifiedQuote,
    *,
    allowlisted_builds: Sequence[BuildRef],
    revoked_builds: Sequence[BuildRef] = (),
    node_registered: bool | None = None,
) -> Appraisal:
    """Evaluate ``verified`` against ``policy``, running every check.

    Args:
        policy: The app's attestation policy.
        verified: The quote, verified by :mod:`sanctum.attestation.verify`.
        allowlisted_builds: The app's allowlisted builds.
        revoked_builds: The app's revoked builds (a match is reported as revoked).
        node_registered: Whether the quote's platform is a registered active node; ``None``
            when the caller did not look it up.

    Returns:
        The appraisal, with every check and the trust vector. It never raises for a policy
        failure; use :meth:`Appraisal.raise_if_refused`.
    """
    checks: list[Check] = [
        _check(
            "evidence.simulated",
            not verified.simulated or policy.unsafe_allow_simulated,
            "attest.simulated_not_allowed",
            (
                "the evidence is simulated; the policy allows it (unsafe_allow_simulated)"
                if verified.simulated
                else "the evidence comes from hardware"
            ),
            "the evidence comes from the simulated platform, which protects nothing",
        ),
        _check(
            "enclave.debug",
            not verified.debug or policy.unsafe_allow_debug,
            "attest.debug_not_allowed",
            (
                "debug mode is on; the policy allows it (unsafe_allow_debug)"
                if verified.debug
                else "debug mode is off"
            ),
            "the workload runs in debug mode: the host can read its memory",
        ),
        _check(
            "tcb.status",
            verified.status in policy.accepted_tcb_statuses,
            "attest.tcb_status_rejected",
            f"TCB status {verified.status} is accepted",
            f"TCB status {verified.status} is not accepted by the app's policy",
        ),
        *_advisory_checks(policy, verified.advisory_ids),
        _check(
            "qe.status",
            _STATUS_RANK[verified.qe.status] <= _STATUS_RANK[policy.min_qe_status],
            "attest.qe_status_rejected",
            f"quoting enclave status {verified.qe.status} is acceptable",
            f"quoting enclave status {verified.qe.status} is worse than {policy.min_qe_status}",
        ),
        _check(
            "collateral.fresh",
            not verified.collateral_expired or policy.unsafe_allow_expired_collateral,
            "attest.collateral_expired",
            (
                "collateral expired; the policy allows it (unsafe_allow_expired_collateral)"
                if verified.collateral_expired
                else "the collateral was valid at verification time"
            ),
            "the quote was verified with expired collateral",
        ),
    ]
    build_check, build = _build_check(verified, allowlisted_builds, revoked_builds)
    checks.append(build_check)
    checks.extend(_identity_checks(policy, verified))
    if not policy.require_registered_node:
        checks.append(
            _skip("node.registered", "attest.node_not_registered", "the app does not require it")
        )
    else:
        checks.append(
            _check(
                "node.registered",
                node_registered is True,
                "attest.node_not_registered",
                "the quote comes from a registered active node",
                (
                    "the node registration was not checked"
                    if node_registered is None
                    else "the quote does not come from a registered active node"
                ),
            )
        )
    appraisal = Appraisal(tuple(checks), policy.policy_hash(), build)
    return Appraisal(
        appraisal.checks, appraisal.policy_hash, build, trust_vector(verified, appraisal)
    )


def trust_vector(verified: VerifiedQuote, appraisal: Appraisal) -> TrustVector:
    """Return the AR4SI trustworthiness vector of an appraisal (see ADR 0082).

    Args:
        verified: The verified quote.
        appraisal: The checks run on it.

    Returns:
        The vector; simulated evidence is always contraindicated.
    """
    failed = {check.name: check.code for check in appraisal.failures}
    up_to_date = verified.status is TcbStatus.UP_TO_DATE
    if verified.simulated:
        instance, hardware, runtime = 97, 97, 97
    else:
        instance = 2
        hardware = 2 if up_to_date else 32
        runtime = 32 if verified.debug else 2
    config_failures = {
        "enclave.debug",
        "tcb.status",
        "tcb.advisories_rejected",
        "tcb.advisories_accepted",
        "qe.status",
        "collateral.fresh",
    }
    configuration = 96 if config_failures & failed.keys() else (2 if up_to_date else 32)
    if (
        failed.get("build.allowlisted") == "attest.build_revoked"
        or {
            "enclave.isvprodid",
            "enclave.isvsvn",
        }
        & failed.keys()
    ):
        executables = 96
    elif "build.allowlisted" in failed:
        executables = 33
    else:
        executables = 2
    return TrustVector(
        instance_identity=instance,
        configuration=configuration,
        executables=executables,
        hardware=hardware,
        runtime_opaque=runtime,
    )


def attestation_claims(verified: VerifiedQuote) -> AttestationClaims:
    """Return the certificate-extension claims of a verified quote."""
    identity = verified.identity
    if isinstance(identity, SgxEnclaveIdentity):
        return AttestationClaims(
            tee="sgx",
            measurement=identity.mrenclave,
            signer=identity.mrsigner,
            isvprodid=identity.isv_prod_id,
            isvsvn=identity.isv_svn,
            tcb_status=str(verified.status),
            advisory_ids=verified.advisory_ids,
            debug=identity.debug,
            simulated=verified.simulated,
        )
    return AttestationClaims(
        tee="tdx",
        measurement=identity.mr_td,
        signer=identity.mr_signer_seam,
        isvprodid=0,
        isvsvn=0,
        tcb_status=str(verified.status),
        advisory_ids=verified.advisory_ids,
        debug=identity.debug,
        simulated=verified.simulated,
    )


def _measurements(identity: SgxEnclaveIdentity | TdIdentity) -> dict[str, str]:
    """Return the hex measurements a token reports for ``identity``."""
    if isinstance(identity, SgxEnclaveIdentity):
        return {"mrenclave": identity.mrenclave.hex(), "mrsigner": identity.mrsigner.hex()}
    return {
        "mr_td": identity.mr_td.hex(),
        "rtmr0": identity.rtmr0.hex(),
        "rtmr1": identity.rtmr1.hex(),
        "rtmr2": identity.rtmr2.hex(),
        "rtmr3": identity.rtmr3.hex(),
        "mr_signer_seam": identity.mr_signer_seam.hex(),
    }


def workload_result(
    verified: VerifiedQuote,
    appraisal: Appraisal,
    *,
    app: str,
    build: str,
    nonce: bytes | None = None,
    certificate_serial: int | None = None,
) -> WorkloadResult:
    """Return what the attestation result token reports for an appraisal.

    Args:
        verified: The verified quote.
        appraisal: Its appraisal.
        app: The app the workload attested as.
        build: The matched build's id.
        nonce: The challenge nonce.
        certificate_serial: The serial of the certificate issued, if any.

    Returns:
        The token input.
    """
    identity = verified.identity
    sgx = identity if isinstance(identity, SgxEnclaveIdentity) else None
    return WorkloadResult(
        tee=verified.tee,
        measurements=_measurements(identity),
        isvprodid=None if sgx is None else sgx.isv_prod_id,
        isvsvn=None if sgx is None else sgx.isv_svn,
        debug=verified.debug,
        tcb_status=str(verified.status),
        advisory_ids=verified.advisory_ids,
        qe_status=str(verified.qe.status),
        tcb_date=verified.tcb_date,
        collateral_earliest_expiration=verified.earliest_expiration_date,
        collateral_latest_issue=verified.latest_issue_date,
        simulated=verified.simulated,
        app=app,
        build=build,
        policy_hash=appraisal.policy_hash,
        vector=appraisal.vector,
        nonce=nonce,
        certificate_serial=certificate_serial,
    )
