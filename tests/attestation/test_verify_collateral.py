"""The collateral verification shared by quote verification and the node re-check.

``sanctum.attestation.collateral_verify`` is the one implementation of the CRL, chain, signature
and validity checks: on Intel's real collateral it agrees with :func:`verify_quote` (same
parsed TCB info and QE identity, same codes for the same tampering), and its two switches
(``unsafe_report_revoked_pck_ca``, ``allow_expired``) behave as documented.
"""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from _dcap_cases import ACCEPTED, collateral, intel, quote_bytes, verify_time
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sanctum.attestation import collateral_verify
from sanctum.attestation.collateral import Collateral, load_collateral_bundle
from sanctum.attestation.collateral_verify import (
    ValidityWindow,
    VerifiedCollateral,
    judge_validity,
    verify_collateral,
    verify_collateral_signatures,
)
from sanctum.attestation.trust import TrustAnchor
from sanctum.attestation.verify import verify_quote
from sanctum.errors import EvidenceError, UsageError
from sanctum.manager import node_tcb
from sanctum.platforms.simulated.collateral import CollateralDates
from sanctum.platforms.simulated.pki import SimulationPki
from sanctum.platforms.simulated.platform import SimulatedPlatform

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SGX = "sgx-v3-phala"
TDX = "tdx-v4-phala"


@cache
def _pki() -> SimulationPki:
    return SimulationPki.create(now=NOW - timedelta(days=1), seed=b"collateral-verify")


@cache
def _anchor() -> TrustAnchor:
    return TrustAnchor.from_bytes(_pki().root_der(), simulated=True)


def _platform(**options: object) -> SimulatedPlatform:
    return SimulatedPlatform(_pki(), tee="sgx", now=NOW, seed=b"platform", **options)  # type: ignore[arg-type]


def _code(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(EvidenceError) as raised:
        call(*args, **kwargs)  # type: ignore[operator]
    return raised.value.code


@pytest.mark.parametrize("name", ACCEPTED)
def test_real_intel_collateral_verifies_as_in_the_quote(name):
    now = verify_time(name)
    verified = verify_collateral(collateral(name), intel(), now=now)
    assert isinstance(verified, VerifiedCollateral)
    assert verified.simulated is False
    assert verified.pck_crl_issuer_revoked is False
    quote = verify_quote(quote_bytes(name), collateral(name), trust_anchor=intel(), now=now)
    assert verified.tcb_info.tcb_evaluation_data_number == quote.tcb_evaluation_data_number
    assert verified.qe_identity.tcb_evaluation_data_number == quote.qe.tcb_evaluation_data_number
    assert verified.qe_identity.id == quote.qe.identity_id
    assert (verified.pck_crl.number, verified.root_crl.number) == (
        quote.pck_crl_number,
        quote.root_ca_crl_number,
    )
    # The quote adds the PCK chain's windows to the collateral's: its window is inside.
    window = verified.validity
    assert window.latest_issue <= quote.latest_issue_date
    assert window.earliest_expiry >= quote.earliest_expiration_date
    assert {w.what for w in window.windows} >= {"TCB info", "QE identity", "PCK CRL", "root CA CRL"}
    # The time-free form verifies the same signatures, at any time.
    later = verify_collateral_signatures(collateral(name), intel())
    assert later.tcb_info == verified.tcb_info
    assert later.validity == verified.validity


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x10]) + data[offset + 1 :]


def _tampered(name: str) -> dict[str, Collateral]:
    base = collateral(name)
    return {
        "tcb_info_text": dataclasses.replace(
            base, tcb_info_text=base.tcb_info_text.replace(b'"version"', b'"Version"', 1)
        ),
        "tcb_info_signature": dataclasses.replace(
            base, tcb_info_signature=_flip(base.tcb_info_signature, 5)
        ),
        "qe_identity_signature": dataclasses.replace(
            base, qe_identity_signature=_flip(base.qe_identity_signature, 40)
        ),
        "pck_crl": dataclasses.replace(base, pck_crl=_flip(base.pck_crl, len(base.pck_crl) - 9)),
        "root_ca_crl": dataclasses.replace(
            base, root_ca_crl=_flip(base.root_ca_crl, len(base.root_ca_crl) - 9)
        ),
        "tcb_info_issuer_chain": dataclasses.replace(
            base, tcb_info_issuer_chain=base.pck_crl_issuer_chain
        ),
        "qe_identity_issuer_chain": dataclasses.replace(
            base, qe_identity_issuer_chain=base.pck_crl_issuer_chain
        ),
        "pck_crl_issuer_chain": dataclasses.replace(
            base, pck_crl_issuer_chain=base.tcb_info_issuer_chain
        ),
    }


