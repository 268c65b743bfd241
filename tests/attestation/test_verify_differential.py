"""Differential tests against PyPI dcap-qvl 0.7.0 (a test-only peer, never our verifier).

Where both verifiers accept a quote, TCB status and advisory IDs must agree. Each place where
they disagree by design (dcap.md §2.7) is asserted explicitly, with the reason Sanctum follows
Intel's QVL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dcap_qvl
import pytest
from _dcap_cases import CASE_NAMES, CASES, collateral, collateral_text, intel, parse_time
from _dcap_cases import quote_bytes as case_quote
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanctum.attestation.tcb import TcbStatus, converge_statuses
from sanctum.attestation.verify import Verifier, verify_quote
from sanctum.errors import EvidenceError

# Cases where dcap-qvl refuses what Intel's QVL accepts, and why Sanctum follows Intel.
KNOWN_DIVERGENCES = {
    # Intel's QVL does not judge the application: DEBUG is the policy layer's decision, made
    # with the result's `debug` flag (dcap-qvl: "Debug mode is enabled").
    "sgx-v3-debug-enclave": "Debug mode is enabled",
    # MR_SERVICETD is a measurement for policy to judge, not a verification failure
    # (dcap-qvl: "Invalid MR service TD").
    "tdx-v5-alibaba-servicetd": "Invalid MR service TD",
    # Intel's QVL parses TCB info v2 (PCS API v3); dcap-qvl reads only v3.
    "sgx-v3-automata-00606a-tcbinfo-v2": "sgxtcbcomponents",
}

_PEERS: dict[str, object] = {}


def _peer_collateral(name: str):
    if name not in _PEERS:
        _PEERS[name] = dcap_qvl.QuoteCollateralV3.from_json(collateral_text(name).decode())
    return _PEERS[name]


def _peer(name: str, quote: bytes, at: int):
    try:
        report = dcap_qvl.verify(quote, _peer_collateral(name), at)
    except ValueError as error:
        return None, str(error)
    # Known ordering difference: dcap-qvl lists platform, then module, then QE advisories;
    # Intel's current QVL keeps a sorted set, as Sanctum does. The sets must be equal.
    return (report.status, sorted(report.advisory_ids)), None


def _ours(name: str, quote: bytes, now: datetime, verifier: Verifier | None = None):
    try:
        if verifier is None:
            result = verify_quote(quote, collateral(name), trust_anchor=intel(), now=now)
        else:
            result = verifier.verify(quote, collateral(name), now=now)
    except EvidenceError as error:
        return None, error.code
    return (str(result.status), list(result.advisory_ids)), None


@pytest.mark.parametrize("name", CASE_NAMES)
def test_real_cases_agree_or_diverge_as_documented(name):
    at = CASES[name]["verify_at_unix"]
    ours, our_error = _ours(name, case_quote(name), datetime.fromtimestamp(at, UTC))
    theirs, their_error = _peer(name, case_quote(name), at)
    if name in KNOWN_DIVERGENCES:
        assert ours is not None
        assert ours[0] == CASES[name]["intel_qvl_logic_expected"]["status"]
        assert their_error is not None
        assert KNOWN_DIVERGENCES[name] in their_error
    elif ours is None:
        # Both refuse "TCB not supported" (dcap-qvl: "No matching TCB level found").
        assert our_error == "tcb.not_supported"
        assert their_error is not None
        assert "No matching TCB level" in their_error
    else:
        assert ours == theirs


@pytest.mark.parametrize("name", ["tdx-v4-phala"])
def test_window_end_divergence(name):
    # This case's window ends at a CRL's nextUpdate. dcap-qvl refuses at that very second;
    # Intel's QVL treats collateral as expired only when the time is *after*
    # nextUpdate/notAfter, and so do we.
    end = parse_time(CASES[name]["valid_until_exclusive"])
    ours, _ = _ours(name, case_quote(name), end)
    theirs, their_error = _peer(name, case_quote(name), int(end.timestamp()))
    assert ours is not None
    assert theirs is None
    assert their_error is not None
    ours_after, our_error = _ours(name, case_quote(name), end + timedelta(seconds=1))
    assert ours_after is None
    assert our_error == "collateral.expired"


_ORDER = [
    TcbStatus.UP_TO_DATE,
    TcbStatus.SW_HARDENING_NEEDED,
    TcbStatus.CONFIGURATION_NEEDED,
    TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    TcbStatus.OUT_OF_DATE,
    TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
    TcbStatus.REVOKED,
]


def _dcap_qvl_worst_of(platform: TcbStatus, qe: TcbStatus) -> TcbStatus:
    """dcap-qvl 0.5.2's merge (verify.rs): the more severe status by a fixed order."""
    return max(platform, qe, key=_ORDER.index)


def test_status_merge_divergence_is_explicit():
    # Intel's convergeTcbStatuses: a ConfigurationNeeded platform with an OutOfDate QE is
    # OutOfDateConfigurationNeeded (the platform still needs configuration); dcap-qvl's
    # worst-of says OutOfDate and drops the configuration hint. Sanctum follows Intel, whose
    # statuses PCS and relying parties are specified against.
    for platform in (
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    ):
        assert converge_statuses(platform, [TcbStatus.OUT_OF_DATE]) == (
            TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
        )
        assert _dcap_qvl_worst_of(platform, TcbStatus.OUT_OF_DATE) == TcbStatus.OUT_OF_DATE
    # Everywhere else the two agree.
    for platform in _ORDER:
        for qe in (TcbStatus.UP_TO_DATE, TcbStatus.OUT_OF_DATE, TcbStatus.REVOKED):
            if qe == TcbStatus.OUT_OF_DATE and platform in (
                TcbStatus.CONFIGURATION_NEEDED,
                TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
            ):
                continue
            assert converge_statuses(platform, [qe]) == _dcap_qvl_worst_of(platform, qe)


MUTATION_CASES = ["sgx-v3-phala", "sgx-v3-automata-00606a", "tdx-v4-phala", "tdx-v5-gotdxguest"]
_VERIFIER = Verifier(intel())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(st.sampled_from(MUTATION_CASES), st.data())
def test_mutated_quotes_never_make_the_verifiers_disagree(name, data):
    raw = bytearray(case_quote(name))
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] ^= data.draw(st.integers(1, 255))
    at = CASES[name]["verify_at_unix"]
    ours, our_error = _ours(name, bytes(raw), datetime.fromtimestamp(at, UTC), _VERIFIER)
    theirs, their_error = _peer(name, bytes(raw), at)
    if ours is not None and theirs is not None:
        assert ours == theirs
    elif ours is not None:
        # We accept something dcap-qvl refuses only for its application-policy checks.
        assert their_error is not None
        assert (
            "Debug" in their_error
            or "service TD" in their_error
            or "attributes" in their_error.lower()
        ), their_error
    elif theirs is not None:
        # Sanctum's parser is stricter about the PEM framing of the certification data: it
        # refuses anything but whitespace between PEM blocks (dcap-qvl skips it). That is a
        # refusal of malformed evidence, never an acceptance Intel would refuse.
        assert our_error == "quote.malformed", our_error
        cert_start = bytes(case_quote(name)).index(b"-----BEGIN CERTIFICATE-----")
        assert all(raw[i] == case_quote(name)[i] for i in range(cert_start)), (
            "only the PEM framing may differ"
        )
