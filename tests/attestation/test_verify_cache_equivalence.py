"""Caching never changes an outcome: a shared, warm Verifier answers exactly like verify_quote.

One Verifier is shared across all examples, so its cache holds entries from earlier (valid and
mutated) inputs while later ones are checked: a cache keyed on anything less than the exact bytes
would let a mutated quote or collateral inherit a verdict, and these tests would catch it.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from _dcap_cases import CASES, collateral, intel, parse_time, quote_bytes, verify_time
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.attestation.verify import Verifier, verify_quote
from sanctum.errors import EvidenceError

NAMES = ["sgx-v3-phala", "sgx-v3-automata-00606a", "tdx-v4-phala", "tdx-v5-alibaba-servicetd"]
SHARED = Verifier(intel())
FIELDS = ["pck_crl", "root_ca_crl", "tcb_info_text", "qe_identity_text", "tcb_info_signature"]


def _outcome(call):
    try:
        return call()
    except EvidenceError as error:
        return error.code


def _both(quote, coll, now, allow_expired=False):
    cold = _outcome(
        lambda: verify_quote(
            quote,
            coll,
            trust_anchor=intel(),
            now=now,
            allow_expired_collateral=allow_expired,
        )
    )
    warm = _outcome(
        lambda: SHARED.verify(quote, coll, now=now, allow_expired_collateral=allow_expired)
    )
    return cold, warm


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.sampled_from(NAMES), st.data())
def test_mutated_quotes_get_the_same_outcome_warm_and_cold(name, data):
    raw = bytearray(quote_bytes(name))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    # Warm the cache with the genuine quote first.
    SHARED.verify(quote_bytes(name), collateral(name), now=verify_time(name))
    cold, warm = _both(bytes(raw), collateral(name), verify_time(name))
    assert cold == warm


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.sampled_from(NAMES), st.sampled_from(FIELDS), st.data())
def test_mutated_collateral_gets_the_same_outcome_warm_and_cold(name, field, data):
    value = bytearray(getattr(collateral(name), field))
    position = data.draw(st.integers(0, len(value) - 1))
    value[position] ^= data.draw(st.integers(1, 255))
    try:
        changed = dataclasses.replace(collateral(name), **{field: bytes(value)})
    except EvidenceError:
        return
    SHARED.verify(quote_bytes(name), collateral(name), now=verify_time(name))
    cold, warm = _both(quote_bytes(name), changed, verify_time(name))
    assert cold == warm


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.sampled_from(NAMES), st.integers(-40 * 86400, 40 * 86400), st.booleans())
def test_any_time_gets_the_same_outcome_warm_and_cold(name, offset, allow_expired):
    now = verify_time(name) + timedelta(seconds=offset)
    cold, warm = _both(quote_bytes(name), collateral(name), now, allow_expired)
    assert cold == warm
    inside = (
        parse_time(CASES[name]["valid_from"])
        <= now
        <= parse_time(CASES[name]["valid_until_exclusive"])
    )
    if not inside and not allow_expired:
        assert cold == "collateral.expired"
