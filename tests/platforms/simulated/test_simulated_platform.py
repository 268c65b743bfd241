"""The simulated platform checked independently by PyPI dcap-qvl (Phala's Rust verifier)."""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import datetime, timedelta
from pathlib import Path

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sanctum.attestation.collateral import extract_signed_body
from sanctum.errors import UsageError
from sanctum.platforms.evidence import EvidenceSource
from sanctum.platforms.simulated import (
    ADVISORY_IDS,
    CollateralDates,
    PlatformTcb,
    SgxIdentity,
    SimulatedPlatform,
    SimulationPki,
    TcbDial,
    TdIdentity,
)
from sanctum.platforms.simulated.collateral import signed_json
from sanctum.platforms.simulated.quote import INTEL_QE_VENDOR_ID, public_key_bytes

CASES = Path(__file__).parents[2] / "vectors" / "dcap" / "cases"
REPORT_DATA = bytes(range(64))

# Offsets of report data in the quote (header 48 + offset inside the body).
SGX_REPORT_DATA = 48 + 320
TD_REPORT_DATA = 48 + 520

STATUS = {
    TcbDial.UP_TO_DATE: "UpToDate",
    TcbDial.SW_HARDENING_NEEDED: "SWHardeningNeeded",
    TcbDial.CONFIGURATION_NEEDED: "ConfigurationNeeded",
    TcbDial.CONFIGURATION_AND_SW_HARDENING_NEEDED: "ConfigurationAndSWHardeningNeeded",
    TcbDial.OUT_OF_DATE: "OutOfDate",
    TcbDial.OUT_OF_DATE_CONFIGURATION_NEEDED: "OutOfDateConfigurationNeeded",
}


