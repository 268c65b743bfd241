"""DCAP quote verification, step by step as Intel's Quote Verification Library does it.

:func:`verify_quote` takes the quote, the collateral, a trust anchor and the verification time,
and returns a frozen :class:`~sanctum.attestation.result.VerifiedQuote` or raises an
:class:`~sanctum.errors.EvidenceError` with a stable dotted code. The steps (dcap.md §2.4):

1. parse the quote (structure, version, key type, TEE, certification data) and require Intel's
   QE vendor ID;
2. check the PCK chain: exactly Intel's shape and names, ending in the trust anchor;
3. check the CRLs (issuer, extensions, signature), that the PCK CRL was issued by the PCK
   certificate's issuer, and that neither the PCK certificate, its CA nor the TCB signing
   certificate is revoked;
4. check the TCB info and 5. the QE identity: TCB signing chain, signature over the exact signed
   text, version and id;
6. match the TCB info to the platform: TEE, FMSPC and PCE-ID;
7. TDX: check the TDX module identity (MRSIGNERSEAM, SEAM attributes);
8. verify the QE report signature with the PCK key, and 9. the QE report data binding
   (SHA-256 of attestation key ‖ QE auth data);
10. check the QE report against the QE identity (MISCSELECT, ATTRIBUTES, MRSIGNER, ISVPRODID);
11. verify the quote signature with the attestation key;
12. check every validity window against ``now`` (refused by default; with
    ``allow_expired_collateral`` Intel's "collateral expired" flag is set instead);
13. evaluate the TCB per Intel (levels, convergence, advisory union, TD relaunch); TCB not
    supported and Revoked are refusals.

:class:`Verifier` runs the same steps with a :class:`~sanctum.attestation.cache.CollateralCache`:
verified collateral (keyed by the collateral's content hash), verified PCK chains (keyed by the
certification data's hash), verified QE reports (keyed by the hash of the PCK key, the report and
its signature: a QE signs one report per attestation key, and every quote of that key repeats it)
and TCB evaluations (a pure function of the collateral and the SVNs) are reused, so a warm
verification costs the quote signature's ECDSA verification (plus the QE report's for the first
quote of an attestation key) and cheap lookups. Validity windows, revocation, the platform
binding, the QE report data binding, the QE identity policy and every quote-specific check run on
every call.

Steps 3 to 5 and 12 are the collateral verification shared with the node re-check
(:mod:`sanctum.attestation.collateral_verify`): one implementation, the same codes.

Without a cache, :func:`verify_quote` verifies every signature on every call; it only shares
the *decoding* of byte-identical inputs through small bounded memos
(:mod:`sanctum.attestation._memo`, ``docs/adr/0022-parse-memos.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sanctum.attestation.cache import CollateralCache
from sanctum.attestation.chain import (
    PckChain,
    cert_der,
    cert_point,
    issuer_der,
    load_pem_chain,
    public_key_from_raw,
    verify_pck_chain,
    verify_raw_signature,
)
from sanctum.attestation.collateral import Collateral
from sanctum.attestation.collateral_verify import (
    ValidityWindow,
    VerifiedCollateral,
    _verify_collateral_signatures,
    judge_validity,
)
from sanctum.attestation.pck import PckExtensions, parse_pck_extensions
from sanctum.attestation.quote import (
    INTEL_QE_VENDOR_ID,
    CertificationType,
    Quote,
    SgxReportBody,
    TdReportBody,
    TeeType,
    parse_quote,
)
from sanctum.attestation.result import (
    PlatformFacts,
    QeFacts,
    SgxEnclaveIdentity,
    TdIdentity,
    VerifiedQuote,
)
from sanctum.attestation.tcb import (
    EnclaveIdentity,
    TcbEvaluation,
    TcbInfo,
    TcbStatus,
    evaluate_sgx_tcb,
    evaluate_tdx_tcb,
    match_qe_level,
)
from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import EvidenceError, UsageError

__all__ = ["Verifier", "verify_quote"]

_QE_REPORT_DATA_HASHED: Final = 32
# Cache value marking a QE report whose signature verified under the PCK key in its key.
_VERIFIED: Final = "verified"
_DEBUG_FLAG: Final = 0x02


def _fail(code: str, message: str, *, hint: str | None = None) -> EvidenceError:
    """Return an evidence error with ``code``."""
    return EvidenceError(message, code=code, hint=hint)


@dataclass(frozen=True, slots=True)
class _VerifiedPck:
    """A verified PCK chain with the leaf's parsed extension and public key."""

    chain: PckChain
    extensions: PckExtensions
    leaf_key: ec.EllipticCurvePublicKey
    leaf_point: bytes
    intermediate_key: bytes
    intermediate_der: bytes
    leaf_issuer_der: bytes
    validity: ValidityWindow


