"""The oasis-core partial vectors: PCS-format TCB info / QE identity published without CRLs.

Sanctum has no switch to skip CRL checks. These sets are verified with genuine Intel CRLs of the
same CA from a later date (taken from the full cases): every signature, chain and revocation check
runs, and because those CRLs were not yet issued at the vectors' verification time the result
carries Intel's collateral-expired flag (``allow_expired_collateral``), with the TCB status the
reference expects. Without the option the same input is refused with ``collateral.expired``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from _dcap_cases import EXPECTED, VECTORS, collateral, intel

from sanctum.attestation.collateral import collateral_from_pcs
from sanctum.attestation.verify import verify_quote
from sanctum.errors import EvidenceError

PARTIAL = {case["case"]: case for case in EXPECTED["partial_cases"]}
OASIS = VECTORS / "sources" / "oasis-core"
PLATFORM_CA_DONOR = "sgx-v3-automata-00606a"  # Its PCK CRL is the Platform CA's.


def _collateral(tcb_info: str, qe_identity: str):
    chain = (OASIS / "tcb_info_v3_fmspc_00606A000000_certs.pem").read_text()
    donor = collateral(PLATFORM_CA_DONOR)
    return collateral_from_pcs(
        tcb_info_body=(VECTORS / tcb_info).read_bytes(),
        tcb_info_issuer_chain=chain,
        qe_identity_body=(VECTORS / qe_identity).read_bytes(),
        qe_identity_issuer_chain=chain,
        pck_crl=donor.pck_crl,
        pck_crl_issuer_chain=donor.pck_crl_issuer_chain,
        root_ca_crl=donor.root_ca_crl,
    )


@pytest.mark.parametrize("name", ["sgx-v3-oasis-nocrl", "tdx-v4-oasis-nocrl"])
def test_partial_sets_give_the_expected_status(name):
    case = PARTIAL[name]
    raw = (VECTORS / case["quote_file"]).read_bytes()
    coll = _collateral(case["tcb_info"], case["qe_identity"])
    now = datetime.fromtimestamp(case["verify_at_unix"], UTC)
    result = verify_quote(raw, coll, trust_anchor=intel(), now=now, allow_expired_collateral=True)
    expected = case["intel_qvl_logic_expected"]
    assert str(result.status) == expected["status"]
    assert list(result.advisory_ids) == expected["advisory_ids"]
    assert str(result.qe.status) == expected["qe_tcb_status"]
    assert result.collateral_expired is True
    with pytest.raises(EvidenceError) as error:
        verify_quote(raw, coll, trust_anchor=intel(), now=now)
    assert error.value.code == "collateral.expired"


def test_trailing_bytes_quote_verifies_with_the_c0806f_collateral():
    raw = (VECTORS / PARTIAL["tdx-v4-oasis-trailing"]["quote_file"]).read_bytes()
    tdx = PARTIAL["tdx-v4-oasis-nocrl"]
    coll = _collateral(tdx["tcb_info"], tdx["qe_identity"])
    result = verify_quote(
        raw,
        coll,
        trust_anchor=intel(),
        now=datetime.fromtimestamp(1727000000, UTC),
        allow_expired_collateral=True,
    )
    assert str(result.status) == "UpToDate"
