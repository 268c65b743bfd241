"""Verifying DCAP collateral on its own: CRLs, chains, signatures and validity windows.

Collateral (root CA CRL, PCK CRL and its issuer chain, TCB info, QE identity and their TCB
signing chains) is judged the same way whether a quote comes with it
(:mod:`sanctum.attestation.verify`, steps 3 to 5 and 12) or a node recorded at join is
re-appraised against fresh collateral without a quote (:mod:`sanctum.manager.node_tcb`). This
module is that one judgement, shared by both:

- :func:`verify_collateral_signatures` checks every signature under a trust anchor, time-free,
  so the quote verifier can cache its result by the collateral's content hash and judge the
  time on each call;
- :func:`judge_validity` judges validity windows at ``now`` (Intel's QVL rule: expired when
  ``now > notAfter``), refusing or reporting;
- :func:`verify_collateral` is both: signatures, then every window at ``now``.

Everything is pure: bytes, a trust anchor and the time in, a frozen
:class:`VerifiedCollateral` out, or an :class:`~sanctum.errors.EvidenceError` with a stable
dotted code (``crl.invalid``, ``pck.ca_revoked``, ``tcb_info.*``, ``qe_identity.*``,
``collateral.expired``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sanctum.attestation.chain import (
    Validity,
    VerifiedCrl,
    cert_point,
    load_pem_chain,
    verify_crl,
    verify_pck_crl_issuer_chain,
    verify_raw_signature,
    verify_tcb_signing_chain,
)
from sanctum.attestation.collateral import Collateral
from sanctum.attestation.tcb import EnclaveIdentity, TcbInfo, parse_qe_identity, parse_tcb_info
from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import EvidenceError, UsageError

__all__ = [
    "ValidityWindow",
    "VerifiedCollateral",
    "judge_validity",
    "verify_collateral",
    "verify_collateral_signatures",
]


def _fail(code: str, message: str, *, hint: str | None = None) -> EvidenceError:
    """Return an evidence error with ``code``."""
    return EvidenceError(message, code=code, hint=hint)


@dataclass(frozen=True, slots=True)
class ValidityWindow:
    """The intersection of validity windows, kept with the windows for error messages.

    Attributes:
        windows: The individual windows (CRLs, certificates, issueDate to nextUpdate).
        earliest_issue: The earliest start.
        latest_issue: The latest start (the intersection's start).
        earliest_expiry: The earliest end (the intersection's end).
    """

    windows: tuple[Validity, ...]
    earliest_issue: datetime
    latest_issue: datetime
    earliest_expiry: datetime

    @classmethod
    def of(cls, windows: Sequence[Validity]) -> ValidityWindow:
        """Aggregate ``windows`` (at least one)."""
        return cls(
            tuple(windows),
            min(v.not_before for v in windows),
            max(v.not_before for v in windows),
            min(v.not_after for v in windows),
        )


@dataclass(frozen=True, slots=True)
class VerifiedCollateral:
    """Collateral whose every signature verified under one trust anchor.

    Attributes:
        tcb_info: The parsed TCB info.
        qe_identity: The parsed QE identity.
        root_crl: The verified root CA CRL.
        pck_crl: The verified PCK CRL (of a Platform or Processor CA).
        pck_crl_issuer_key: Public point of the PCK CRL's issuer (the PCK CA).
        pck_crl_issuer_revoked: Whether the root CA CRL revokes the PCK CRL's issuer (only
            ever true when the caller asked for it to be reported rather than refused:
            ``unsafe_report_revoked_pck_ca``).
        validity: Every validity window of the collateral (CRLs, chains, TCB info, QE
            identity); :func:`verify_collateral_signatures` does not judge them,
            :func:`verify_collateral` does.
        simulated: Whether the trust anchor was a simulated platform's root.
    """

    tcb_info: TcbInfo
    qe_identity: EnclaveIdentity
    root_crl: VerifiedCrl
    pck_crl: VerifiedCrl
    pck_crl_issuer_key: bytes
    pck_crl_issuer_revoked: bool
    validity: ValidityWindow
    simulated: bool


def _verify_signed(
    text: bytes,
    signature: bytes,
    chain_pem: str,
    anchor: TrustAnchor,
    root_crl: VerifiedCrl,
    *,
    family: str,
    what: str,
    verified_chains: dict[str, tuple[x509.Certificate, tuple[Validity, ...]]],
) -> tuple[Validity, ...]:
    """Verify a TCB signing chain and the signature over the exact signed ``text``.

    ``verified_chains`` remembers chains already verified in this call by their exact PEM text
    (TCB info and QE identity normally share one), so each is checked once.

    Returns:
        The validity windows of the signing chain.

    Raises:
        EvidenceError: ``<family>.chain_invalid``, ``<family>.signature_invalid`` or
            ``<family>.signing_cert_revoked``.
    """
    chain_code = f"{family}.chain_invalid"
    known = verified_chains.get(chain_pem)
    if known is None:
        certs = load_pem_chain(chain_pem, code=chain_code, what=f"{what} issuer chain")
        known = verify_tcb_signing_chain(
            certs, anchor, code=chain_code, what=f"{what} issuer chain"
        )
        verified_chains[chain_pem] = known
    signing, validity = known
    if root_crl.is_revoked(signing):
        raise _fail(f"{family}.signing_cert_revoked", f"the {what} signing certificate is revoked")
    key = signing.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise _fail(chain_code, f"the {what} signing key is not an ECDSA key")
    verify_raw_signature(
        key, signature, text, code=f"{family}.signature_invalid", what=f"{what} signature"
    )
    return validity


def verify_collateral_signatures(
    collateral: Collateral,
    trust_anchor: TrustAnchor,
    *,
    unsafe_report_revoked_pck_ca: bool = False,
) -> VerifiedCollateral:
    """Verify every signature of ``collateral`` under ``trust_anchor`` (time-free).

    Checked, in this order (the first failure decides the code): the root CA CRL (signed by
    the anchor), the PCK CRL issuer chain (every signature), the PCK CRL issuer's revocation by
    the root CA CRL, the PCK CRL, then for the TCB info and the QE identity their TCB signing
    chain (ending in the anchor, not revoked) and the signature over the exact signed text.
    Validity windows are collected, not judged (:func:`judge_validity`).

    Args:
        collateral: The collateral.
        trust_anchor: The root every chain and CRL must end in.
        unsafe_report_revoked_pck_ca: Accept collateral whose PCK CRL issuer (a PCK CA) is
            revoked by the root CA CRL and report the fact in
            :attr:`VerifiedCollateral.pck_crl_issuer_revoked`, instead of refusing it
            (``pck.ca_revoked``) as a quote verification does. Only for a caller that then
            judges each platform's PCK CA itself against :attr:`VerifiedCollateral.root_crl`
            (the node re-check flags those nodes; a node join's quote verification refuses
            them); anyone else would accept what a quote verification refuses.

    Raises:
        EvidenceError: ``crl.invalid``, ``pck.ca_revoked``, ``tcb_info.*`` or
            ``qe_identity.*``.
    """
    return _verify_collateral_signatures(
        collateral,
        trust_anchor,
        verified_pck_ca_der=None,
        report_revoked_pck_ca=unsafe_report_revoked_pck_ca,
    )


def _verify_collateral_signatures(
    collateral: Collateral,
    trust_anchor: TrustAnchor,
    *,
    verified_pck_ca_der: bytes | None,
    report_revoked_pck_ca: bool,
) -> VerifiedCollateral:
    """:func:`verify_collateral_signatures`, for the quote verifier (its one other caller).

    Contract (private to the attestation package; :mod:`sanctum.attestation.verify` is the
    only caller besides this module): ``verified_pck_ca_der`` is ``None`` or the DER of the PCK
    CA certificate that the *same* quote verification already verified under ``trust_anchor``
    (the quote's PCK chain). A PCK CRL issuer byte-identical to it has a valid signature and is
    not checked twice (the quote path's speed); any other issuer is checked in full. Passing
    DER that was not verified under ``trust_anchor`` would skip a signature check, which is why
    the public function takes no such argument.

    Raises:
        EvidenceError: As :func:`verify_collateral_signatures`.
    """
    root_crl = verify_crl(collateral.root_ca_crl, trust_anchor.certificate, "root CA CRL")
    crl_chain = load_pem_chain(
        collateral.pck_crl_issuer_chain, code="crl.invalid", what="PCK CRL issuer chain"
    )
    crl_issuer, crl_chain_validity = verify_pck_crl_issuer_chain(
        crl_chain,
        trust_anchor,
        verified_ca_ders=frozenset()
        if verified_pck_ca_der is None
        else frozenset({verified_pck_ca_der}),
    )
    issuer_revoked = root_crl.is_revoked(crl_issuer)
    if issuer_revoked and not report_revoked_pck_ca:
        raise _fail("pck.ca_revoked", "the PCK CRL issuer (PCK CA) is revoked by the root CA CRL")
    pck_crl = verify_crl(collateral.pck_crl, crl_issuer, "PCK CRL")
    verified_chains: dict[str, tuple[x509.Certificate, tuple[Validity, ...]]] = {}
    tcb_chain_validity = _verify_signed(
        collateral.tcb_info_text,
        collateral.tcb_info_signature,
        collateral.tcb_info_issuer_chain,
        trust_anchor,
        root_crl,
        family="tcb_info",
        what="TCB info",
        verified_chains=verified_chains,
    )
    tcb_info = parse_tcb_info(collateral.tcb_info_text)
    qe_chain_validity = _verify_signed(
        collateral.qe_identity_text,
        collateral.qe_identity_signature,
        collateral.qe_identity_issuer_chain,
        trust_anchor,
        root_crl,
        family="qe_identity",
        what="QE identity",
        verified_chains=verified_chains,
    )
    qe_identity = parse_qe_identity(collateral.qe_identity_text)
    validity = (
        root_crl.validity,
        pck_crl.validity,
        *crl_chain_validity,
        *tcb_chain_validity,
        Validity("TCB info", tcb_info.issue_date, tcb_info.next_update),
        *qe_chain_validity,
        Validity("QE identity", qe_identity.issue_date, qe_identity.next_update),
    )
    return VerifiedCollateral(
        tcb_info=tcb_info,
        qe_identity=qe_identity,
        root_crl=root_crl,
        pck_crl=pck_crl,
        pck_crl_issuer_key=cert_point(crl_issuer),
        pck_crl_issuer_revoked=issuer_revoked,
        validity=ValidityWindow.of(validity),
        simulated=trust_anchor.simulated,
    )


def judge_validity(
    parts: Sequence[ValidityWindow], now: datetime, *, allow_expired: bool = False
) -> tuple[bool, datetime, datetime, datetime]:
    """Judge every validity window at ``now`` (QVL: expired when ``now > notAfter``).

    ``now`` must be timezone-aware and in UTC (the callers normalise it once).

    Returns:
        ``(expired, earliest_issue, latest_issue, earliest_expiry)`` over all ``parts``.

    Raises:
        EvidenceError: Some window does not contain ``now`` and ``allow_expired`` is false
            (``collateral.expired``).
    """
    earliest_issue = min(part.earliest_issue for part in parts)
    latest_issue = max(part.latest_issue for part in parts)
    earliest_expiry = min(part.earliest_expiry for part in parts)
    # Every window contains `now` exactly when the intersection does.
    expired = not latest_issue <= now <= earliest_expiry
    if expired and not allow_expired:
        for window in (w for part in parts for w in part.windows):
            if now > window.not_after or now < window.not_before:
                state = "expired" if now > window.not_after else "is not yet valid"
                raise _fail(
                    "collateral.expired",
                    f"the {window.what} {state} at {now:%Y-%m-%dT%H:%M:%SZ} (valid "
                    f"{window.not_before:%Y-%m-%dT%H:%M:%SZ} to "
                    f"{window.not_after:%Y-%m-%dT%H:%M:%SZ})",
                    hint="fetch fresh collateral from Intel PCS or the PCCS",
                )
    return expired, earliest_issue, latest_issue, earliest_expiry


def verify_collateral(
    collateral: Collateral,
    trust_anchor: TrustAnchor,
    *,
    now: datetime,
    unsafe_report_revoked_pck_ca: bool = False,
) -> VerifiedCollateral:
    """Verify ``collateral`` under ``trust_anchor`` and require it to be current at ``now``.

    :func:`verify_collateral_signatures`, then every validity window (CRLs, certificates,
    ``issueDate``/``nextUpdate``) must contain ``now``.

    Args:
        collateral: The collateral.
        trust_anchor: The root every chain and CRL must end in.
        now: The verification time (timezone-aware).
        unsafe_report_revoked_pck_ca: As for :func:`verify_collateral_signatures`.

    Raises:
        EvidenceError: A signature, chain or CRL does not verify (``crl.invalid``,
            ``pck.ca_revoked``, ``tcb_info.*``, ``qe_identity.*``), or something is outside
            its validity at ``now`` (``collateral.expired``).
        UsageError: ``now`` is naive (``usage.invalid_time``).
    """
    if now.tzinfo is None:
        raise UsageError("the verification time must be timezone-aware", code="usage.invalid_time")
    verified = verify_collateral_signatures(
        collateral, trust_anchor, unsafe_report_revoked_pck_ca=unsafe_report_revoked_pck_ca
    )
    judge_validity((verified.validity,), now.astimezone(UTC))
    return verified
