"""Differential tests: our quote parser and PyPI dcap-qvl 0.7.0 read the same fields."""

import struct
from pathlib import Path

import dcap_qvl
import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.attestation.errors import QuoteFormatError
from sanctum.attestation.pck import pck_ca_type
from sanctum.attestation.quote import Quote, SgxReportBody, TdReportBody, parse_quote

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
QUOTES = {path.name: path.read_bytes() for path in sorted(VECTORS.glob("cases/*.quote.bin"))}
QUOTES["oasis-trailing"] = (
    VECTORS / "sources/oasis-core/quote_v4_tdx_ecdsa_p256_trailing.bin"
).read_bytes()

TD_FIELDS = {
    "tee_tcb_svn": "tee_tcb_svn",
    "mr_seam": "mr_seam",
    "mr_signer_seam": "mr_signer_seam",
    "seam_attributes": "seam_attributes",
    "td_attributes": "td_attributes",
    "xfam": "xfam",
    "mr_td": "mr_td",
    "mr_config_id": "mr_config_id",
    "mr_owner": "mr_owner",
    "mr_owner_config": "mr_owner_config",
    "rtmr0": "rt_mr0",
    "rtmr1": "rt_mr1",
    "rtmr2": "rt_mr2",
    "rtmr3": "rt_mr3",
    "report_data": "report_data",
}


def _assert_same(ours: Quote, theirs) -> None:
    header = theirs.header
    assert ours.header.version == header.version
    assert ours.header.attestation_key_type == header.attestation_key_type
    assert int(ours.header.tee_type) == header.tee_type
    assert ours.header.qe_svn == header.qe_svn
    assert ours.header.pce_svn == header.pce_svn
    assert ours.header.qe_vendor_id == header.qe_vendor_id
    assert ours.header.user_data == header.user_data
    report = theirs.report
    if isinstance(ours.body, SgxReportBody):
        assert theirs.is_sgx()
        for name in ("cpu_svn", "attributes", "mr_enclave", "mr_signer", "report_data"):
            assert getattr(ours.body, name) == getattr(report, name), name
    else:
        assert isinstance(ours.body, TdReportBody)
        assert theirs.is_tdx()
        for mine, their_name in TD_FIELDS.items():
            assert getattr(ours.body, mine) == getattr(report, their_name), mine
        if ours.body.mr_servicetd is not None:
            assert ours.body.tee_tcb_svn2 == report.tee_tcb_svn2
            assert ours.body.mr_servicetd == report.mr_service_td
        extension = ours.body.extension
        if extension is not None:
            assert extension.vmid == report.vmid
            assert extension.td_id == report.td_id
            assert extension.dev_info == report.dev_info
            assert extension.init_servtd_hash == report.init_service_td_hash
            assert extension.init_servtd_attributes == report.init_service_td_attributes
            assert extension.init_cpu_svn == report.init_cpu_svn
            assert extension.init_tee_tcb_svn == report.init_tee_tcb_svn
            assert extension.init_tee_fmspc == report.init_tee_fmspc
            assert extension.cur_servtd_hash == report.cur_service_td_hash
            assert extension.cur_servtd_attributes == report.cur_service_td_attributes


@pytest.mark.parametrize("name", sorted(QUOTES))
def test_same_fields_as_dcap_qvl(name):
    data = QUOTES[name]
    ours = parse_quote(data)
    theirs = dcap_qvl.parse_quote(data)
    _assert_same(ours, theirs)
    chain = ours.signature.qe.certification.pck_chain_pem()
    assert b"".join(chain).strip() == theirs.cert_chain_pem_bytes().rstrip(b"\0").strip()
    leaf = x509.load_pem_x509_certificate(chain[0])
    assert pck_ca_type(leaf) == theirs.ca()


def test_td_report_15_ex_matches_dcap_qvl():
    base = QUOTES["tdx-v5-gotdxguest.quote.bin"]
    base = base[: parse_quote(base).length]
    extension = bytes((i * 7 + 3) % 256 for i in range(237))
    head = bytearray(base[:54])
    struct.pack_into("<HI", head, 48, 4, 885)
    data = bytes(head) + base[54 : 54 + 648] + extension + base[54 + 648 :]
    ours = parse_quote(data)
    assert isinstance(ours.body, TdReportBody)
    assert ours.body.extension is not None
    _assert_same(ours, dcap_qvl.parse_quote(data))


SEEDS = [QUOTES["sgx-v3-phala.quote.bin"], QUOTES["tdx-v5-gotdxguest.quote.bin"]]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_quotes_we_accept_dcap_qvl_reads_the_same(seed, data):
    # We are the stricter parser: whatever we accept, dcap-qvl parses too, with equal fields.
    # (The reverse does not hold: dcap-qvl's parser leaves attestation key type, TEE type,
    # certification data types and left-over bytes to later checks, or ignores them.)
    buffer = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 3))):
        buffer[data.draw(st.integers(0, len(buffer) - 1))] = data.draw(st.integers(0, 255))
    raw = bytes(buffer)
    try:
        ours = parse_quote(raw)
    except QuoteFormatError:
        return
    _assert_same(ours, dcap_qvl.parse_quote(raw))


@pytest.mark.parametrize(
    ("offset", "value", "code"),
    [
        (2, 3, "quote.unsupported_key_type"),
        (4, 0x82, "quote.unsupported_tee"),
    ],
)
def test_stricter_than_dcap_qvl(offset, value, code):
    raw = bytearray(QUOTES["tdx-v5-gotdxguest.quote.bin"])
    raw[offset] = value
    with pytest.raises(QuoteFormatError) as caught:
        parse_quote(bytes(raw))
    assert caught.value.code == code
    # dcap-qvl's parser reads it anyway; its verifier refuses later (or not at all).
    dcap_qvl.parse_quote(bytes(raw))
