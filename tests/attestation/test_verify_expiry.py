"""Verification time is an input: outside the collateral's validity the quote is refused."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from _dcap_cases import ACCEPTED, CASES, collateral, intel, parse_time, quote_bytes, verify_time

from sanctum.attestation.verify import Verifier, verify_quote
from sanctum.errors import EvidenceError, UsageError

SECOND = timedelta(seconds=1)


def _verify(name, now, **options):
    return verify_quote(
        quote_bytes(name), collateral(name), trust_anchor=intel(), now=now, **options
    )


@pytest.mark.parametrize("name", ACCEPTED)
def test_after_the_validity_window_is_expired(name):
    # Intel QVL: expired when now > nextUpdate/notAfter; the vectors' window end is exclusive
    # for dcap-qvl (which fails at ==), so one second past it is outside for both.
    after = parse_time(CASES[name]["valid_until_exclusive"]) + SECOND
    with pytest.raises(EvidenceError) as info:
        _verify(name, after)
    assert info.value.code == "collateral.expired"


@pytest.mark.parametrize("name", ACCEPTED)
def test_before_the_validity_window_is_not_yet_valid(name):
    before = parse_time(CASES[name]["valid_from"]) - SECOND
    with pytest.raises(EvidenceError) as info:
        _verify(name, before)
    assert info.value.code == "collateral.expired"
    assert "not yet valid" in info.value.message


@pytest.mark.parametrize("name", ACCEPTED)
def test_window_edges_are_inside(name):
    start = parse_time(CASES[name]["valid_from"])
    assert _verify(name, start).collateral_expired is False


@pytest.mark.parametrize("name", ACCEPTED)
def test_allow_expired_collateral_sets_intels_flag(name):
    expected = CASES[name]["intel_qvl_logic_expected"]
    after = parse_time(CASES[name]["valid_until_exclusive"]) + timedelta(days=400)
    result = _verify(name, after, allow_expired_collateral=True)
    assert result.collateral_expired is True
    assert str(result.status) == expected["status"]
    assert result.earliest_expiration_date < after


def test_verifier_cache_does_not_hide_expiry():
    name = "sgx-v3-phala"
    verifier = Verifier(intel())
    verifier.verify(quote_bytes(name), collateral(name), now=verify_time(name))
    after = parse_time(CASES[name]["valid_until_exclusive"]) + SECOND
    with pytest.raises(EvidenceError) as info:
        verifier.verify(quote_bytes(name), collateral(name), now=after)
    assert info.value.code == "collateral.expired"
    before = parse_time(CASES[name]["valid_from"]) - SECOND
    with pytest.raises(EvidenceError) as info:
        verifier.verify(quote_bytes(name), collateral(name), now=before)
    assert info.value.code == "collateral.expired"
    flagged = verifier.verify(
        quote_bytes(name), collateral(name), now=after, allow_expired_collateral=True
    )
    assert flagged.collateral_expired is True
    assert verifier.verify(quote_bytes(name), collateral(name), now=verify_time(name))


def test_naive_time_is_a_usage_error():
    name = "tdx-v4-phala"
    with pytest.raises(UsageError):
        _verify(name, datetime(2025, 7, 4, 10, 16, 31))  # noqa: DTZ001