def _verify(
    platform: SimulatedPlatform,
    quote: bytes,
    now: datetime,
    *,
    collateral: bytes | None = None,
    root: bytes | None = None,
) -> dcap_qvl.VerifiedReport:
    bundle = dcap_qvl.QuoteCollateralV3.from_json(
        (collateral or platform.collateral_json()).decode()
    )
    return dcap_qvl.verify_with_root_ca(
        quote, bundle, root or platform.root_ca_der(), int(now.timestamp()) + 1
    )


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_up_to_date_quote_verifies_with_the_simulation_root(
    pki: SimulationPki, now: datetime, tee: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    quote = platform.quote(REPORT_DATA)
    report = _verify(platform, quote, now)
    assert report.status == "UpToDate"
    assert report.advisory_ids == []
    claims = json.loads(report.to_json())
    assert claims["qe_status"]["status"] == "UpToDate"
    assert bytes(report.ppid) == platform.pck_extension.ppid


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
@pytest.mark.parametrize("dial", list(STATUS))
def test_each_accepted_dial_gives_its_status_and_advisories(
    pki: SimulationPki, now: datetime, tee: str, dial: TcbDial
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, tcb=dial, now=now)  # type: ignore[arg-type]
    report = _verify(platform, platform.quote(b"x"), now)
    assert report.status == STATUS[dial]
    assert sorted(report.advisory_ids) == sorted(ADVISORY_IDS[dial])


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tcb": "not_supported"}, "No matching TCB level"),
        ({"tcb": "revoked"}, "Revoked"),
        ({"revoked_pck": True}, "CertRevoked"),
        ({"debug": True}, "Debug mode is enabled"),
    ],
)
def test_refusal_dials_are_refused(
    pki: SimulationPki, now: datetime, tee: str, options: dict[str, object], message: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now, **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        _verify(platform, platform.quote(b""), now)


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_out_of_date_qe_converges_to_out_of_date(
    pki: SimulationPki, now: datetime, tee: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now, qe_status="OutOfDate")  # type: ignore[arg-type]
    report = _verify(platform, platform.quote(b""), now)
    assert report.status == "OutOfDate"
    assert report.advisory_ids == ["SANCTUM-SIM-SA-00006"]


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_processor_ca_platform_verifies(pki: SimulationPki, now: datetime, tee: str) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now, pck_ca="processor")  # type: ignore[arg-type]
    assert "Processor CA" in platform.pck_certificate.issuer.rfc4514_string()
    assert platform.pck_extension.platform_instance_id is None
    assert _verify(platform, platform.quote(b""), now).status == "UpToDate"


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_simulated_quotes_fail_against_intels_root(
    pki: SimulationPki, now: datetime, tee: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    bundle = dcap_qvl.QuoteCollateralV3.from_json(platform.collateral_json().decode())
    with pytest.raises(ValueError, match="Verification failed"):
        dcap_qvl.verify(platform.quote(b""), bundle, int(now.timestamp()))
    intel_root = CASES.parent / "sources" / "phala-dcap-qvl" / "TrustedRootCA.der"
    with pytest.raises(ValueError, match="Verification failed"):
        _verify(platform, platform.quote(b""), now, root=intel_root.read_bytes())


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_another_simulation_root_is_refused(pki: SimulationPki, now: datetime, tee: str) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    stranger = SimulationPki.create(now=now)
    with pytest.raises(ValueError, match="Verification failed"):
        _verify(platform, platform.quote(b""), now, root=stranger.root_der())


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_collateral_expiry(pki: SimulationPki, now: datetime, tee: str) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    quote = platform.quote(b"")
    with pytest.raises(ValueError, match=r"[Ee]xpired"):
        _verify(platform, quote, now, collateral=platform.collateral_json(expired=True))
    # Only the TCB info expired (CRLs and QE identity are fresh).
    fresh = CollateralDates.fresh(now)
    stale = CollateralDates.expired(now)
    bundle = platform.collateral_json_with(dates=fresh, tcb_info_dates=stale)
    with pytest.raises(ValueError, match="TCBInfo expired"):
        _verify(platform, quote, now, collateral=bundle)
    bundle = platform.collateral_json_with(dates=fresh, qe_identity_dates=stale)
    with pytest.raises(ValueError, match="QE Identity expired"):
        _verify(platform, quote, now, collateral=bundle)
    # Collateral issued in the future is not yet valid.
    later = platform.collateral_json(now=now + timedelta(days=1))
    with pytest.raises(ValueError, match="Verification failed"):
        _verify(platform, quote, now, collateral=later)


def test_sgx_quote_layout_and_identity(pki: SimulationPki, now: datetime) -> None:
    identity = SgxIdentity(
        mr_enclave=bytes([1]) * 32,
        mr_signer=bytes([2]) * 32,
        isv_prod_id=0x1234,
        isv_svn=7,
        config_svn=3,
        misc_select=0x01020304,
    )
    platform = SimulatedPlatform(pki, tee="sgx", identity=identity, now=now)
    quote = platform.quote(b"\xaa" * 10)
    version, key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", quote)
    assert (version, key_type, tee_type) == (3, 2, 0)
    assert qe_svn == platform.quoting_enclave.qe_identity.isv_svn
    assert pce_svn == platform.platform_tcb.pce_svn
    assert quote[12:28] == INTEL_QE_VENDOR_ID
    assert quote[SGX_REPORT_DATA : SGX_REPORT_DATA + 64] == b"\xaa" * 10 + bytes(54)
    parsed = dcap_qvl.parse_quote(quote)
    assert parsed.is_sgx()
    assert bytes(parsed.report.mr_enclave) == identity.mr_enclave
    assert bytes(parsed.report.mr_signer) == identity.mr_signer
    assert bytes(parsed.report.report_data) == b"\xaa" * 10 + bytes(54)
    assert bytes(parsed.report.cpu_svn) == platform.platform_tcb.cpu_svn
    body = quote[48:432]
    assert struct.unpack_from("<HHH", body, 256) == (0x1234, 7, 3)
    assert struct.unpack_from("<I", body, 16) == (0x01020304,)
    assert parsed.fmspc().lower() == platform.pck_extension.fmspc.hex()
    assert parsed.ca() == "platform"
    assert _verify(platform, quote, now).status == "UpToDate"


def test_tdx_quote_layout_and_identity(pki: SimulationPki, now: datetime) -> None:
    identity = TdIdentity(
        mr_td=bytes([3]) * 48,
        mr_config_id=bytes([4]) * 48,
        mr_owner=bytes([5]) * 48,
        rtmr3=bytes([6]) * 48,
    )
    platform = SimulatedPlatform(pki, tee="tdx", identity=identity, now=now)
    quote = platform.quote(REPORT_DATA)
    version, key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", quote)
    assert (version, key_type, tee_type, qe_svn, pce_svn) == (4, 2, 0x81, 0, 0)
    assert quote[TD_REPORT_DATA : TD_REPORT_DATA + 64] == REPORT_DATA
    parsed = dcap_qvl.parse_quote(quote)
    assert parsed.is_tdx()
    report = parsed.report
    assert bytes(report.mr_td) == identity.mr_td
    assert bytes(report.mr_config_id) == identity.mr_config_id
    assert bytes(report.mr_owner) == identity.mr_owner
    assert bytes(report.rt_mr3) == identity.rtmr3
    assert bytes(report.rt_mr0) == identity.rtmr0
    assert bytes(report.tee_tcb_svn) == platform.platform_tcb.tee_tcb_svn
    assert bytes(report.td_attributes) == identity.td_attributes
    assert bytes(report.report_data) == REPORT_DATA
    assert _verify(platform, quote, now).status == "UpToDate"


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_debug_dial_sets_the_debug_bit(pki: SimulationPki, now: datetime, tee: str) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now, debug=True)  # type: ignore[arg-type]
    assert platform.identity.debug
    quote = platform.quote(b"")
    if tee == "sgx":
        assert quote[48 + 48] & 0x02
    else:
        assert quote[48 + 120] & 0x01
    normal = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    assert not normal.identity.debug


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_qe_report_binds_the_attestation_key(pki: SimulationPki, now: datetime, tee: str) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    quote = platform.quote(b"")
    signature_data = quote[436:] if tee == "sgx" else quote[636:]
    attestation_key = signature_data[64:128]
    assert attestation_key == public_key_bytes(
        platform.quoting_enclave.attestation_key.public_key()
    )
    qe_start = 128 if tee == "sgx" else 134
    qe_report = signature_data[qe_start : qe_start + 384]
    auth_size = struct.unpack_from("<H", signature_data, qe_start + 448)[0]
    auth = signature_data[qe_start + 450 : qe_start + 450 + auth_size]
    assert qe_report[320:352] == hashlib.sha256(attestation_key + auth).digest()
    assert qe_report[352:384] == bytes(32)
    # The QE report is signed by the PCK key.
    raw = signature_data[qe_start + 384 : qe_start + 448]
    pck_public = platform.pck_certificate.public_key()
    assert isinstance(pck_public, ec.EllipticCurvePublicKey)
    pck_public.verify(
        encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
        qe_report,
        ec.ECDSA(hashes.SHA256()),
    )
    # Certification data type 5 carries the three-certificate PEM chain.
    cert_type, cert_size = struct.unpack_from("<HI", signature_data, qe_start + 450 + auth_size)
    assert cert_type == 5
    chain = signature_data[qe_start + 456 + auth_size : qe_start + 456 + auth_size + cert_size]
    certificates = x509.load_pem_x509_certificates(chain.rstrip(b"\0"))
    assert [c.subject for c in certificates] == [
        platform.pck_certificate.subject,
        pki.platform_ca_certificate.subject,
        pki.root_certificate.subject,
    ]
    declared = struct.unpack_from("<I", quote, 432 if tee == "sgx" else 632)[0]
    assert len(quote) == (436 if tee == "sgx" else 636) + declared


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_tampered_quote_is_refused(pki: SimulationPki, now: datetime, tee: str) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    quote = bytearray(platform.quote(b""))
    quote[SGX_REPORT_DATA if tee == "sgx" else TD_REPORT_DATA] ^= 1
    with pytest.raises(ValueError, match="Verification failed"):
        _verify(platform, bytes(quote), now)


