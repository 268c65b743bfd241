"""TCB info / QE identity models and Intel's TCB evaluation rules, unit by unit."""

from __future__ import annotations

import contextlib
import json
import random
from datetime import UTC, datetime

import pytest
from _dcap_cases import collateral
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.attestation.tcb import (
    QeTcbLevel,
    TcbStatus,
    converge_statuses,
    evaluate_sgx_tcb,
    evaluate_tdx_tcb,
    match_qe_level,
    parse_qe_identity,
    parse_tcb_info,
    relaunch_status,
)
from sanctum.errors import EvidenceError, SanctumError

S = TcbStatus
SGX_INFO = collateral("sgx-v3-phala").tcb_info_text
TDX_INFO = collateral("tdx-v5-alibaba-servicetd").tcb_info_text
QE_TEXT = collateral("sgx-v3-phala").qe_identity_text


def _level(status=S.UP_TO_DATE, advisories=(), svn=0):
    return QeTcbLevel(svn, datetime(2024, 1, 1, tzinfo=UTC), status, tuple(advisories))


# Intel's convergeTcbStatuses (EvaluateTcb.cpp) as a table: (platform, component) -> result.
CONVERGE = {
    (S.UP_TO_DATE, S.OUT_OF_DATE): S.OUT_OF_DATE,
    (S.SW_HARDENING_NEEDED, S.OUT_OF_DATE): S.OUT_OF_DATE,
    (S.CONFIGURATION_NEEDED, S.OUT_OF_DATE): S.OUT_OF_DATE_CONFIGURATION_NEEDED,
    (S.CONFIGURATION_AND_SW_HARDENING_NEEDED, S.OUT_OF_DATE): S.OUT_OF_DATE_CONFIGURATION_NEEDED,
    (S.OUT_OF_DATE, S.OUT_OF_DATE): S.OUT_OF_DATE,
    (S.OUT_OF_DATE_CONFIGURATION_NEEDED, S.OUT_OF_DATE): S.OUT_OF_DATE_CONFIGURATION_NEEDED,
}
PLATFORM = [
    S.UP_TO_DATE,
    S.SW_HARDENING_NEEDED,
    S.CONFIGURATION_NEEDED,
    S.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    S.OUT_OF_DATE,
    S.OUT_OF_DATE_CONFIGURATION_NEEDED,
    S.REVOKED,
]


@pytest.mark.parametrize("platform", PLATFORM)
def test_convergence_matches_intel(platform):
    assert converge_statuses(platform, [S.UP_TO_DATE]) == platform
    assert converge_statuses(platform, [S.CONFIGURATION_NEEDED]) == platform
    assert converge_statuses(platform, [S.REVOKED]) == S.REVOKED
    assert converge_statuses(platform, [S.UP_TO_DATE, S.REVOKED]) == S.REVOKED
    expected = CONVERGE.get((platform, S.OUT_OF_DATE), platform)
    assert converge_statuses(platform, [S.OUT_OF_DATE]) == expected
    assert converge_statuses(platform, [S.UP_TO_DATE, S.OUT_OF_DATE]) == expected


@pytest.mark.parametrize(
    ("launch", "current", "expected"),
    [
        (S.OUT_OF_DATE, S.UP_TO_DATE, S.TD_RELAUNCH_ADVISED),
        (S.OUT_OF_DATE, S.SW_HARDENING_NEEDED, S.TD_RELAUNCH_ADVISED),
        (S.OUT_OF_DATE, S.CONFIGURATION_NEEDED, S.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED),
        (
            S.OUT_OF_DATE_CONFIGURATION_NEEDED,
            S.UP_TO_DATE,
            S.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
        ),
        (S.OUT_OF_DATE, S.OUT_OF_DATE, S.OUT_OF_DATE),
        (S.OUT_OF_DATE, None, S.OUT_OF_DATE),
        (S.UP_TO_DATE, S.UP_TO_DATE, S.UP_TO_DATE),
        (S.REVOKED, S.UP_TO_DATE, S.REVOKED),
        (S.CONFIGURATION_NEEDED, S.UP_TO_DATE, S.CONFIGURATION_NEEDED),
    ],
)
def test_relaunch_rule(launch, current, expected):
    assert relaunch_status(launch, current) == expected