def _pck_chain_pem(
    quote: Quote, collateral: Collateral, pck_chain: Sequence[x509.Certificate] | None
) -> tuple[bytes | None, Sequence[x509.Certificate] | None]:
    """Return the PCK chain source: the quote's PEM bytes or a caller-supplied chain.

    Raises:
        EvidenceError: The quote carries no chain and none was supplied
            (``quote.pck_chain_missing``).
    """
    certification = quote.signature.qe.certification
    if certification.cert_type == CertificationType.PCK_CERT_CHAIN:
        return b"".join(certification.pck_chain_pem()), None
    if pck_chain is not None:
        return None, pck_chain
    if collateral.pck_certificate_chain is not None:
        return collateral.pck_certificate_chain.encode("ascii"), None
    raise _fail(
        "quote.pck_chain_missing",
        f"the quote's certification data (type {certification.cert_type}) carries no PCK "
        "certificate chain and none was supplied",
        hint="fetch the PCK certificate chain from Intel PCS or a PCCS and pass it",
    )


def _verify_pck(
    pem: bytes | None, certs: Sequence[x509.Certificate] | None, anchor: TrustAnchor
) -> _VerifiedPck:
    """Verify the PCK chain and parse the leaf's SGX extension (step 2, time-free).

    Raises:
        EvidenceError: ``pck.chain_invalid`` or ``pck.extension_invalid``.
    """
    if certs is None:
        certs = load_pem_chain(pem or b"", code="pck.chain_invalid", what="PCK certificate chain")
    chain = verify_pck_chain(certs, anchor)
    extensions = parse_pck_extensions(chain.leaf)
    key = chain.leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _fail("pck.chain_invalid", "the PCK certificate key is not a P-256 ECDSA key")
    return _VerifiedPck(
        chain=chain,
        extensions=extensions,
        leaf_key=key,
        leaf_point=cert_point(chain.leaf),
        intermediate_key=cert_point(chain.intermediate),
        intermediate_der=cert_der(chain.intermediate),
        leaf_issuer_der=issuer_der(chain.leaf),
        validity=ValidityWindow.of(chain.validity),
    )


def _check_qe_identity(qe: SgxReportBody, identity: EnclaveIdentity) -> None:
    """Check the QE report against the QE identity (QVL ``EnclaveReportVerifier``).

    Raises:
        EvidenceError: MISCSELECT, ATTRIBUTES, MRSIGNER or ISVPRODID differ
            (``qe.identity_mismatch``).
    """
    code = "qe.identity_mismatch"
    if qe.misc_select & identity.miscselect_mask != identity.miscselect:
        raise _fail(code, "the QE's MISCSELECT does not match the QE identity")
    masked = bytes(a & m for a, m in zip(qe.attributes, identity.attributes_mask, strict=True))
    if masked != identity.attributes:
        raise _fail(code, "the QE's ATTRIBUTES do not match the QE identity")
    if qe.mr_signer != identity.mrsigner:
        raise _fail(code, "the QE's MRSIGNER does not match the QE identity")
    if qe.isv_prod_id != identity.isv_prod_id:
        raise _fail(code, "the QE's ISVPRODID does not match the QE identity")


