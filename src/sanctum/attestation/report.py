"""Report bodies carried by DCAP quotes: the SGX enclave report and the TDX TD report.

The SGX report body (384 bytes, ``sgx_report_body_t``) is both the application enclave's report
in SGX quotes and the Quoting Enclave's report in every quote. The TD report body comes in three
sizes: 1.0 (584 bytes, quote v4 and v5 body type 2), 1.5 (648 bytes, v5 body type 3, adding
``tee_tcb_svn2`` and ``mr_servicetd``) and 1.5 "Ex" (885 bytes, v5 body type 4, adding the
service-TD and launch fields of the newest TDX modules).

Parsing is a single precompiled :class:`struct.Struct` unpack per body; every field, reserved
ones included, is kept so that :meth:`SgxReportBody.to_bytes` and :meth:`TdReportBody.to_bytes`
reproduce the input exactly. Layouts: intel/linux-sgx ``sgx_report.h``, DCAP ``sgx_quote_4.h``
and ``sgx_quote_5.h``, Intel QVL ``QuoteStructures.h``; see
``docs/adr/0010-dcap-quote-parsing.md``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Final

from sanctum.attestation.errors import QuoteFormatError

__all__ = [
    "SGX_REPORT_BODY_SIZE",
    "TD_REPORT10_SIZE",
    "TD_REPORT15EX_SIZE",
    "TD_REPORT15_SIZE",
    "SgxReportBody",
    "TdReportBody",
    "TdReportExtension",
    "parse_sgx_report_body",
    "parse_td_report_body",
]

SGX_REPORT_BODY_SIZE: Final = 384
TD_REPORT10_SIZE: Final = 584
TD_REPORT15_SIZE: Final = 648
TD_REPORT15EX_SIZE: Final = 885

# cpu_svn, misc_select, reserved1, isv_ext_prod_id, attributes, mr_enclave, reserved2, mr_signer,
# reserved3, config_id, isv_prod_id, isv_svn, config_svn, reserved4, isv_family_id, report_data.
_SGX: Final = struct.Struct("<16sI12s16s16s32s32s32s32s64sHHH42s16s64s")
# tee_tcb_svn, mr_seam, mr_signer_seam, seam_attributes, td_attributes, xfam, mr_td, mr_config_id,
# mr_owner, mr_owner_config, rtmr0..3, report_data.
_TD10: Final = struct.Struct("<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s")
# TD report 1.5 appends tee_tcb_svn2 and mr_servicetd.
_TD15_TAIL: Final = struct.Struct("<16s48s")
_TD15: Final = struct.Struct(_TD10.format + "16s48s")
# TD report 1.5 Ex appends vmid, td_id, dev_info, init_servtd_hash, init_servtd_attributes,
# init_cpu_svn, init_tee_tcb_svn, init_tee_fmspc, cur_servtd_hash, cur_servtd_attributes.
_TD15EX_TAIL: Final = struct.Struct("<B32s48s48s8s16s16s12s48s8s")

if (
    _SGX.size != SGX_REPORT_BODY_SIZE
    or _TD10.size != TD_REPORT10_SIZE
    or _TD10.size + _TD15_TAIL.size != TD_REPORT15_SIZE
    or TD_REPORT15_SIZE + _TD15EX_TAIL.size != TD_REPORT15EX_SIZE
):  # pragma: no cover (a broken edit of the layouts above)
    msg = "report body layouts do not add up to their specified sizes"
    raise AssertionError(msg)

_SGX_ATTRIBUTE_DEBUG: Final = 0x02
_TD_ATTRIBUTE_DEBUG: Final = 0x01


def _check_sizes(obj: object, sizes: dict[str, int]) -> None:
    """Check the byte-string fields of ``obj`` against their layout sizes before encoding.

    Raises:
        QuoteFormatError: A field has the wrong length (``quote.field_size``).
    """
    for name, size in sizes.items():
        value = getattr(obj, name)
        if value is not None and len(value) != size:
            raise QuoteFormatError(
                f"{type(obj).__name__}.{name} is {len(value)} bytes, the layout needs {size}",
                code="quote.field_size",
            )


@dataclass(frozen=True, slots=True)
class SgxReportBody:
    """An SGX enclave report body (``sgx_report_body_t``, 384 bytes), every field kept.

    Attributes:
        cpu_svn: Security version of the CPU (16 bytes).
        misc_select: MISCSELECT, the extended SSA frame features (uint32).
        isv_ext_prod_id: Extended product ID (16 bytes).
        attributes: ATTRIBUTES, flags (uint64 LE) then XFRM (uint64 LE) (16 bytes).
        mr_enclave: MRENCLAVE, the enclave measurement (32 bytes).
        mr_signer: MRSIGNER, the hash of the enclave signer's key (32 bytes).
        config_id: CONFIGID (64 bytes).
        isv_prod_id: Product ID of the enclave (uint16).
        isv_svn: Security version of the enclave (uint16).
        config_svn: CONFIGSVN (uint16).
        isv_family_id: Product family ID (16 bytes).
        report_data: Data the enclave bound into the report (64 bytes).
        reserved1: Reserved bytes at offset 20 (12 bytes).
        reserved2: Reserved bytes at offset 96 (32 bytes).
        reserved3: Reserved bytes at offset 160 (32 bytes).
        reserved4: Reserved bytes at offset 262 (42 bytes).
    """

    cpu_svn: bytes
    misc_select: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes
    reserved1: bytes = bytes(12)
    reserved2: bytes = bytes(32)
    reserved3: bytes = bytes(32)
    reserved4: bytes = bytes(42)

    @property
    def debug(self) -> bool:
        """Whether ATTRIBUTES.FLAGS.DEBUG (bit 1) is set: the enclave memory is not protected."""
        return bool(self.attributes[0] & _SGX_ATTRIBUTE_DEBUG)

    def to_bytes(self) -> bytes:
        """Return the 384-byte encoding (the exact input when the body came from a parser).

        Raises:
            QuoteFormatError: A field has the wrong length (``quote.field_size``).
        """
        _check_sizes(self, _SGX_SIZES)
        try:
            return _SGX.pack(
                self.cpu_svn,
                self.misc_select,
                self.reserved1,
                self.isv_ext_prod_id,
                self.attributes,
                self.mr_enclave,
                self.reserved2,
                self.mr_signer,
                self.reserved3,
                self.config_id,
                self.isv_prod_id,
                self.isv_svn,
                self.config_svn,
                self.reserved4,
                self.isv_family_id,
                self.report_data,
            )
        except struct.error as error:
            raise QuoteFormatError(
                f"SGX report body has an integer field out of range: {error}",
                code="quote.field_size",
            ) from None


_SGX_SIZES: Final = {
    "cpu_svn": 16,
    "isv_ext_prod_id": 16,
    "attributes": 16,
    "mr_enclave": 32,
    "mr_signer": 32,
    "config_id": 64,
    "isv_family_id": 16,
    "report_data": 64,
    "reserved1": 12,
    "reserved2": 32,
    "reserved3": 32,
    "reserved4": 42,
}


@dataclass(frozen=True, slots=True)
class TdReportExtension:
    """The fields TD report 1.5 "Ex" (quote v5 body type 4) appends after ``mr_servicetd``.

    Attributes:
        vmid: VM identifier (uint8).
        td_id: TD identifier (32 bytes).
        dev_info: Device information (48 bytes).
        init_servtd_hash: Service-TD hash at TD launch (48 bytes).
        init_servtd_attributes: Service-TD attributes at TD launch (8 bytes).
        init_cpu_svn: CPU SVN at TD launch (16 bytes).
        init_tee_tcb_svn: TEE TCB SVN at TD launch (16 bytes).
        init_tee_fmspc: FMSPC at TD launch (12 bytes).
        cur_servtd_hash: Current service-TD hash (48 bytes).
        cur_servtd_attributes: Current service-TD attributes (8 bytes).
    """

    vmid: int
    td_id: bytes
    dev_info: bytes
    init_servtd_hash: bytes
    init_servtd_attributes: bytes
    init_cpu_svn: bytes
    init_tee_tcb_svn: bytes
    init_tee_fmspc: bytes
    cur_servtd_hash: bytes
    cur_servtd_attributes: bytes


@dataclass(frozen=True, slots=True)
class TdReportBody:
    """A TDX TD report body (1.0, 1.5 or 1.5 Ex), every field kept.

    Attributes:
        tee_tcb_svn: TEE TCB SVN (16 bytes; [0] module minor SVN, [1] module major version).
        mr_seam: Measurement of the TDX module (48 bytes).
        mr_signer_seam: Signer of the TDX module, zero for Intel's module (48 bytes).
        seam_attributes: TDX module attributes (8 bytes).
        td_attributes: TD attributes, bit 0 = DEBUG (8 bytes).
        xfam: Extended features allowed mask (8 bytes).
        mr_td: Measurement of the initial TD contents (48 bytes).
        mr_config_id: Software-defined configuration ID (48 bytes).
        mr_owner: Software-defined owner ID (48 bytes).
        mr_owner_config: Software-defined owner configuration (48 bytes).
        rtmr0: Run-time measurement register 0 (48 bytes).
        rtmr1: Run-time measurement register 1 (48 bytes).
        rtmr2: Run-time measurement register 2 (48 bytes).
        rtmr3: Run-time measurement register 3 (48 bytes).
        report_data: Data the TD bound into the report (64 bytes).
        tee_tcb_svn2: Current TEE TCB SVN (16 bytes; TD report 1.5 and later, else ``None``).
        mr_servicetd: Hash of the bound service TDs (48 bytes; 1.5 and later, else ``None``).
        extension: The TD report 1.5 Ex fields, else ``None``.
    """

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_servicetd: bytes | None = None
    extension: TdReportExtension | None = None

    @property
    def debug(self) -> bool:
        """Whether TD_ATTRIBUTES.DEBUG (bit 0) is set: the host can read the TD's state."""
        return bool(self.td_attributes[0] & _TD_ATTRIBUTE_DEBUG)

    @property
    def size(self) -> int:
        """Return the encoded size: 584 (1.0), 648 (1.5) or 885 (1.5 Ex)."""
        if self.extension is not None:
            return TD_REPORT15EX_SIZE
        if self.tee_tcb_svn2 is not None:
            return TD_REPORT15_SIZE
        return TD_REPORT10_SIZE

    def to_bytes(self) -> bytes:
        """Return the encoding (the exact input when the body came from a parser).

        Raises:
            QuoteFormatError: A field has the wrong length, or only one of ``tee_tcb_svn2`` and
                ``mr_servicetd`` is set, or ``extension`` is set without them
                (``quote.field_size``).
        """
        _check_sizes(self, _TD_SIZES)
        if (self.tee_tcb_svn2 is None) != (self.mr_servicetd is None) or (
            self.extension is not None and self.tee_tcb_svn2 is None
        ):
            raise QuoteFormatError(
                "TD report 1.5 needs both tee_tcb_svn2 and mr_servicetd (1.5 Ex needs them too)",
                code="quote.field_size",
            )
        out = _TD10.pack(
            self.tee_tcb_svn,
            self.mr_seam,
            self.mr_signer_seam,
            self.seam_attributes,
            self.td_attributes,
            self.xfam,
            self.mr_td,
            self.mr_config_id,
            self.mr_owner,
            self.mr_owner_config,
            self.rtmr0,
            self.rtmr1,
            self.rtmr2,
            self.rtmr3,
            self.report_data,
        )
        if self.tee_tcb_svn2 is not None and self.mr_servicetd is not None:
            out += _TD15_TAIL.pack(self.tee_tcb_svn2, self.mr_servicetd)
        if self.extension is not None:
            ext = self.extension
            _check_sizes(ext, _TD_EX_SIZES)
            try:
                out += _TD15EX_TAIL.pack(*(getattr(ext, f.name) for f in fields(ext)))
            except struct.error as error:
                raise QuoteFormatError(
                    f"TD report extension has an integer field out of range: {error}",
                    code="quote.field_size",
                ) from None
        return out