def test_parse_real_tcb_infos():
    sgx = parse_tcb_info(SGX_INFO)
    assert sgx.id == "SGX"
    assert sgx.version == 3
    assert sgx.fmspc == bytes.fromhex("00A067110000")
    assert sgx.tdx_module is None
    tdx = parse_tcb_info(TDX_INFO)
    assert tdx.id == "TDX"
    assert tdx.tdx_module is not None
    assert tdx.module_identity(1) is not None
    assert tdx.module_identity(3) is not None
    assert tdx.module_identity(2) is None
    assert [lv.isv_svn for lv in tdx.module_identity(1).tcb_levels] == [6, 4, 2]
    v2 = parse_tcb_info(collateral("sgx-v3-automata-00606a-tcbinfo-v2").tcb_info_text)
    assert v2.version == 2
    assert all(level.advisory_ids == () for level in v2.tcb_levels)


def test_levels_are_sorted_whatever_the_order_served():
    document = json.loads(SGX_INFO)
    shuffled = list(document["tcbLevels"])
    random.Random(7).shuffle(shuffled)
    document["tcbLevels"] = shuffled
    reordered = parse_tcb_info(json.dumps(document).encode())
    assert reordered.tcb_levels == parse_tcb_info(SGX_INFO).tcb_levels


def test_sgx_evaluation_takes_first_level_at_or_below_the_platform():
    info = parse_tcb_info(SGX_INFO)
    top = info.tcb_levels[0]
    qe = _level()
    result = evaluate_sgx_tcb(
        info, cpu_svn_components=top.sgx_svns, pce_svn=top.pce_svn, qe_level=qe
    )
    assert result.platform_level == top
    # One component lower than the top level: the next matching level is chosen.
    lower = list(top.sgx_svns)
    index = next(i for i, v in enumerate(lower) if v > 0)
    lower[index] -= 1
    result = evaluate_sgx_tcb(info, cpu_svn_components=lower, pce_svn=top.pce_svn, qe_level=qe)
    assert result.platform_level != top
    with pytest.raises(EvidenceError) as info_error:
        evaluate_sgx_tcb(info, cpu_svn_components=[0] * 16, pce_svn=0, qe_level=qe)
    assert info_error.value.code == "tcb.not_supported"


def test_advisories_are_the_sorted_union():
    info = parse_tcb_info(SGX_INFO)
    level = next(lv for lv in info.tcb_levels if lv.advisory_ids)
    qe = _level(S.OUT_OF_DATE, ["INTEL-SA-00001", level.advisory_ids[0]])
    result = evaluate_sgx_tcb(
        info, cpu_svn_components=level.sgx_svns, pce_svn=level.pce_svn, qe_level=qe
    )
    assert result.advisory_ids == tuple(sorted({*level.advisory_ids, "INTEL-SA-00001"}))
    assert result.qe_level == qe


def test_tdx_components_compared_from_index_2_with_a_module_version():
    info = parse_tcb_info(TDX_INFO)
    top = info.tcb_levels[0]
    tee = bytearray(top.tdx_svns)
    tee[1] = 1  # TDX module major version 1: components 0 and 1 are the module's.
    tee[0] = 6  # Module SVN 6: TDX_01 UpToDate.
    result = evaluate_tdx_tcb(
        info,
        cpu_svn_components=top.sgx_svns,
        pce_svn=top.pce_svn,
        tee_tcb_svn=bytes(tee),
        qe_level=_level(),
    )
    assert result.platform_level == top
    assert result.tdx_module_level is not None
    assert result.tdx_module_level.isv_svn == 6
    tee[0] = 5
    older = evaluate_tdx_tcb(
        info,
        cpu_svn_components=top.sgx_svns,
        pce_svn=top.pce_svn,
        tee_tcb_svn=bytes(tee),
        qe_level=_level(),
    )
    assert older.tdx_module_level.status == S.OUT_OF_DATE
    assert older.status == converge_statuses(top.status, [S.OUT_OF_DATE])
    tee[0] = 1
    with pytest.raises(EvidenceError) as error:
        evaluate_tdx_tcb(
            info,
            cpu_svn_components=top.sgx_svns,
            pce_svn=top.pce_svn,
            tee_tcb_svn=bytes(tee),
            qe_level=_level(),
        )
    assert error.value.code == "tcb.not_supported"
    tee[0], tee[1] = 6, 2  # No TDX_02 identity.
    with pytest.raises(EvidenceError) as error:
        evaluate_tdx_tcb(
            info,
            cpu_svn_components=top.sgx_svns,
            pce_svn=top.pce_svn,
            tee_tcb_svn=bytes(tee),
            qe_level=_level(),
        )
    assert error.value.code == "tcb.not_supported"