def test_report_data_longer_than_64_bytes_is_a_usage_error(
    pki: SimulationPki, now: datetime
) -> None:
    platform = SimulatedPlatform(pki, tee="sgx", now=now)
    with pytest.raises(UsageError) as info:
        platform.quote(bytes(65))
    assert info.value.code == "platform.report_data_too_long"
    assert platform.quote(bytes(64))[SGX_REPORT_DATA : SGX_REPORT_DATA + 64] == bytes(64)


def test_info_and_protocol(pki: SimulationPki, now: datetime) -> None:
    platform = SimulatedPlatform(pki, tee="tdx", now=now)
    assert isinstance(platform, EvidenceSource)
    info = platform.info
    assert (info.name, info.tee, info.simulated) == ("simulated", "tdx", True)
    assert info.details["quote_version"] == "4"
    assert platform.root_ca_der() == pki.root_der()


@pytest.mark.parametrize(
    "options",
    [
        {"tee": "sev-snp"},
        {"tee": "sgx", "identity": TdIdentity()},
        {"tee": "tdx", "identity": SgxIdentity()},
        {"tee": "sgx", "tcb": "great"},
        {"tee": "sgx", "pck_ca": "somewhere"},
        {"tee": "sgx", "qe_status": "Fine"},
        {"tee": "tdx", "fmspc": bytes(5)},
        {"tee": "sgx", "certification_data_type": 4},
    ],
)
def test_invalid_options_are_usage_errors(
    pki: SimulationPki, now: datetime, options: dict[str, object]
) -> None:
    with pytest.raises(UsageError) as info:
        SimulatedPlatform(pki, now=now, **options)  # type: ignore[arg-type]
    assert info.value.code == "platform.invalid_option"