_TD_SIZES: Final = {
    "tee_tcb_svn": 16,
    "mr_seam": 48,
    "mr_signer_seam": 48,
    "seam_attributes": 8,
    "td_attributes": 8,
    "xfam": 8,
    "mr_td": 48,
    "mr_config_id": 48,
    "mr_owner": 48,
    "mr_owner_config": 48,
    "rtmr0": 48,
    "rtmr1": 48,
    "rtmr2": 48,
    "rtmr3": 48,
    "report_data": 64,
    "tee_tcb_svn2": 16,
    "mr_servicetd": 48,
}
_TD_EX_SIZES: Final = {
    "td_id": 32,
    "dev_info": 48,
    "init_servtd_hash": 48,
    "init_servtd_attributes": 8,
    "init_cpu_svn": 16,
    "init_tee_tcb_svn": 16,
    "init_tee_fmspc": 12,
    "cur_servtd_hash": 48,
    "cur_servtd_attributes": 8,
}


def parse_sgx_report_body(data: bytes, offset: int = 0) -> SgxReportBody:
    """Parse the 384-byte SGX report body at ``offset`` of ``data``.

    Raises:
        QuoteFormatError: Fewer than 384 bytes remain (``quote.truncated``).
    """
    if offset < 0 or len(data) - offset < SGX_REPORT_BODY_SIZE:
        raise QuoteFormatError(
            f"SGX report body at offset {offset} needs {SGX_REPORT_BODY_SIZE} bytes, "
            f"{max(len(data) - offset, 0)} remain",
            code="quote.truncated",
        )
    (
        cpu_svn,
        misc_select,
        reserved1,
        isv_ext_prod_id,
        attributes,
        mr_enclave,
        reserved2,
        mr_signer,
        reserved3,
        config_id,
        isv_prod_id,
        isv_svn,
        config_svn,
        reserved4,
        isv_family_id,
        report_data,
    ) = _SGX.unpack_from(data, offset)
    return SgxReportBody(
        cpu_svn,
        misc_select,
        isv_ext_prod_id,
        attributes,
        mr_enclave,
        mr_signer,
        config_id,
        isv_prod_id,
        isv_svn,
        config_svn,
        isv_family_id,
        report_data,
        reserved1,
        reserved2,
        reserved3,
        reserved4,
    )