EXPECTED_CODES = {
    "tcb_info_text": "tcb_info.signature_invalid",
    "tcb_info_signature": "tcb_info.signature_invalid",
    "qe_identity_signature": "qe_identity.signature_invalid",
    "pck_crl": "crl.invalid",
    "root_ca_crl": "crl.invalid",
    "tcb_info_issuer_chain": "tcb_info.chain_invalid",
    "qe_identity_issuer_chain": "qe_identity.chain_invalid",
    "pck_crl_issuer_chain": "crl.invalid",
}


@pytest.mark.parametrize("name", [SGX, TDX])
def test_tampered_real_collateral_fails_with_the_quote_verifiers_code(name):
    now = verify_time(name)
    for part, changed in _tampered(name).items():
        alone = _code(verify_collateral, changed, intel(), now=now)
        in_quote = _code(verify_quote, quote_bytes(name), changed, trust_anchor=intel(), now=now)
        node = _code(node_tcb.verify_node_collateral, changed, intel(), now=now)
        assert alone == in_quote == node == EXPECTED_CODES[part], part


def test_collateral_under_another_root_is_refused():
    # Intel's collateral judged under the simulation root: its root CA CRL is not the anchor's.
    assert _code(verify_collateral, collateral(SGX), _anchor(), now=verify_time(SGX)) == (
        "crl.invalid"
    )
    simulated = _platform().collateral(now=NOW)
    assert _code(verify_collateral, simulated, intel(), now=NOW) == "crl.invalid"
    assert verify_collateral(simulated, _anchor(), now=NOW).simulated is True


def test_revocations_in_the_collateral():
    signer = _platform(revoked_tcb_signing=True).collateral(now=NOW)
    assert _code(verify_collateral, signer, _anchor(), now=NOW) == "tcb_info.signing_cert_revoked"
    revoked_ca = _platform(revoked_pck_ca=True).collateral(now=NOW)
    # A quote verification refuses a revoked PCK CA outright (its default) ...
    assert _code(verify_collateral, revoked_ca, _anchor(), now=NOW) == "pck.ca_revoked"
    assert _code(verify_collateral_signatures, revoked_ca, _anchor()) == "pck.ca_revoked"
    # ... a caller that judges each platform's CA itself gets the fact instead.
    reported = verify_collateral(revoked_ca, _anchor(), now=NOW, unsafe_report_revoked_pck_ca=True)
    assert reported.pck_crl_issuer_revoked is True
    current = verify_collateral(
        _platform().collateral(now=NOW), _anchor(), now=NOW, unsafe_report_revoked_pck_ca=True
    )
    assert current.pck_crl_issuer_revoked is False


def test_validity_is_judged_at_now():
    platform = _platform()
    expired = platform.collateral(now=NOW, expired=True)
    assert _code(verify_collateral, expired, _anchor(), now=NOW) == "collateral.expired"
    # Signatures alone do not look at the time.
    verified = verify_collateral_signatures(expired, _anchor())
    with pytest.raises(EvidenceError) as raised:
        judge_validity((verified.validity,), NOW)
    assert raised.value.code == "collateral.expired"
    assert "expired at" in raised.value.message
    flagged = judge_validity((verified.validity,), NOW, allow_expired=True)
    assert flagged[0] is True
    assert flagged[3] == verified.validity.earliest_expiry
    fresh = verify_collateral(platform.collateral(now=NOW), _anchor(), now=NOW)
    assert judge_validity((fresh.validity,), NOW)[0] is False
    before = fresh.validity.latest_issue - timedelta(seconds=1)
    with pytest.raises(EvidenceError) as raised:
        judge_validity((fresh.validity,), before)
    assert "is not yet valid" in raised.value.message
    # Only the QE identity expired: the window that failed is named.
    only_qe = platform.collateral_json_with(
        dates=CollateralDates.fresh(NOW), qe_identity_dates=CollateralDates.expired(NOW)
    )
    with pytest.raises(EvidenceError) as raised:
        verify_collateral(load_collateral_bundle(only_qe), _anchor(), now=NOW)
    assert raised.value.message.startswith("the QE identity expired")


