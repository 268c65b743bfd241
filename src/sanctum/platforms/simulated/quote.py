"""Encoders for Intel DCAP quotes: SGX quote v3 and TDX quote v4 and v5, byte for byte.

These functions write the structures of Intel's ``sgx_quote_3.h``, ``sgx_quote_4.h`` and
``sgx_quote_5.h`` (integers little-endian, keys and signatures as raw big-endian P-256
``x || y`` and ``r || s``): the 48-byte header, the 384-byte SGX report body, the 584-byte TD
report body 1.0 and 648-byte 1.5, and the ECDSA signature data with the QE report, its PCK
signature, the QE authentication data and certification data type 5 (the PEM PCK chain), wrapped
in type 6 for v4/v5. :class:`QuotingEnclave` plays Intel's Quoting Enclave: it holds the
attestation key, the PCK key and its chain, and signs quotes.

The encoders are deliberately literal (one field per line, in Intel's order) so they can be
reviewed against the headers; the verifier's parser (:mod:`sanctum.attestation.quote`) reads
what they write, and PyPI dcap-qvl checks them independently in the tests.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from sanctum.platforms.evidence import REPORT_DATA_SIZE
from sanctum.platforms.simulated.identity import SgxIdentity, TdIdentity
from sanctum.platforms.simulated.pki import raw_signature

__all__ = [
    "ATTESTATION_KEY_TYPE_ECDSA_P256",
    "CERTIFICATION_DATA_PCK_CHAIN",
    "CERTIFICATION_DATA_QE_REPORT",
    "INTEL_QE_VENDOR_ID",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "QuotingEnclave",
    "encode_header",
    "encode_sgx_report_body",
    "encode_td_report15_body",
    "encode_td_report_body",
    "public_key_bytes",
    "qe_report_data",
]

#: Intel's QE vendor ID; verifiers require it in every quote header.
INTEL_QE_VENDOR_ID: Final = bytes.fromhex("939A7233F79C4CA9940A0DB3957F0607")
#: Attestation key type 2: ECDSA-256-with-P-256.
ATTESTATION_KEY_TYPE_ECDSA_P256: Final = 2
#: Header TEE type of SGX quotes.
TEE_TYPE_SGX: Final = 0x00000000
#: Header TEE type of TDX quotes.
TEE_TYPE_TDX: Final = 0x00000081
#: Certification data type 5: PCK certificate chain in PEM.
CERTIFICATION_DATA_PCK_CHAIN: Final = 5
#: Certification data type 6: QE report certification data (the v4/v5 wrapper).
CERTIFICATION_DATA_QE_REPORT: Final = 6

# PPID sizes of certification data types 1 (clear), 2 (RSA-2048-OAEP) and 3 (RSA-3072-OAEP).
_PPID_SIZES: Final = {1: 16, 2: 256, 3: 384}

SGX_REPORT_BODY_SIZE: Final = 384
TD_REPORT10_SIZE: Final = 584
TD_REPORT15_SIZE: Final = 648
#: Quote v5 body type of a TD report 1.5.
BODY_TYPE_TD_REPORT15: Final = 3


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """Return a P-256 public key as the 64 raw bytes ``x || y`` quotes carry."""
    numbers = key.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def qe_report_data(attestation_key: bytes, auth_data: bytes) -> bytes:
    """Return the QE report data binding the attestation key: SHA-256(key || auth) || 32 zeros."""
    return hashlib.sha256(attestation_key + auth_data).digest() + bytes(32)


def _pad_report_data(report_data: bytes) -> bytes:
    """Return ``report_data`` zero-padded to 64 bytes.

    Raises:
        ValueError: ``report_data`` is longer than 64 bytes.
    """
    if len(report_data) > REPORT_DATA_SIZE:
        msg = f"report data is {len(report_data)} bytes; at most {REPORT_DATA_SIZE} fit"
        raise ValueError(msg)
    return report_data.ljust(REPORT_DATA_SIZE, b"\0")


def encode_header(
    *, version: int, tee_type: int, qe_svn: int, pce_svn: int, user_data: bytes
) -> bytes:
    """Encode the 48-byte quote header.

    Args:
        version: 3 (SGX) or 4 (TDX).
        tee_type: :data:`TEE_TYPE_SGX` or :data:`TEE_TYPE_TDX`.
        qe_svn: QE security version (bytes 8..9; zero in TDX quotes).
        pce_svn: PCE security version (bytes 10..11; zero in TDX quotes).
        user_data: 20 bytes, the first 16 of which are the QE ID.

    Raises:
        ValueError: ``user_data`` is not 20 bytes.
    """
    if len(user_data) != 20:
        msg = "user_data must be 20 bytes"
        raise ValueError(msg)
    return (
        struct.pack("<HHIHH", version, ATTESTATION_KEY_TYPE_ECDSA_P256, tee_type, qe_svn, pce_svn)
        + INTEL_QE_VENDOR_ID
        + user_data
    )


def encode_sgx_report_body(identity: SgxIdentity, *, cpu_svn: bytes, report_data: bytes) -> bytes:
    """Encode a 384-byte SGX report body (``sgx_report_body_t``).

    Args:
        identity: The enclave's identity.
        cpu_svn: The platform's CPUSVN (16 bytes).
        report_data: Up to 64 bytes, zero-padded.

    Raises:
        ValueError: ``cpu_svn`` is not 16 bytes or ``report_data`` is too long.
    """
    if len(cpu_svn) != 16:
        msg = "cpu_svn must be 16 bytes"
        raise ValueError(msg)
    return b"".join(
        [
            cpu_svn,
            struct.pack("<I", identity.misc_select),
            bytes(12),
            identity.isv_ext_prod_id,
            identity.attributes,
            identity.mr_enclave,
            bytes(32),
            identity.mr_signer,
            bytes(32),
            identity.config_id,
            struct.pack("<HHH", identity.isv_prod_id, identity.isv_svn, identity.config_svn),
            bytes(42),
            identity.isv_family_id,
            _pad_report_data(report_data),
        ]
    )


def encode_td_report_body(identity: TdIdentity, *, tee_tcb_svn: bytes, report_data: bytes) -> bytes:
    """Encode a 584-byte TD report body 1.0 (``sgx_report2_body_t``).

    Args:
        identity: The trust domain's identity.
        tee_tcb_svn: The TDX module's TEE_TCB_SVN (16 bytes; [0] minor SVN, [1] major version).
        report_data: Up to 64 bytes, zero-padded.

    Raises:
        ValueError: ``tee_tcb_svn`` is not 16 bytes or ``report_data`` is too long.
    """
    if len(tee_tcb_svn) != 16:
        msg = "tee_tcb_svn must be 16 bytes"
        raise ValueError(msg)
    return b"".join(
        [
            tee_tcb_svn,
            identity.mr_seam,
            identity.mr_signer_seam,
            identity.seam_attributes,
            identity.td_attributes,
            identity.xfam,
            identity.mr_td,
            identity.mr_config_id,
            identity.mr_owner,
            identity.mr_owner_config,
            identity.rtmr0,
            identity.rtmr1,
            identity.rtmr2,
            identity.rtmr3,
            _pad_report_data(report_data),
        ]
    )


def encode_td_report15_body(
    identity: TdIdentity, *, tee_tcb_svn: bytes, tee_tcb_svn2: bytes, report_data: bytes
) -> bytes:
    """Encode a 648-byte TD report body 1.5 (``sgx_report2_body_v1_5_t``).

    Args:
        identity: The trust domain's identity (including ``mr_servicetd``).
        tee_tcb_svn: TEE_TCB_SVN at TD launch (16 bytes).
        tee_tcb_svn2: TEE_TCB_SVN of the currently running TDX module (16 bytes).
        report_data: Up to 64 bytes, zero-padded.

    Raises:
        ValueError: A TCB SVN is not 16 bytes or ``report_data`` is too long.
    """
    if len(tee_tcb_svn2) != 16:
        msg = "tee_tcb_svn2 must be 16 bytes"
        raise ValueError(msg)
    return (
        encode_td_report_body(identity, tee_tcb_svn=tee_tcb_svn, report_data=report_data)
        + tee_tcb_svn2
        + identity.mr_servicetd
    )


@dataclass(frozen=True, slots=True, eq=False)
class QuotingEnclave:
    """A software Quoting Enclave: signs report bodies into quotes.

    Attributes:
        attestation_key: The ECDSA attestation key (signs header + body).
        pck_key: The PCK private key (signs the QE report).
        pck_chain_pem: PCK leaf, PCK CA and root certificates in PEM (certification data 5).
        qe_identity: Identity of the QE itself (MRSIGNER, product ID, SVN, attributes).
        cpu_svn: The platform's CPUSVN, reported in the QE report.
        pce_svn: The platform's PCE SVN, reported in SGX quote headers.
        qe_id: 16-byte QE ID placed in the header's user data.
        auth_data: QE authentication data (hashed into the QE report data).
        certification_type: 5 embeds the PEM PCK chain (the normal case); 1, 2 and 3 embed the
            PPID (in clear, or as stand-in RSA-2048/3072 ciphertext) with CPUSVN, PCESVN and
            PCE ID, and the verifier must be given the PCK chain separately.
        ppid: The platform's PPID (for certification types 1 to 3).
        pce_id: The platform's PCE ID (for certification types 1 to 3).
    """

    attestation_key: ec.EllipticCurvePrivateKey = field(repr=False)
    pck_key: ec.EllipticCurvePrivateKey = field(repr=False)
    pck_chain_pem: bytes
    qe_identity: SgxIdentity
    cpu_svn: bytes
    pce_svn: int
    qe_id: bytes
    auth_data: bytes = bytes(range(32))
    certification_type: int = CERTIFICATION_DATA_PCK_CHAIN
    ppid: bytes = bytes(16)
    pce_id: bytes = bytes(2)

    def __post_init__(self) -> None:
        """Check the certification type.

        Raises:
            ValueError: ``certification_type`` is not 1, 2, 3 or 5.
        """
        if self.certification_type not in _PPID_SIZES and (
            self.certification_type != CERTIFICATION_DATA_PCK_CHAIN
        ):
            msg = f"certification data type {self.certification_type} is not 1, 2, 3 or 5"
            raise ValueError(msg)

    def _qe_certification(self) -> tuple[bytes, bytes, bytes]:
        """Return (attestation key bytes, QE report, QE report signature)."""
        attestation_public = public_key_bytes(self.attestation_key.public_key())
        qe_report = encode_sgx_report_body(
            self.qe_identity,
            cpu_svn=self.cpu_svn,
            report_data=qe_report_data(attestation_public, self.auth_data),
        )
        return attestation_public, qe_report, raw_signature(self.pck_key, qe_report)

    def _certification_data(self) -> bytes:
        """Return the certification data with its type and size header.

        Type 5 is the NUL-terminated PEM chain. Types 2 and 3 would carry the PPID encrypted
        for Intel's provisioning service; no one can decrypt it, so a deterministic stand-in of
        the right size is written.
        """
        if self.certification_type == CERTIFICATION_DATA_PCK_CHAIN:
            data = self.pck_chain_pem.rstrip(b"\0") + b"\0"
        else:
            size = _PPID_SIZES[self.certification_type]
            ppid = self.ppid
            if self.certification_type != 1:
                ppid = hashlib.shake_256(b"sanctum simulated encrypted PPID" + ppid).digest(size)
            data = ppid + self.cpu_svn + struct.pack("<H", self.pce_svn) + self.pce_id
        return struct.pack("<HI", self.certification_type, len(data)) + data

    def _header(self, *, version: int, tee_type: int) -> bytes:
        """Return the header this QE writes (TDX headers carry zero SVNs, as Intel's do)."""
        sgx = tee_type == TEE_TYPE_SGX
        return encode_header(
            version=version,
            tee_type=tee_type,
            qe_svn=self.qe_identity.isv_svn if sgx else 0,
            pce_svn=self.pce_svn if sgx else 0,
            user_data=self.qe_id + bytes(4),
        )

    def quote_v3(self, body: bytes) -> bytes:
        """Return an SGX quote v3 over a 384-byte SGX report ``body``.

        Raises:
            ValueError: ``body`` has the wrong size.
        """
        if len(body) != SGX_REPORT_BODY_SIZE:
            msg = "an SGX report body is 384 bytes"
            raise ValueError(msg)
        signed = self._header(version=3, tee_type=TEE_TYPE_SGX) + body
        attestation_public, qe_report, qe_signature = self._qe_certification()
        signature_data = b"".join(
            [
                raw_signature(self.attestation_key, signed),
                attestation_public,
                qe_report,
                qe_signature,
                struct.pack("<H", len(self.auth_data)),
                self.auth_data,
                self._certification_data(),
            ]
        )
        return signed + struct.pack("<I", len(signature_data)) + signature_data

    def quote_v4_tdx(self, body: bytes) -> bytes:
        """Return a TDX quote v4 over a 584-byte TD report 1.0 ``body``.

        Raises:
            ValueError: ``body`` has the wrong size.
        """
        if len(body) != TD_REPORT10_SIZE:
            msg = "a TD report 1.0 body is 584 bytes"
            raise ValueError(msg)
        return self._sign_v4(self._header(version=4, tee_type=TEE_TYPE_TDX) + body)

    def quote_v5_tdx(self, body: bytes) -> bytes:
        """Return a TDX quote v5 over a 648-byte TD report 1.5 ``body`` (body type 3).

        Raises:
            ValueError: ``body`` has the wrong size.
        """
        if len(body) != TD_REPORT15_SIZE:
            msg = "a TD report 1.5 body is 648 bytes"
            raise ValueError(msg)
        header = self._header(version=5, tee_type=TEE_TYPE_TDX)
        return self._sign_v4(header + struct.pack("<HI", BODY_TYPE_TD_REPORT15, len(body)) + body)

    def _sign_v4(self, signed: bytes) -> bytes:
        """Append v4/v5 signature data (outer certification type 6) to the ``signed`` bytes."""
        attestation_public, qe_report, qe_signature = self._qe_certification()
        qe_certification = b"".join(
            [
                qe_report,
                qe_signature,
                struct.pack("<H", len(self.auth_data)),
                self.auth_data,
                self._certification_data(),
            ]
        )
        signature_data = b"".join(
            [
                raw_signature(self.attestation_key, signed),
                attestation_public,
                struct.pack("<HI", CERTIFICATION_DATA_QE_REPORT, len(qe_certification)),
                qe_certification,
            ]
        )
        return signed + struct.pack("<I", len(signature_data)) + signature_data