def _check_tdx_module(body: TdReportBody, tcb_info: TcbInfo) -> None:
    """Check the TDX module's signer and SEAM attributes (QVL ``QuoteVerifier`` 4.1.2.5.12).

    The module identity is ``TDX_<version>`` when TEE_TCB_SVN[1] > 0, else ``tdxModule``.
    QVL requires MRSIGNERSEAM to equal its ``mrsigner`` and SEAMATTRIBUTES to be all zero *and*
    equal to its ``attributes``; dcap-qvl compares the attributes under ``attributesMask``.
    Sanctum follows Intel.

    Raises:
        EvidenceError: No such module identity, or a mismatch (``tdx_module.mismatch``).
    """
    version = body.tee_tcb_svn[1]
    if version > 0:
        identity = tcb_info.module_identity(version)
        if identity is None:
            raise _fail(
                "tdx_module.mismatch",
                f"the TCB info has no TDX module identity TDX_{version:02X} for the TD's module",
            )
        mrsigner, attributes = identity.mrsigner, identity.attributes
    else:
        if tcb_info.tdx_module is None:
            raise _fail("tcb_info.malformed", "the TDX TCB info has no tdxModule")
        mrsigner, attributes = tcb_info.tdx_module.mrsigner, tcb_info.tdx_module.attributes
    if body.mr_signer_seam != mrsigner:
        raise _fail("tdx_module.mismatch", "the TD's MRSIGNERSEAM is not the TDX module signer")
    if any(body.seam_attributes) or body.seam_attributes != attributes:
        raise _fail(
            "tdx_module.mismatch",
            "the TD's SEAMATTRIBUTES are not zero or differ from the TDX module identity's",
        )


def _sgx_identity(body: SgxReportBody) -> SgxEnclaveIdentity:
    """Return the enclave identity of an SGX report body."""
    return SgxEnclaveIdentity(
        mrenclave=body.mr_enclave,
        mrsigner=body.mr_signer,
        isv_prod_id=body.isv_prod_id,
        isv_svn=body.isv_svn,
        attributes=body.attributes,
        debug=bool(body.attributes[0] & _DEBUG_FLAG),
        misc_select=body.misc_select,
        cpu_svn=body.cpu_svn,
        config_id=body.config_id,
        config_svn=body.config_svn,
        isv_ext_prod_id=body.isv_ext_prod_id,
        isv_family_id=body.isv_family_id,
        report_data=body.report_data,
    )


def _td_identity(body: TdReportBody) -> TdIdentity:
    """Return the TD identity of a TD report body."""
    return TdIdentity(
        mr_td=body.mr_td,
        mr_config_id=body.mr_config_id,
        mr_owner=body.mr_owner,
        mr_owner_config=body.mr_owner_config,
        rtmr0=body.rtmr0,
        rtmr1=body.rtmr1,
        rtmr2=body.rtmr2,
        rtmr3=body.rtmr3,
        td_attributes=body.td_attributes,
        debug=body.debug,
        xfam=body.xfam,
        mr_seam=body.mr_seam,
        mr_signer_seam=body.mr_signer_seam,
        seam_attributes=body.seam_attributes,
        tee_tcb_svn=body.tee_tcb_svn,
        tee_tcb_svn2=body.tee_tcb_svn2,
        mr_servicetd=body.mr_servicetd,
        report_data=body.report_data,
    )


def _check_now(now: datetime) -> datetime:
    """Return ``now`` in UTC.

    Raises:
        UsageError: ``now`` is naive (a programming error at the call site).
    """
    if now.tzinfo is None:
        raise UsageError("the verification time must be timezone-aware", code="usage.invalid_time")
    return now.astimezone(UTC)