def test_windows_aggregate_to_their_intersection():
    fresh = verify_collateral(_platform().collateral(now=NOW), _anchor(), now=NOW)
    windows = fresh.validity.windows
    again = ValidityWindow.of(windows)
    assert again == fresh.validity
    assert again.latest_issue == max(w.not_before for w in windows)
    assert again.earliest_expiry == min(w.not_after for w in windows)
    assert again.earliest_issue == min(w.not_before for w in windows)


def test_naive_times_are_refused():
    with pytest.raises(UsageError):
        verify_collateral(_platform().collateral(now=NOW), _anchor(), now=NOW.replace(tzinfo=None))


def test_the_node_check_has_no_copy_of_its_own():
    # The re-check uses the attestation package's verification; the duplicate is gone.
    for private in ("_signed_by_tcb_signer", "_check_windows"):
        assert not hasattr(node_tcb, private)
    assert node_tcb.verify_collateral is verify_collateral


def _forged_pck_crl_issuer(base: Collateral) -> tuple[Collateral, bytes]:
    """Return ``base`` with the PCK CRL issuer (PCK CA) certificate's signature broken."""
    ca, root = x509.load_pem_x509_certificates(base.pck_crl_issuer_chain.encode("ascii"))
    der = ca.public_bytes(serialization.Encoding.DER)
    forged = x509.load_der_x509_certificate(_flip(der, len(der) - 3))
    chain = b"".join(
        cert.public_bytes(serialization.Encoding.PEM) for cert in (forged, root)
    ).decode("ascii")
    return dataclasses.replace(base, pck_crl_issuer_chain=chain), forged.public_bytes(
        serialization.Encoding.DER
    )


def test_no_public_caller_can_skip_the_pck_crl_issuer_signature():
    changed, forged_der = _forged_pck_crl_issuer(_platform().collateral(now=NOW))
    assert _code(verify_collateral_signatures, changed, _anchor()) == "crl.invalid"
    assert _code(verify_collateral, changed, _anchor(), now=NOW) == "crl.invalid"
    # The public functions take no "already verified" certificates: nothing skips the check.
    for call in (verify_collateral_signatures, verify_collateral):
        assert "verified_ca_ders" not in inspect.signature(call).parameters
        assert "verified_pck_ca_der" not in inspect.signature(call).parameters
    with pytest.raises(TypeError):
        verify_collateral_signatures(  # type: ignore[call-arg]
            changed, _anchor(), verified_ca_ders=frozenset({forged_der})
        )
    # The quote verifier's private form skips only the CA its own PCK chain verified; any other
    # DER (here the forged one, not the quote's CA) is checked in full.
    genuine = x509.load_pem_x509_certificates(
        _platform().collateral(now=NOW).pck_crl_issuer_chain.encode("ascii")
    )[0].public_bytes(serialization.Encoding.DER)
    assert (
        _code(
            collateral_verify._verify_collateral_signatures,
            changed,
            _anchor(),
            verified_pck_ca_der=genuine,
            report_revoked_pck_ca=False,
        )
        == "crl.invalid"
    )
    # A quote whose PCK chain is intact, sent with the forged issuer chain, is refused.
    platform = _platform()
    quote = platform.quote(bytes(64))
    assert _code(verify_quote, quote, changed, trust_anchor=_anchor(), now=NOW) == "crl.invalid"


def test_the_revoked_pck_ca_switch_is_named_unsafe():
    for call in (verify_collateral_signatures, verify_collateral):
        parameters = inspect.signature(call).parameters
        assert "refuse_revoked_pck_ca" not in parameters
        assert parameters["unsafe_report_revoked_pck_ca"].default is False
    revoked_ca = _platform(revoked_pck_ca=True).collateral(now=NOW)
    assert _code(verify_collateral, revoked_ca, _anchor(), now=NOW) == "pck.ca_revoked"
