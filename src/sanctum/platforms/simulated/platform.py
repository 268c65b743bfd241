"""The simulated SGX/TDX platform: an ``EvidenceSource`` implemented in software.

A :class:`SimulatedPlatform` is one simulated machine: it has a PCK key and certificate issued
by the simulation PKI (with an SGX extension giving its FMSPC and TCB), a Quoting Enclave with
its own attestation key, and an enclave or trust domain identity. It produces quotes in Intel's
genuine formats (SGX quote v3, TDX quote v4) and the matching collateral, so the unchanged
verifier accepts them when, and only when, it is given the simulation root as trust anchor.

Nothing in the quote says "simulated": the only thing that makes this evidence recognisable is
the trust anchor that verifies it. Dials (:class:`TcbDial`, ``revoked_pck``, ``debug``,
``qe_status``, expired collateral) make the verifier compute every status and refusal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sanctum.attestation.collateral import Collateral, load_collateral_bundle
from sanctum.errors import UsageError
from sanctum.platforms.evidence import REPORT_DATA_SIZE, PlatformInfo
from sanctum.platforms.simulated.collateral import (
    QE_IDENTITY,
    TD_QE_IDENTITY,
    CollateralDates,
    PlatformTcb,
    TcbDial,
    build_collateral_bundle,
    build_qe_identity,
    build_tcb_info,
)
from sanctum.platforms.simulated.identity import SgxIdentity, TdIdentity
from sanctum.platforms.simulated.pki import KeySource, PckCaKind, PckExtension, SimulationPki
from sanctum.platforms.simulated.quote import (
    CERTIFICATION_DATA_PCK_CHAIN,
    QuotingEnclave,
    encode_sgx_report_body,
    encode_td_report15_body,
    encode_td_report_body,
)

__all__ = ["DEFAULT_FMSPC", "DEFAULT_PCE_ID", "SimulatedPlatform"]

#: FMSPC of simulated platforms ("SIM" in ASCII), distinct from every Intel FMSPC.
DEFAULT_FMSPC: Final = {"sgx": bytes.fromhex("53494D000000"), "tdx": bytes.fromhex("53494D000081")}
#: PCE ID of simulated platforms (Intel's PCE ID is 0000 as well).
DEFAULT_PCE_ID: Final = bytes(2)


class SimulatedPlatform:
    """A simulated SGX or TDX machine that signs quotes and publishes matching collateral.

    Keys (PCK, attestation key) and platform identifiers are generated per instance; pass a
    ``seed`` to make them reproducible in tests.
    """

    def __init__(
        self,
        pki: SimulationPki,
        *,
        tee: Literal["sgx", "tdx"],
        identity: SgxIdentity | TdIdentity | None = None,
        tcb: TcbDial | str = TcbDial.UP_TO_DATE,
        revoked_pck: bool = False,
        revoked_pck_ca: bool = False,
        revoked_tcb_signing: bool = False,
        debug: bool = False,
        now: datetime,
        platform_tcb: PlatformTcb | None = None,
        pck_ca: PckCaKind | str = PckCaKind.PLATFORM,
        qe_status: Literal["UpToDate", "OutOfDate", "Revoked"] = "UpToDate",
        fmspc: bytes | None = None,
        quote_version: Literal[3, 4, 5] | None = None,
        certification_data_type: Literal[1, 2, 3, 5] = 5,
        seed: bytes | None = None,
    ) -> None:
        """Create a simulated platform.

        Args:
            pki: The simulation PKI that certifies this platform.
            tee: ``sgx`` (quote v3) or ``tdx`` (quote v4, or v5 with ``quote_version``).
            identity: The enclave (:class:`SgxIdentity`) or TD (:class:`TdIdentity`) identity;
                defaults to the default identity of the TEE.
            tcb: Which TCB status the collateral gives this platform.
            revoked_pck: List this platform's PCK certificate in the PCK CRL.
            revoked_pck_ca: List the issuing PCK CA in the root CA CRL.
            revoked_tcb_signing: List the TCB signing certificate in the root CA CRL.
            debug: Set the DEBUG attribute bit in the enclave or TD identity.
            now: When the platform's PCK certificate is issued.
            platform_tcb: The platform's CPUSVN, PCE SVN and TDX TEE_TCB_SVN.
            pck_ca: Which PCK CA issues the PCK certificate (``platform`` or ``processor``).
            qe_status: Status of the QE's SVN in the published QE identity.
            fmspc: The platform's FMSPC (6 bytes); defaults to :data:`DEFAULT_FMSPC`.
            quote_version: 3 for SGX (the only choice); 4 (TD report 1.0, default) or 5
                (TD report 1.5 with ``mr_servicetd`` and ``tee_tcb_svn2``) for TDX.
            certification_data_type: 5 embeds the PCK chain in the quote (Intel's normal
                case); 1 to 3 embed only the PPID and TCB, and the collateral bundle then carries
                the PCK chain in ``pck_certificate_chain``.
            seed: Makes keys and identifiers reproducible (tests only).

        Raises:
            UsageError: ``tee``, ``tcb``, ``pck_ca``, ``qe_status``, ``fmspc``,
                ``quote_version``, ``certification_data_type`` or the identity's type is not valid
                (``platform.invalid_option``).
        """
        if tee not in {"sgx", "tdx"}:
            raise UsageError(f"unknown TEE {tee!r}", code="platform.invalid_option")
        version = quote_version or (3 if tee == "sgx" else 4)
        if version not in ({3} if tee == "sgx" else {4, 5}):
            raise UsageError(
                f"a simulated {tee.upper()} platform cannot emit quote version {version}",
                code="platform.invalid_option",
            )
        self._version = version
        try:
            self._dial = TcbDial(tcb)
            self._pck_ca = PckCaKind(pck_ca)
        except ValueError as exc:
            raise UsageError(str(exc), code="platform.invalid_option") from exc
        if identity is None:
            identity = SgxIdentity() if tee == "sgx" else TdIdentity()
        if not isinstance(identity, SgxIdentity if tee == "sgx" else TdIdentity):
            raise UsageError(
                f"a {tee.upper()} platform needs a "
                f"{'SgxIdentity' if tee == 'sgx' else 'TdIdentity'}, got {type(identity).__name__}",
                code="platform.invalid_option",
            )
        if qe_status not in {"UpToDate", "OutOfDate", "Revoked"}:
            raise UsageError(f"unknown QE status {qe_status!r}", code="platform.invalid_option")
        if certification_data_type not in {1, 2, 3, 5}:
            raise UsageError(
                f"certification data type {certification_data_type} is not 1, 2, 3 or 5",
                code="platform.invalid_option",
            )
        if fmspc is not None and len(fmspc) != 6:
            raise UsageError("an FMSPC is 6 bytes", code="platform.invalid_option")
        if debug:
            identity = identity.with_debug()
        self._pki = pki
        self._tee: Literal["sgx", "tdx"] = tee
        self._identity: SgxIdentity | TdIdentity = identity
        self._revoked_pck = revoked_pck
        self._revoked_ca_serials = [
            certificate.serial_number
            for revoked, certificate in (
                (revoked_pck_ca, pki.pck_ca(self._pck_ca)[1]),
                (revoked_tcb_signing, pki.tcb_signing_certificate),
            )
            if revoked
        ]
        self._qe_status: Literal["UpToDate", "OutOfDate", "Revoked"] = qe_status
        self._now = now
        self._tcb = platform_tcb or PlatformTcb()
        self._fmspc = fmspc or DEFAULT_FMSPC[tee]
        source = KeySource(seed)
        platform_ca = self._pck_ca is PckCaKind.PLATFORM
        self._extension = PckExtension(
            ppid=source.random_bytes("ppid", 16),
            cpu_svn=self._tcb.cpu_svn,
            pce_svn=self._tcb.pce_svn,
            pce_id=DEFAULT_PCE_ID,
            fmspc=self._fmspc,
            sgx_type=1 if platform_ca else 0,
            platform_instance_id=source.random_bytes("platform-instance", 16)
            if platform_ca
            else None,
        )
        pck_key = source.key("pck")
        self._pck_serial = source.serial("pck")
        self._pck_certificate = pki.issue_pck_certificate(
            kind=self._pck_ca,
            public_key=pck_key.public_key(),
            extension=self._extension,
            now=now,
            serial=self._pck_serial,
        )
        chain = [self._pck_certificate, pki.pck_ca(self._pck_ca)[1], pki.root_certificate]
        qe_identity = QE_IDENTITY if tee == "sgx" else TD_QE_IDENTITY
        self._pck_chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        self._enclave = QuotingEnclave(
            attestation_key=source.key("attestation"),
            pck_key=pck_key,
            pck_chain_pem=self._pck_chain_pem,
            qe_identity=qe_identity,
            cpu_svn=self._tcb.cpu_svn,
            pce_svn=self._tcb.pce_svn,
            qe_id=source.random_bytes("qe-id", 16),
            certification_type=certification_data_type,
            ppid=self._extension.ppid,
            pce_id=self._extension.pce_id,
        )

    # EvidenceSource -----------------------------------------------------------------------

    @property
    def info(self) -> PlatformInfo:
        """Describe the platform: always ``simulated=True``."""
        return PlatformInfo(
            name="simulated",
            tee=self._tee,
            simulated=True,
            details={
                "fmspc": self._fmspc.hex(),
                "pck_ca": self._pck_ca.value,
                "tcb": self._dial.value,
                "quote_version": str(self._version),
            },
        )

    def quote(self, report_data: bytes) -> bytes:
        """Return a quote (SGX v3, TDX v4 or v5) with ``report_data`` zero-padded to 64 bytes.

        Raises:
            UsageError: ``report_data`` is longer than 64 bytes
                (``platform.report_data_too_long``).
        """
        if len(report_data) > REPORT_DATA_SIZE:
            raise UsageError(
                f"report data is {len(report_data)} bytes; at most {REPORT_DATA_SIZE} fit",
                code="platform.report_data_too_long",
            )
        if isinstance(self._identity, SgxIdentity):
            body = encode_sgx_report_body(
                self._identity, cpu_svn=self._tcb.cpu_svn, report_data=report_data
            )
            return self._enclave.quote_v3(body)
        if self._version == 5:
            body = encode_td_report15_body(
                self._identity,
                tee_tcb_svn=self._tcb.tee_tcb_svn,
                tee_tcb_svn2=self._tcb.tee_tcb_svn2 or self._tcb.tee_tcb_svn,
                report_data=report_data,
            )
            return self._enclave.quote_v5_tdx(body)
        body = encode_td_report_body(
            self._identity, tee_tcb_svn=self._tcb.tee_tcb_svn, report_data=report_data
        )
        return self._enclave.quote_v4_tdx(body)

    # Collateral ---------------------------------------------------------------------------

    def collateral_json(self, *, now: datetime | None = None, expired: bool = False) -> bytes:
        """Return the collateral bundle (JSON, dcap-qvl ``QuoteCollateralV3`` field names).

        Args:
            now: Issue time of TCB info, QE identity and CRLs (default: the platform's ``now``).
            expired: Issue everything 60 days before ``now`` with a next update 30 days ago.
        """
        moment = now or self._now
        dates = CollateralDates.expired(moment) if expired else CollateralDates.fresh(moment)
        return self.collateral_json_with(dates=dates)

    def collateral_json_with(
        self,
        *,
        dates: CollateralDates,
        tcb_info_dates: CollateralDates | None = None,
        qe_identity_dates: CollateralDates | None = None,
    ) -> bytes:
        """Return the collateral bundle with explicit dates (for expiry tests).

        Args:
            dates: Dates of the CRLs, and of TCB info and QE identity unless given separately.
            tcb_info_dates: Dates of the TCB info.
            qe_identity_dates: Dates of the QE identity.
        """
        mr_signer_seam = (
            self._identity.mr_signer_seam if isinstance(self._identity, TdIdentity) else bytes(48)
        )
        tcb_info = build_tcb_info(
            tee=self._tee,
            fmspc=self._fmspc,
            pce_id=DEFAULT_PCE_ID,
            tcb=self._tcb,
            dial=self._dial,
            dates=tcb_info_dates or dates,
            tdx_module_mr_signer=mr_signer_seam,
        )
        qe_identity = build_qe_identity(
            tee=self._tee,
            qe=self._enclave.qe_identity,
            dates=qe_identity_dates or dates,
            qe_status=self._qe_status,
        )
        return build_collateral_bundle(
            self._pki,
            pck_ca=self._pck_ca,
            tcb_info=tcb_info,
            qe_identity=qe_identity,
            crl_dates=dates,
            revoked_pck_serials=[self._pck_serial] if self._revoked_pck else [],
            revoked_ca_serials=self._revoked_ca_serials,
            pck_certificate_chain=None
            if self._enclave.certification_type == CERTIFICATION_DATA_PCK_CHAIN
            else self._pck_chain_pem.decode("ascii"),
        )

    def collateral(self, *, now: datetime | None = None, expired: bool = False) -> Collateral:
        """Return the collateral as the verifier's ``Collateral`` model.

        Args:
            now: Issue time of TCB info, QE identity and CRLs (default: the platform's ``now``).
            expired: Issue everything 60 days before ``now`` with a next update 30 days ago.
        """
        return load_collateral_bundle(self.collateral_json(now=now, expired=expired))

    def root_ca_der(self) -> bytes:
        """Return the simulation root certificate (DER): the trust anchor for these quotes."""
        return self._pki.root_der()

    # Facts for tests and tools ------------------------------------------------------------

    @property
    def identity(self) -> SgxIdentity | TdIdentity:
        """The enclave or TD identity the quotes report (with DEBUG set when dialled)."""
        return self._identity

    @property
    def pck_ca(self) -> PckCaKind:
        """Which PCK CA issued the PCK certificate (its CRL goes into the collateral)."""
        return self._pck_ca

    @property
    def pck_certificate(self) -> x509.Certificate:
        """The platform's PCK leaf certificate."""
        return self._pck_certificate

    @property
    def pck_extension(self) -> PckExtension:
        """The SGX extension of the PCK certificate (FMSPC, TCB, PPID, ...)."""
        return self._extension

    @property
    def quoting_enclave(self) -> QuotingEnclave:
        """The simulated Quoting Enclave (keys and QE identity), for building edge cases."""
        return self._enclave

    @property
    def platform_tcb(self) -> PlatformTcb:
        """The platform's TCB (CPUSVN, PCE SVN, TEE_TCB_SVN)."""
        return self._tcb