def _run(
    quote: bytes | Quote,
    collateral: Collateral,
    *,
    trust_anchor: TrustAnchor,
    now: datetime,
    allow_expired_collateral: bool,
    pck_chain: Sequence[x509.Certificate] | None,
    cache: CollateralCache | None,
) -> VerifiedQuote:
    """Run every verification step; shared by :func:`verify_quote` and :class:`Verifier`.

    Raises:
        EvidenceError: The quote or collateral is refused (see the module docstring).
        UsageError: ``now`` is naive.
    """
    now = _check_now(now)
    # Step 1: the quote.
    parsed = (
        parse_quote(bytes(quote)) if isinstance(quote, (bytes, bytearray, memoryview)) else quote
    )
    if parsed.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise _fail(
            "quote.unsupported_qe_vendor",
            f"the quote's QE vendor ID {parsed.header.qe_vendor_id.hex()} is not Intel's",
        )
    qe = parsed.signature.qe

    # Step 2: the PCK chain (cached by the hash of its exact bytes).
    verified_pck: _VerifiedPck | None = None
    pck_key: tuple[str, ...] | None = None
    certification = qe.certification
    if cache is not None and (
        certification.cert_type == CertificationType.PCK_CERT_CHAIN
        or (pck_chain is None and collateral.pck_certificate_chain is not None)
    ):
        source = (
            certification.data
            if certification.cert_type == CertificationType.PCK_CERT_CHAIN
            else (collateral.pck_certificate_chain or "").encode("ascii")
        )
        pck_key = ("pck", trust_anchor.fingerprint, hashlib.sha256(source).hexdigest())
        cached = cache.get(pck_key, now)
        if isinstance(cached, _VerifiedPck):
            verified_pck = cached
    if verified_pck is None:
        pem, certs = _pck_chain_pem(parsed, collateral, pck_chain)
        verified_pck = _verify_pck(pem, certs, trust_anchor)
        if cache is not None and pck_key is not None:
            cache.put(pck_key, verified_pck, verified_pck.validity.earliest_expiry)

    # Steps 3 to 5: CRLs, TCB info and QE identity (cached by the collateral's content hash).
    verified: VerifiedCollateral | None = None
    collateral_key = ("collateral", trust_anchor.fingerprint, collateral.digest)
    if cache is not None:
        cached_collateral = cache.get(collateral_key, now)
        if isinstance(cached_collateral, VerifiedCollateral):
            verified = cached_collateral
    if verified is None:
        # The PCK CA of step 2 was verified under this anchor: the PCK CRL issuer chain's CA,
        # normally the same certificate, is not verified twice (the private form's contract).
        verified = _verify_collateral_signatures(
            collateral,
            trust_anchor,
            verified_pck_ca_der=verified_pck.intermediate_der,
            report_revoked_pck_ca=False,
        )
        if cache is not None:
            cache.put(collateral_key, verified, verified.validity.earliest_expiry)

    chain = verified_pck.chain
    # Step 3 continued: the PCK CRL must be the one of the PCK certificate's issuer.
    if (
        verified.pck_crl.issuer_der != verified_pck.leaf_issuer_der
        or verified.pck_crl_issuer_key != verified_pck.intermediate_key
    ):
        raise _fail(
            "crl.invalid",
            f"the PCK CRL is issued by {verified.pck_crl.issuer.rfc4514_string()}, not by the "
            f"PCK certificate's issuer {chain.leaf.issuer.rfc4514_string()}",
            hint="fetch the PCK CRL of the CA named in the PCK certificate (platform/processor)",
        )
    if verified.root_crl.is_revoked(chain.intermediate):
        raise _fail("pck.ca_revoked", "the PCK CA certificate is revoked by the root CA CRL")
    if verified.pck_crl.is_revoked(chain.leaf):
        raise _fail("pck.revoked", "the PCK certificate is revoked by the PCK CRL")

    # Step 4/5 continued and step 6: collateral matches the TEE and the platform.
    tcb_info = verified.tcb_info
    identity = verified.qe_identity
    extensions = verified_pck.extensions
    is_tdx = parsed.header.tee_type == TeeType.TDX
    if tcb_info.id != ("TDX" if is_tdx else "SGX") or (is_tdx and tcb_info.version < 3):
        raise _fail(
            "tcb_info.tee_mismatch",
            f"the TCB info is for {tcb_info.id} (v{tcb_info.version}) but the quote is "
            f"{'TDX' if is_tdx else 'SGX'}",
        )
    if identity.id != ("TD_QE" if is_tdx else "QE"):
        raise _fail(
            "qe_identity.tee_mismatch",
            f"the QE identity is {identity.id!r} but the quote needs {'TD_QE' if is_tdx else 'QE'}",
        )
    if extensions.fmspc != tcb_info.fmspc:
        raise _fail(
            "tcb_info.fmspc_mismatch",
            f"the TCB info is for FMSPC {tcb_info.fmspc.hex().upper()} but the platform's is "
            f"{extensions.fmspc.hex().upper()}",
            hint="fetch the TCB info for the platform's FMSPC",
        )
    if extensions.pce_id != tcb_info.pce_id:
        raise _fail(
            "tcb_info.pceid_mismatch",
            f"the TCB info is for PCE-ID {tcb_info.pce_id.hex()} but the platform's is "
            f"{extensions.pce_id.hex()}",
        )

    # Step 7: the TDX module identity.
    body = parsed.body
    if is_tdx:
        if not isinstance(body, TdReportBody):
            raise _fail("quote.malformed", "a TDX quote must carry a TD report")
        _check_tdx_module(body, tcb_info)
    elif not isinstance(body, SgxReportBody):
        raise _fail("quote.malformed", "an SGX quote must carry an SGX report")

    # Step 8: the QE report is signed by the PCK key. A QE certifies its attestation key once
    # and every quote until the key changes carries the same QE report and signature, so with a
    # cache the *verified* report is remembered under the exact PCK key, report and signature.
    report_key: tuple[str, str, bytes] | None = None
    if cache is not None:
        report_key = (
            "qe_report",
            trust_anchor.fingerprint,
            hashlib.sha256(
                verified_pck.leaf_point + qe.qe_report_signature + qe.qe_report_bytes
            ).digest(),
        )
    if report_key is None or cache is None or cache.get(report_key, now) is not _VERIFIED:
        verify_raw_signature(
            verified_pck.leaf_key,
            qe.qe_report_signature,
            qe.qe_report_bytes,
            code="qe.report_signature_invalid",
            what="QE report signature",
        )
        if report_key is not None and cache is not None:
            cache.put(report_key, _VERIFIED, verified_pck.validity.earliest_expiry)
    # Step 9: the QE report binds the attestation key and the QE auth data.
    expected = hashlib.sha256(parsed.signature.attestation_key + qe.qe_auth_data).digest()
    if qe.qe_report.report_data[:_QE_REPORT_DATA_HASHED] != expected:
        raise _fail(
            "qe.report_data_mismatch",
            "the QE report does not bind the attestation key (SHA-256 of key and auth data)",
        )
    # Step 10: the QE is the one the QE identity describes.
    _check_qe_identity(qe.qe_report, identity)
    # Step 11: the quote signature by the attestation key.
    attestation_key = public_key_from_raw(
        parsed.signature.attestation_key, code="quote.signature_invalid", what="attestation key"
    )
    verify_raw_signature(
        attestation_key,
        parsed.signature.signature,
        parsed.signed_bytes,
        code="quote.signature_invalid",
        what="quote signature",
    )

    # Step 12: every validity window at `now`.
    expired, earliest_issue, latest_issue, earliest_expiry = judge_validity(
        (verified_pck.validity, verified.validity), now, allow_expired=allow_expired_collateral
    )

    # Step 13: TCB evaluation per Intel (a pure function of the collateral and the SVNs, so
    # its outcome is cached with the collateral).
    components = extensions.tcb.cpu_svn_components
    pce_svn = extensions.tcb.pce_svn
    tee_tcb_svn = body.tee_tcb_svn if isinstance(body, TdReportBody) else None
    tee_tcb_svn2 = body.tee_tcb_svn2 if isinstance(body, TdReportBody) else None
    qe_svn = qe.qe_report.isv_svn
    tcb_key = ("tcb", collateral.digest, components, pce_svn, tee_tcb_svn, tee_tcb_svn2, qe_svn)
    evaluation: TcbEvaluation | None = None
    if cache is not None:
        cached_evaluation = cache.get(tcb_key, now)
        if isinstance(cached_evaluation, TcbEvaluation):
            evaluation = cached_evaluation
    if evaluation is None:
        qe_level = match_qe_level(identity, qe_svn)
        if tee_tcb_svn is not None:
            evaluation = evaluate_tdx_tcb(
                tcb_info,
                cpu_svn_components=components,
                pce_svn=pce_svn,
                tee_tcb_svn=tee_tcb_svn,
                qe_level=qe_level,
                tee_tcb_svn2=tee_tcb_svn2,
            )
        else:
            evaluation = evaluate_sgx_tcb(
                tcb_info, cpu_svn_components=components, pce_svn=pce_svn, qe_level=qe_level
            )
        if cache is not None:
            cache.put(tcb_key, evaluation, verified.validity.earliest_expiry)
    qe_level = evaluation.qe_level
    tee: Literal["sgx", "tdx"]
    enclave: SgxEnclaveIdentity | TdIdentity
    if isinstance(body, TdReportBody):
        tee, enclave = "tdx", _td_identity(body)
    else:
        tee, enclave = "sgx", _sgx_identity(body)
    if evaluation.status == TcbStatus.REVOKED:
        raise _fail(
            "tcb.revoked",
            "the platform's TCB level (or its QE / TDX module) is revoked by Intel",
            hint="the platform cannot be trusted until its TCB is recovered",
        )
    module = evaluation.tdx_module_level
    configuration = extensions.configuration
    return VerifiedQuote(
        tee=tee,
        version=parsed.header.version,
        status=evaluation.status,
        advisory_ids=evaluation.advisory_ids,
        platform_status=evaluation.platform_level.status,
        tdx_module_status=None if module is None else module.status,
        tdx_module_advisory_ids=() if module is None else module.advisory_ids,
        tcb_date=evaluation.tcb_date,
        tcb_evaluation_data_number=tcb_info.tcb_evaluation_data_number,
        collateral_expired=expired,
        earliest_issue_date=earliest_issue,
        latest_issue_date=latest_issue,
        earliest_expiration_date=earliest_expiry,
        verified_at=now,
        platform=PlatformFacts(
            fmspc=extensions.fmspc,
            pce_id=extensions.pce_id,
            ppid=extensions.ppid,
            sgx_type=extensions.sgx_type.name,
            ca_type=chain.ca_type,
            cpu_svn=extensions.tcb.cpu_svn,
            pce_svn=extensions.tcb.pce_svn,
            platform_instance_id=extensions.platform_instance_id,
            dynamic_platform=None if configuration is None else configuration.dynamic_platform,
            cached_keys=None if configuration is None else configuration.cached_keys,
            smt_enabled=None if configuration is None else configuration.smt_enabled,
        ),
        qe=QeFacts(
            status=qe_level.status,
            isv_svn=qe.qe_report.isv_svn,
            isv_prod_id=qe.qe_report.isv_prod_id,
            mrsigner=qe.qe_report.mr_signer,
            advisory_ids=qe_level.advisory_ids,
            tcb_date=qe_level.tcb_date,
            identity_id=identity.id,
            tcb_evaluation_data_number=identity.tcb_evaluation_data_number,
        ),
        identity=enclave,
        simulated=trust_anchor.simulated,
        pck_crl_number=verified.pck_crl.number,
        root_ca_crl_number=verified.root_crl.number,
    )