def test_qe_level_matching():
    identity = parse_qe_identity(QE_TEXT)
    assert identity.id == "QE"
    assert identity.isv_prod_id == 1
    top = identity.tcb_levels[0]
    assert match_qe_level(identity, top.isv_svn + 5) == top
    assert match_qe_level(identity, top.isv_svn) == top
    with pytest.raises(EvidenceError) as error:
        match_qe_level(identity, 0)
    assert error.value.code == "tcb.not_supported"


def _mutated(text: bytes, change) -> bytes:
    document = json.loads(text)
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda d: d.pop("fmspc"), "tcb_info.malformed"),
        (lambda d: d.update(version=4), "tcb_info.unsupported"),
        (lambda d: d.update(tcbType=1), "tcb_info.unsupported"),
        (lambda d: d.update(id="SEV"), "tcb_info.unsupported"),
        (lambda d: d.update(fmspc="00A0671100"), "tcb_info.malformed"),
        (lambda d: d.update(issueDate="yesterday"), "tcb_info.malformed"),
        (lambda d: d.update(issueDate="2025-06-19T10:56:11"), "tcb_info.malformed"),
        (lambda d: d.update(tcbLevels=[]), "tcb_info.malformed"),
        (lambda d: d["tcbLevels"][0].update(tcbStatus="Fine"), "tcb_info.malformed"),
        (lambda d: d["tcbLevels"][0]["tcb"]["sgxtcbcomponents"].pop(), "tcb_info.malformed"),
        (
            lambda d: d["tcbLevels"][0]["tcb"]["sgxtcbcomponents"][0].update(svn=True),
            "tcb_info.malformed",
        ),
        (
            lambda d: d["tcbLevels"][0]["tcb"]["sgxtcbcomponents"][0].update(svn=256),
            "tcb_info.malformed",
        ),
        (lambda d: d["tcbLevels"][0].update(advisoryIDs="INTEL-SA-1"), "tcb_info.malformed"),
    ],
)
def test_malformed_tcb_info_is_refused(change, code):
    with pytest.raises(EvidenceError) as error:
        parse_tcb_info(_mutated(SGX_INFO, change))
    assert error.value.code == code


def test_tdx_tcb_info_needs_module_and_tdx_components():
    with pytest.raises(EvidenceError):
        parse_tcb_info(_mutated(TDX_INFO, lambda d: d.pop("tdxModule")))
    with pytest.raises(EvidenceError):
        parse_tcb_info(
            _mutated(TDX_INFO, lambda d: d["tcbLevels"][0]["tcb"].pop("tdxtcbcomponents"))
        )
    with pytest.raises(EvidenceError):
        parse_tcb_info(
            _mutated(TDX_INFO, lambda d: d["tdxModuleIdentities"][0].update(tcbLevels=[]))
        )
    with pytest.raises(EvidenceError):
        parse_tcb_info(
            _mutated(
                TDX_INFO,
                lambda d: d["tdxModuleIdentities"][0]["tcbLevels"][0].update(
                    tcbStatus="SWHardeningNeeded"
                ),
            )
        )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda d: d.update(version=3), "qe_identity.unsupported"),
        (lambda d: d.update(id="XE"), "qe_identity.unsupported"),
        (lambda d: d.update(mrsigner="00"), "qe_identity.malformed"),
        (lambda d: d.update(miscselect="0000000"), "qe_identity.malformed"),
        (lambda d: d.pop("isvprodid"), "qe_identity.malformed"),
        (lambda d: d.update(isvprodid=-1), "qe_identity.malformed"),
        (
            lambda d: d["tcbLevels"][0].update(tcbStatus="SWHardeningNeeded"),
            "qe_identity.malformed",
        ),
    ],
)
def test_malformed_qe_identity_is_refused(change, code):
    with pytest.raises(EvidenceError) as error:
        parse_qe_identity(_mutated(QE_TEXT, change))
    assert error.value.code == code


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_escape_the_parsers(data):
    for parser in (parse_tcb_info, parse_qe_identity):
        with contextlib.suppress(SanctumError):
            parser(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_texts_never_escape_the_parsers(data):
    for text, parser in ((TDX_INFO, parse_tcb_info), (QE_TEXT, parse_qe_identity)):
        mutated = bytearray(text)
        for _ in range(data.draw(st.integers(1, 3))):
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
        with contextlib.suppress(SanctumError):
            parser(bytes(mutated))