def test_seeded_platforms_are_reproducible(pki: SimulationPki, now: datetime) -> None:
    first = SimulatedPlatform(pki, tee="sgx", now=now, seed=b"s")
    second = SimulatedPlatform(pki, tee="sgx", now=now, seed=b"s")
    third = SimulatedPlatform(pki, tee="sgx", now=now, seed=b"t")
    assert first.pck_certificate.public_key() == second.pck_certificate.public_key()
    assert first.pck_extension == second.pck_extension
    assert first.quote(b"")[:432] == second.quote(b"")[:432]
    assert first.pck_extension.ppid != third.pck_extension.ppid


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_bundle_has_the_real_shape_and_signs_exact_text(
    pki: SimulationPki, now: datetime, tee: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    bundle = json.loads(platform.collateral_json())
    real = json.loads(
        (CASES / f"{tee}-v{3 if tee == 'sgx' else 4}-phala.collateral.json").read_text()
    )
    assert list(bundle) == list(real)
    tcb_info = bundle["tcb_info"]
    assert ": " not in tcb_info
    assert ", " not in tcb_info
    parsed_tcb = json.loads(tcb_info)
    real_tcb = json.loads(real["tcb_info"])
    assert list(parsed_tcb) == list(real_tcb)
    assert parsed_tcb["id"] == tee.upper()
    assert parsed_tcb["fmspc"] == platform.pck_extension.fmspc.hex().upper()
    qe = json.loads(bundle["qe_identity"])
    assert list(qe) == list(json.loads(real["qe_identity"]))
    assert qe["id"] == ("QE" if tee == "sgx" else "TD_QE")
    if tee == "tdx":
        module = parsed_tcb["tdxModuleIdentities"][0]
        assert module["id"] == "TDX_01"
        assert list(module) == list(real_tcb["tdxModuleIdentities"][0])
    public = pki.tcb_signing_certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for text, signature in (
        (bundle["tcb_info"], bundle["tcb_info_signature"]),
        (bundle["qe_identity"], bundle["qe_identity_signature"]),
    ):
        raw = bytes.fromhex(signature)
        public.verify(
            encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
            text.encode(),
            ec.ECDSA(hashes.SHA256()),
        )
    assert bundle["pck_crl_issuer_chain"].count("BEGIN CERTIFICATE") == 2
    assert bundle["tcb_info_issuer_chain"].count("BEGIN CERTIFICATE") == 2


def test_tdx_quote_v5_with_td_report_15(pki: SimulationPki, now: datetime) -> None:
    tcb = PlatformTcb(tee_tcb_svn2=bytes([4, 1, 2]) + bytes(13))
    platform = SimulatedPlatform(pki, tee="tdx", now=now, quote_version=5, platform_tcb=tcb)
    quote = platform.quote(REPORT_DATA)
    version, _, tee_type = struct.unpack_from("<HHI", quote)
    assert (version, tee_type) == (5, 0x81)
    assert struct.unpack_from("<HI", quote, 48) == (3, 648)
    body = quote[54 : 54 + 648]
    assert body[520:584] == REPORT_DATA
    assert body[584:600] == tcb.tee_tcb_svn2
    assert body[600:648] == bytes(48)
    report = dcap_qvl.parse_quote(quote).report
    assert bytes(report.tee_tcb_svn2) == tcb.tee_tcb_svn2
    assert _verify(platform, quote, now).status == "UpToDate"
    assert platform.info.details["quote_version"] == "5"


def test_tdx_quote_v5_with_a_service_td_is_refused_by_dcap_qvl(
    pki: SimulationPki, now: datetime
) -> None:
    # dcap-qvl refuses a non-zero MR_SERVICETD by default; Intel's QVL leaves it to policy.
    identity = TdIdentity(mr_servicetd=bytes([9]) * 48)
    platform = SimulatedPlatform(pki, tee="tdx", now=now, quote_version=5, identity=identity)
    quote = platform.quote(b"")
    assert bytes(dcap_qvl.parse_quote(quote).report.mr_service_td) == identity.mr_servicetd
    with pytest.raises(ValueError, match="Invalid MR service TD"):
        _verify(platform, quote, now)


@pytest.mark.parametrize(("tee", "version"), [("sgx", 4), ("sgx", 5), ("tdx", 3)])
def test_unsupported_quote_versions_are_usage_errors(
    pki: SimulationPki, now: datetime, tee: str, version: int
) -> None:
    with pytest.raises(UsageError) as info:
        SimulatedPlatform(pki, tee=tee, now=now, quote_version=version)  # type: ignore[arg-type]
    assert info.value.code == "platform.invalid_option"


def test_pcs_response_form_round_trips_through_the_verifier_loader(
    pki: SimulationPki, now: datetime
) -> None:
    platform = SimulatedPlatform(pki, tee="tdx", now=now)
    bundle = json.loads(platform.collateral_json())
    for key, name in (("tcbInfo", "tcb_info"), ("enclaveIdentity", "qe_identity")):
        body = signed_json(pki, key, bundle[name])
        assert json.loads(body)[key] == json.loads(bundle[name])
        text, signature = extract_signed_body(body, key)
        assert text == bundle[name].encode()
        assert len(signature) == 64


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
@pytest.mark.parametrize("cert_type", [1, 2, 3])
def test_ppid_certification_types_need_the_chain_in_the_collateral(
    pki: SimulationPki, now: datetime, tee: str, cert_type: int
) -> None:
    platform = SimulatedPlatform(
        pki,
        tee=tee,  # type: ignore[arg-type]
        now=now,
        certification_data_type=cert_type,  # type: ignore[arg-type]
    )
    quote = platform.quote(b"")
    # The certification data sits at the very end of the quote: type, size, PPID, TCB, PCE ID.
    ppid_size = {1: 16, 2: 256, 3: 384}[cert_type]
    data = quote[-(ppid_size + 20) :]
    assert struct.unpack_from("<HI", quote, len(quote) - ppid_size - 26) == (
        cert_type,
        ppid_size + 20,
    )
    if cert_type == 1:
        assert data[:16] == platform.pck_extension.ppid
    assert data[ppid_size : ppid_size + 16] == platform.platform_tcb.cpu_svn
    assert struct.unpack_from("<H", data, ppid_size + 16)[0] == platform.platform_tcb.pce_svn
    assert data[ppid_size + 18 :] == platform.pck_extension.pce_id
    bundle = json.loads(platform.collateral_json())
    assert bundle["pck_certificate_chain"].count("BEGIN CERTIFICATE") == 3
    assert _verify(platform, quote, now).status == "UpToDate"
    del bundle["pck_certificate_chain"]
    with pytest.raises(ValueError, match="Verification failed"):
        _verify(platform, quote, now, collateral=json.dumps(bundle).encode())


def test_pck_chain_certification_has_no_extra_bundle_field(
    pki: SimulationPki, now: datetime
) -> None:
    platform = SimulatedPlatform(pki, tee="sgx", now=now)
    assert "pck_certificate_chain" not in json.loads(platform.collateral_json())