def parse_td_report_body(
    data: bytes, offset: int = 0, size: int = TD_REPORT10_SIZE
) -> TdReportBody:
    """Parse a TD report body of ``size`` bytes (584, 648 or 885) at ``offset`` of ``data``.

    Raises:
        QuoteFormatError: ``size`` is not a TD report size (``quote.unsupported_body_type``) or
            fewer than ``size`` bytes remain (``quote.truncated``).
    """
    if size not in (TD_REPORT10_SIZE, TD_REPORT15_SIZE, TD_REPORT15EX_SIZE):
        raise QuoteFormatError(
            f"{size} bytes is not the size of a TD report (584, 648 or 885)",
            code="quote.unsupported_body_type",
        )
    if offset < 0 or len(data) - offset < size:
        raise QuoteFormatError(
            f"TD report body at offset {offset} needs {size} bytes, "
            f"{max(len(data) - offset, 0)} remain",
            code="quote.truncated",
        )
    if size == TD_REPORT10_SIZE:
        return TdReportBody(*_TD10.unpack_from(data, offset))
    values = _TD15.unpack_from(data, offset)
    if size == TD_REPORT15_SIZE:
        return TdReportBody(*values)
    extension = TdReportExtension(*_TD15EX_TAIL.unpack_from(data, offset + TD_REPORT15_SIZE))
    return TdReportBody(*(*values, extension))