def verify_quote(
    quote: bytes | Quote,
    collateral: Collateral,
    *,
    trust_anchor: TrustAnchor,
    now: datetime,
    allow_expired_collateral: bool = False,
    pck_chain: Sequence[x509.Certificate] | None = None,
) -> VerifiedQuote:
    """Verify a DCAP quote against collateral, per Intel's QVL, with no caching.

    Args:
        quote: The raw quote (trailing padding is ignored) or an already parsed one.
        collateral: The collateral to judge it by.
        trust_anchor: The root every chain must end in (``TrustAnchor.intel()`` for real
            hardware).
        now: The verification time (timezone-aware).
        allow_expired_collateral: Accept collateral outside its validity and set
            ``collateral_expired`` (Intel's QvE behaviour) instead of refusing.
        pck_chain: The PCK chain (leaf, CA, root) for quotes whose certification data does not
            embed one (types 1 to 4).

    Raises:
        EvidenceError: The quote is refused; ``code`` says why (``quote.*``, ``pck.*``,
            ``crl.invalid``, ``tcb_info.*``, ``qe_identity.*``, ``qe.*``, ``tdx_module.mismatch``,
            ``collateral.expired``, ``tcb.not_supported``, ``tcb.revoked``).
        UsageError: ``now`` is naive.
    """
    return _run(
        quote,
        collateral,
        trust_anchor=trust_anchor,
        now=now,
        allow_expired_collateral=allow_expired_collateral,
        pck_chain=pck_chain,
        cache=None,
    )


class Verifier:
    """A quote verifier bound to one trust anchor, with a thread-safe verified-collateral cache.

    Results are identical to :func:`verify_quote`; only the cost differs.
    """

    def __init__(self, trust_anchor: TrustAnchor, *, cache: CollateralCache | None = None) -> None:
        """Create a verifier for ``trust_anchor`` (with a fresh cache unless one is given)."""
        self.trust_anchor = trust_anchor
        self.cache = cache if cache is not None else CollateralCache()

    def verify(
        self,
        quote: bytes | Quote,
        collateral: Collateral,
        *,
        now: datetime,
        allow_expired_collateral: bool = False,
        pck_chain: Sequence[x509.Certificate] | None = None,
    ) -> VerifiedQuote:
        """Verify a quote like :func:`verify_quote`, reusing verified collateral.

        Raises:
            EvidenceError: The quote is refused (same codes as :func:`verify_quote`).
            UsageError: ``now`` is naive.
        """
        return _run(
            quote,
            collateral,
            trust_anchor=self.trust_anchor,
            now=now,
            allow_expired_collateral=allow_expired_collateral,
            pck_chain=pck_chain,
            cache=self.cache,
        )
