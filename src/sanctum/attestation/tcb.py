"""TCB info and QE identity models, and TCB evaluation exactly as Intel's QVL does it.

The signed JSON of Intel's TCB info (v2 and v3; SGX and TDX, with TDX module identities) and QE
identity (v2; ``QE`` and ``TD_QE``) is parsed once, at the edge, into frozen dataclasses; any
deviation from the documented shape raises ``tcb_info.malformed`` / ``qe_identity.malformed``.

Evaluation follows Intel's current QVL (``EvaluateTcb.cpp``, ``TDRelaunchCheck.cpp``):

1. the platform level is the first TCB level (sorted descending) whose SGX components and PCESVN
   are all at or below the PCK certificate's, and, for TDX, whose TDX components are at or below
   TEE_TCB_SVN (from index 2 when the TDX module major version is non-zero);
2. for TDX with a module version > 0, the module status comes from ``tdxModuleIdentities``
   ``TDX_<version>``, first level with ``isvsvn <= TEE_TCB_SVN[0]``;
3. the QE status is the first QE identity level with ``isvsvn <= QE ISVSVN``;
4. statuses converge per Intel: a component OutOfDate turns UpToDate/SWHardeningNeeded into
   OutOfDate and ConfigurationNeeded/ConfigurationAndSWHardeningNeeded into
   OutOfDateConfigurationNeeded; any component Revoked makes the result Revoked (this is *not*
   dcap-qvl's worst-of merge);
5. advisory IDs are the sorted, unique union of the platform, QE and module levels' IDs;
6. TD report 1.5 quotes are evaluated again with TEE_TCB_SVN2 (which must be covered too) and
   may become TDRelaunchAdvised.

No level found anywhere raises ``tcb.not_supported``. A Revoked result is returned here and
refused by the verifier, which owns the decision.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sanctum.attestation._memo import memo
from sanctum.errors import EvidenceError

__all__ = [
    "EnclaveIdentity",
    "QeTcbLevel",
    "TcbComponent",
    "TcbEvaluation",
    "TcbInfo",
    "TcbLevel",
    "TcbStatus",
    "TdxModule",
    "TdxModuleIdentity",
    "converge_statuses",
    "evaluate_sgx_tcb",
    "evaluate_tdx_tcb",
    "match_qe_level",
    "parse_qe_identity",
    "parse_tcb_info",
    "relaunch_status",
]

_COMPONENTS: Final = 16


class TcbStatus(enum.StrEnum):
    """TCB statuses as Intel names them in collateral and QVL results."""

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    TD_RELAUNCH_ADVISED = "TDRelaunchAdvised"
    TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED = "TDRelaunchAdvisedConfigurationNeeded"
    REVOKED = "Revoked"


_PLATFORM_STATUSES: Final = frozenset(
    {
        TcbStatus.UP_TO_DATE,
        TcbStatus.SW_HARDENING_NEEDED,
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        TcbStatus.OUT_OF_DATE,
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
        TcbStatus.REVOKED,
    }
)
_MODULE_STATUSES: Final = frozenset(
    {TcbStatus.UP_TO_DATE, TcbStatus.OUT_OF_DATE, TcbStatus.REVOKED}
)
# Both QVLs also parse ConfigurationNeeded/OutOfDateConfigurationNeeded in QE identities.
_QE_STATUSES: Final = frozenset(
    {
        TcbStatus.UP_TO_DATE,
        TcbStatus.OUT_OF_DATE,
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
        TcbStatus.REVOKED,
    }
)
_CONFIG_STATUSES: Final = frozenset(
    {
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
    }
)


@dataclass(frozen=True, slots=True)
class TcbComponent:
    """One SGX or TDX TCB component of a TCB level."""

    svn: int
    category: str | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class TcbLevel:
    """One platform TCB level of a TCB info.

    Attributes:
        sgx_components: The 16 SGX TCB components (CPUSVN components).
        pce_svn: Minimum PCE security version.
        tdx_components: The 16 TDX TCB components (TDX TCB info only), else ``None``.
        tcb_date: Date of the TCB recovery this level belongs to.
        status: Status a platform at this level has.
        advisory_ids: Intel security advisories that apply (empty in TCB info v2).
    """

    sgx_components: tuple[TcbComponent, ...]
    pce_svn: int
    tdx_components: tuple[TcbComponent, ...] | None
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]
    sgx_svns: tuple[int, ...] = field(init=False, repr=False, compare=False)
    tdx_svns: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Precompute the SVN vectors matching compares (all zero TDX SVNs when absent)."""
        object.__setattr__(self, "sgx_svns", tuple(c.svn for c in self.sgx_components))
        tdx = (
            (0,) * _COMPONENTS
            if self.tdx_components is None
            else tuple(c.svn for c in self.tdx_components)
        )
        object.__setattr__(self, "tdx_svns", tdx)


@dataclass(frozen=True, slots=True)
class QeTcbLevel:
    """One ISVSVN-keyed TCB level (QE identity and TDX module identities)."""

    isv_svn: int
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TdxModule:
    """The default TDX module identity (``tdxModule``) of a TDX TCB info."""

    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes


@dataclass(frozen=True, slots=True)
class TdxModuleIdentity:
    """One entry of ``tdxModuleIdentities`` (for example ``TDX_01``)."""

    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    tcb_levels: tuple[QeTcbLevel, ...]


@dataclass(frozen=True, slots=True)
class TcbInfo:
    """A parsed TCB info (v2 or v3), levels sorted the way QVL sorts them (highest first).

    Attributes:
        id: ``"SGX"`` or ``"TDX"`` (v2 has no id and is SGX).
        version: 2 or 3.
        issue_date: ``issueDate``.
        next_update: ``nextUpdate``.
        fmspc: The 6-byte FMSPC.
        pce_id: The 2-byte PCE ID.
        tcb_type: Always 0.
        tcb_evaluation_data_number: The TCB recovery event number.
        tcb_levels: Platform levels, highest first.
        tdx_module: The ``tdxModule`` entry (TDX only).
        tdx_module_identities: The ``tdxModuleIdentities`` entries (TDX only).
    """

    id: Literal["SGX", "TDX"]
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModule | None
    tdx_module_identities: tuple[TdxModuleIdentity, ...]

    def module_identity(self, version: int) -> TdxModuleIdentity | None:
        """Return the ``TDX_<version>`` module identity, or ``None`` (ids compared uppercase)."""
        wanted = f"TDX_{version:02X}"
        for identity in self.tdx_module_identities:
            if identity.id.upper() == wanted:
                return identity
        return None


@dataclass(frozen=True, slots=True)
class EnclaveIdentity:
    """A parsed QE identity (v2), levels sorted by ISVSVN, highest first."""

    id: Literal["QE", "TD_QE", "QVE"]
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isv_prod_id: int
    tcb_levels: tuple[QeTcbLevel, ...]


@dataclass(frozen=True, slots=True)
class TcbEvaluation:
    """Outcome of TCB evaluation (statuses per component and converged).

    Attributes:
        status: The converged status Intel's QVL reports (after any TD relaunch rule).
        advisory_ids: Sorted unique union of platform, QE and TDX-module advisory IDs.
        tcb_date: The earliest tcbDate among the matched levels.
        platform_level: The matched platform TCB level.
        qe_level: The matched QE identity level.
        tdx_module_level: The matched TDX module level (TDX with module version > 0).
        launch_status: Converged status at launch (before the TD relaunch rule).
        current_status: Converged status with TEE_TCB_SVN2 (TD report 1.5), or ``None``.
    """

    status: TcbStatus
    advisory_ids: tuple[str, ...]
    tcb_date: datetime
    platform_level: TcbLevel
    qe_level: QeTcbLevel
    tdx_module_level: QeTcbLevel | None
    launch_status: TcbStatus
    current_status: TcbStatus | None


class _Reader:
    """Typed accessors over parsed JSON that raise the right ``*.malformed`` error."""

    def __init__(self, code: str, what: str) -> None:
        self.code = code
        self.what = what

    def fail(self, message: str) -> EvidenceError:
        return EvidenceError(f"the {self.what} is malformed: {message}", code=self.code)

    def obj(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{where} is not an object")
        return value

    def member(self, obj: Mapping[str, Any], name: str) -> Any:
        if name not in obj:
            raise self.fail(f"missing field {name!r}")
        return obj[name]

    def int_(self, obj: Mapping[str, Any], name: str, *, bits: int = 32) -> int:
        value = self.member(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
            raise self.fail(f"{name!r} is not an integer in range")
        return value

    def str_(self, obj: Mapping[str, Any], name: str) -> str:
        value = self.member(obj, name)
        if not isinstance(value, str):
            raise self.fail(f"{name!r} is not a string")
        return value

    def hex_(self, obj: Mapping[str, Any], name: str, size: int) -> bytes:
        text = self.str_(obj, name)
        try:
            value = bytes.fromhex(text)
        except ValueError as exc:
            raise self.fail(f"{name!r} is not hex") from exc
        if len(value) != size or len(text) != 2 * size:
            raise self.fail(f"{name!r} is not {size} bytes")
        return value

    def date(self, obj: Mapping[str, Any], name: str) -> datetime:
        text = self.str_(obj, name)
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise self.fail(f"{name!r} is not an ISO 8601 date") from exc
        if value.tzinfo is None:
            raise self.fail(f"{name!r} has no time zone")
        return value.astimezone(UTC)

    def status(self, obj: Mapping[str, Any], allowed: frozenset[TcbStatus]) -> TcbStatus:
        text = self.str_(obj, "tcbStatus")
        try:
            status = TcbStatus(text)
        except ValueError as exc:
            raise self.fail(f"unrecognised tcbStatus {text!r}") from exc
        if status not in allowed:
            raise self.fail(f"tcbStatus {text!r} is not allowed here")
        return status

    def advisories(self, obj: Mapping[str, Any]) -> tuple[str, ...]:
        value = obj.get("advisoryIDs", [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail("'advisoryIDs' is not a list of strings")
        return tuple(value)

    def list_(self, obj: Mapping[str, Any], name: str) -> list[Any]:
        value = self.member(obj, name)
        if not isinstance(value, list):
            raise self.fail(f"{name!r} is not a list")
        return value

    def isv_levels(
        self, obj: Mapping[str, Any], allowed: frozenset[TcbStatus]
    ) -> tuple[QeTcbLevel, ...]:
        levels = []
        for item in self.list_(obj, "tcbLevels"):
            level = self.obj(item, "a TCB level")
            tcb = self.obj(self.member(level, "tcb"), "'tcb'")
            levels.append(
                QeTcbLevel(
                    isv_svn=self.int_(tcb, "isvsvn", bits=16),
                    tcb_date=self.date(level, "tcbDate"),
                    status=self.status(level, allowed),
                    advisory_ids=self.advisories(level),
                )
            )
        if not levels:
            raise self.fail("'tcbLevels' is empty")
        levels.sort(key=lambda level: level.isv_svn, reverse=True)
        return tuple(levels)


def _load_json(text: bytes, reader: _Reader) -> Mapping[str, Any]:
    """Parse signed JSON text into an object.

    Raises:
        EvidenceError: Not a JSON object (``reader.code``).
    """
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise reader.fail(f"not JSON ({exc})") from exc
    return reader.obj(document, "the document")


def _components(
    reader: _Reader,
    value: object,
    where: str,
    seen: dict[tuple[int, object, object], TcbComponent],
) -> tuple[TcbComponent, ...]:
    """Read 16 ``{svn, category?, type?}`` components.

    ``seen`` shares equal (immutable) components within one parse: TCB infos repeat the same
    few components hundreds of times.

    Raises:
        EvidenceError: Wrong count or shape (``reader.code``).
    """
    if not isinstance(value, list) or len(value) != _COMPONENTS:
        raise reader.fail(f"{where} is not a list of 16 components")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise reader.fail(f"a {where} entry is not an object")
        svn = item.get("svn")
        # `type(...) is int` on purpose: a JSON boolean is not an SVN.
        if type(svn) is not int or not 0 <= svn < 256:
            raise reader.fail(f"a {where} entry's 'svn' is not an integer in range")
        category = item.get("category")
        kind = item.get("type")
        if (category is not None and not isinstance(category, str)) or (
            kind is not None and not isinstance(kind, str)
        ):
            raise reader.fail(f"a {where} entry has a non-string category or type")
        key = (svn, category, kind)
        component = seen.get(key)
        if component is None:
            component = seen[key] = TcbComponent(svn, category, kind)
        out.append(component)
    return tuple(out)


def parse_tcb_info(text: bytes) -> TcbInfo:
    """Parse the signed text of a TCB info (v2 or v3, SGX or TDX).

    Raises:
        EvidenceError: The text is not a TCB info of a supported shape (``tcb_info.malformed``),
            or is of an unsupported version / tcbType (``tcb_info.unsupported``).
    """
    return _parse_tcb_info_memo(text) if type(text) is bytes else _parse_tcb_info(text)


def _parse_tcb_info(text: bytes) -> TcbInfo:
    """Parse a TCB info like :func:`parse_tcb_info` (the result is immutable).

    Raises:
        EvidenceError: As :func:`parse_tcb_info`.
    """
    reader = _Reader("tcb_info.malformed", "TCB info")
    doc = _load_json(text, reader)
    version = reader.int_(doc, "version")
    if version not in (2, 3):
        raise EvidenceError(
            f"TCB info version {version} is not supported (2 and 3 are)",
            code="tcb_info.unsupported",
        )
    if version == 3:
        tcb_id = reader.str_(doc, "id")
        if tcb_id not in ("SGX", "TDX"):
            raise EvidenceError(
                f"TCB info id {tcb_id!r} is not supported", code="tcb_info.unsupported"
            )
    else:
        tcb_id = "SGX"
    tcb_type = reader.int_(doc, "tcbType")
    if tcb_type != 0:
        raise EvidenceError(f"TCB info tcbType {tcb_type} is not 0", code="tcb_info.unsupported")
    is_tdx = tcb_id == "TDX"
    levels: list[TcbLevel] = []
    seen: dict[tuple[int, object, object], TcbComponent] = {}
    for item in reader.list_(doc, "tcbLevels"):
        level = reader.obj(item, "a TCB level")
        tcb = reader.obj(reader.member(level, "tcb"), "'tcb'")
        tdx_components: tuple[TcbComponent, ...] | None = None
        if version == 2:
            sgx_components = tuple(
                TcbComponent(reader.int_(tcb, f"sgxtcbcomp{i:02d}svn", bits=8))
                for i in range(1, _COMPONENTS + 1)
            )
        else:
            sgx_components = _components(
                reader, reader.member(tcb, "sgxtcbcomponents"), "sgxtcbcomponents", seen
            )
            if is_tdx:
                tdx_components = _components(
                    reader, reader.member(tcb, "tdxtcbcomponents"), "tdxtcbcomponents", seen
                )
        levels.append(
            TcbLevel(
                sgx_components=sgx_components,
                pce_svn=reader.int_(tcb, "pcesvn", bits=16),
                tdx_components=tdx_components,
                tcb_date=reader.date(level, "tcbDate"),
                status=reader.status(level, _PLATFORM_STATUSES),
                advisory_ids=reader.advisories(level),
            )
        )
    if not levels:
        raise reader.fail("'tcbLevels' is empty")
    # QVL keeps levels in a set ordered by (SGX components, PCESVN, TDX components), descending.
    levels.sort(key=lambda lv: (lv.sgx_svns, lv.pce_svn, lv.tdx_svns), reverse=True)
    tdx_module: TdxModule | None = None
    identities: list[TdxModuleIdentity] = []
    if is_tdx:
        module = reader.obj(reader.member(doc, "tdxModule"), "'tdxModule'")
        tdx_module = TdxModule(
            mrsigner=reader.hex_(module, "mrsigner", 48),
            attributes=reader.hex_(module, "attributes", 8),
            attributes_mask=reader.hex_(module, "attributesMask", 8),
        )
        for item in doc.get("tdxModuleIdentities", []) or []:
            entry = reader.obj(item, "a TDX module identity")
            identities.append(
                TdxModuleIdentity(
                    id=reader.str_(entry, "id"),
                    mrsigner=reader.hex_(entry, "mrsigner", 48),
                    attributes=reader.hex_(entry, "attributes", 8),
                    attributes_mask=reader.hex_(entry, "attributesMask", 8),
                    tcb_levels=reader.isv_levels(entry, _MODULE_STATUSES),
                )
            )
    return TcbInfo(
        id="TDX" if is_tdx else "SGX",
        version=version,
        issue_date=reader.date(doc, "issueDate"),
        next_update=reader.date(doc, "nextUpdate"),
        fmspc=reader.hex_(doc, "fmspc", 6),
        pce_id=reader.hex_(doc, "pceId", 2),
        tcb_type=tcb_type,
        tcb_evaluation_data_number=reader.int_(doc, "tcbEvaluationDataNumber"),
        tcb_levels=tuple(levels),
        tdx_module=tdx_module,
        tdx_module_identities=tuple(identities),
    )


def parse_qe_identity(text: bytes) -> EnclaveIdentity:
    """Parse the signed text of a QE identity (v2; ``QE``, ``TD_QE`` or ``QVE``).

    Raises:
        EvidenceError: Malformed (``qe_identity.malformed``) or an unsupported version or id
            (``qe_identity.unsupported``).
    """
    return _parse_qe_identity_memo(text) if type(text) is bytes else _parse_qe_identity(text)


def _parse_qe_identity(text: bytes) -> EnclaveIdentity:
    """Parse a QE identity like :func:`parse_qe_identity` (the result is immutable).

    Raises:
        EvidenceError: As :func:`parse_qe_identity`.
    """
    reader = _Reader("qe_identity.malformed", "QE identity")
    doc = _load_json(text, reader)
    version = reader.int_(doc, "version")
    if version != 2:
        raise EvidenceError(
            f"QE identity version {version} is not supported (2 is)", code="qe_identity.unsupported"
        )
    identity_id = reader.str_(doc, "id")
    if identity_id not in ("QE", "TD_QE", "QVE"):
        raise EvidenceError(
            f"QE identity id {identity_id!r} is not supported", code="qe_identity.unsupported"
        )
    return EnclaveIdentity(
        id=identity_id,  # type: ignore[arg-type]  # Checked against the literal values above.
        version=version,
        issue_date=reader.date(doc, "issueDate"),
        next_update=reader.date(doc, "nextUpdate"),
        tcb_evaluation_data_number=reader.int_(doc, "tcbEvaluationDataNumber"),
        miscselect=int.from_bytes(reader.hex_(doc, "miscselect", 4), "big"),
        miscselect_mask=int.from_bytes(reader.hex_(doc, "miscselectMask", 4), "big"),
        attributes=reader.hex_(doc, "attributes", 16),
        attributes_mask=reader.hex_(doc, "attributesMask", 16),
        mrsigner=reader.hex_(doc, "mrsigner", 32),
        isv_prod_id=reader.int_(doc, "isvprodid", bits=16),
        tcb_levels=reader.isv_levels(doc, _QE_STATUSES),
    )


def _not_supported(message: str) -> EvidenceError:
    """Return the refusal for a TCB no level of the collateral covers."""
    return EvidenceError(
        message,
        code="tcb.not_supported",
        hint="the platform's TCB is older than every level Intel lists; update the platform",
    )


def match_qe_level(identity: EnclaveIdentity, isv_svn: int) -> QeTcbLevel:
    """Return the QE identity level for a QE's ISVSVN (first level with ``isvsvn <= isv_svn``).

    Raises:
        EvidenceError: No level covers ``isv_svn`` (``tcb.not_supported``).
    """
    for level in identity.tcb_levels:
        if isv_svn >= level.isv_svn:
            return level
    raise _not_supported(f"the quoting enclave's ISVSVN {isv_svn} is below every QE identity level")


def converge_statuses(platform: TcbStatus, components: Sequence[TcbStatus]) -> TcbStatus:
    """Converge a platform status with component (QE, TDX module) statuses per Intel.

    This is QVL's ``convergeTcbStatuses``: OutOfDate components degrade UpToDate and
    SWHardeningNeeded to OutOfDate, and the two configuration statuses to
    OutOfDateConfigurationNeeded; any Revoked component makes the result Revoked.
    """
    status = platform
    if TcbStatus.OUT_OF_DATE in components:
        if platform in (TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED):
            status = TcbStatus.OUT_OF_DATE
        elif platform in (
            TcbStatus.CONFIGURATION_NEEDED,
            TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        ):
            status = TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    if TcbStatus.REVOKED in components:
        status = TcbStatus.REVOKED
    return status


def relaunch_status(launch: TcbStatus, current: TcbStatus | None) -> TcbStatus:
    """Apply Intel's TD relaunch rule (``TDRelaunchCheck.cpp``) to launch and current statuses."""
    if current is None or launch not in (
        TcbStatus.OUT_OF_DATE,
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
    ):
        return launch
    if current in (
        TcbStatus.UP_TO_DATE,
        TcbStatus.SW_HARDENING_NEEDED,
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    ):
        if launch in _CONFIG_STATUSES or current in _CONFIG_STATUSES:
            return TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
        return TcbStatus.TD_RELAUNCH_ADVISED
    return launch


def _at_least(values: Sequence[int], level: Sequence[int], start: int = 0) -> bool:
    """Whether every value from ``start`` on is at least the level's value."""
    return all(values[i] >= level[i] for i in range(start, _COMPONENTS))


def _match_platform(
    tcb_info: TcbInfo,
    cpu_svn_components: Sequence[int],
    pce_svn: int,
    tee_tcb_svn: bytes | None,
) -> TcbLevel:
    """Return the first platform level the PCK TCB (and TEE_TCB_SVN) is at or above.

    Raises:
        EvidenceError: No level matches (``tcb.not_supported``).
    """
    start = 2 if tee_tcb_svn is not None and tee_tcb_svn[1] > 0 else 0
    for level in tcb_info.tcb_levels:
        if not _at_least(cpu_svn_components, level.sgx_svns) or pce_svn < level.pce_svn:
            continue
        if tee_tcb_svn is not None and not _at_least(tee_tcb_svn, level.tdx_svns, start):
            continue
        return level
    raise _not_supported(
        f"the platform TCB (FMSPC {tcb_info.fmspc.hex().upper()}) is below every TCB level"
    )


def _check_components(cpu_svn_components: Sequence[int], tee_tcb_svn: bytes | None) -> None:
    """Check the component vectors have 16 entries (a programming error otherwise).

    Raises:
        ValueError: A vector does not have 16 entries.
    """
    if len(cpu_svn_components) != _COMPONENTS or (
        tee_tcb_svn is not None and len(tee_tcb_svn) != _COMPONENTS
    ):
        msg = "TCB component vectors must have 16 entries"
        raise ValueError(msg)


def evaluate_sgx_tcb(
    tcb_info: TcbInfo,
    *,
    cpu_svn_components: Sequence[int],
    pce_svn: int,
    qe_level: QeTcbLevel,
) -> TcbEvaluation:
    """Evaluate an SGX platform's TCB status per Intel (``sgxEvaluateTCB``).

    Raises:
        EvidenceError: No TCB level covers the platform (``tcb.not_supported``).
    """
    _check_components(cpu_svn_components, None)
    level = _match_platform(tcb_info, cpu_svn_components, pce_svn, None)
    status = converge_statuses(level.status, [qe_level.status])
    return TcbEvaluation(
        status=status,
        advisory_ids=tuple(sorted({*level.advisory_ids, *qe_level.advisory_ids})),
        tcb_date=min(level.tcb_date, qe_level.tcb_date),
        platform_level=level,
        qe_level=qe_level,
        tdx_module_level=None,
        launch_status=status,
        current_status=None,
    )


def _evaluate_tdx_once(
    tcb_info: TcbInfo,
    cpu_svn_components: Sequence[int],
    pce_svn: int,
    tee_tcb_svn: bytes,
    qe_level: QeTcbLevel,
) -> TcbEvaluation:
    """One pass of Intel's ``tdxEvaluateTCB`` for one TEE_TCB_SVN.

    Raises:
        EvidenceError: No platform or module level matches (``tcb.not_supported``).
    """
    level = _match_platform(tcb_info, cpu_svn_components, pce_svn, tee_tcb_svn)
    components = []
    dates = [level.tcb_date, qe_level.tcb_date]
    advisories = {*level.advisory_ids, *qe_level.advisory_ids}
    module_level: QeTcbLevel | None = None
    version = tee_tcb_svn[1]
    if version > 0:
        identity = tcb_info.module_identity(version)
        if identity is None:
            raise _not_supported(f"the TCB info has no TDX module identity TDX_{version:02X}")
        for candidate in identity.tcb_levels:
            if tee_tcb_svn[0] >= candidate.isv_svn:
                module_level = candidate
                break
        if module_level is None:
            raise _not_supported(
                f"the TDX module SVN {tee_tcb_svn[0]} is below every TDX_{version:02X} level"
            )
        components.append(module_level.status)
        dates.append(module_level.tcb_date)
        advisories.update(module_level.advisory_ids)
    components.append(qe_level.status)
    status = converge_statuses(level.status, components)
    return TcbEvaluation(
        status=status,
        advisory_ids=tuple(sorted(advisories)),
        tcb_date=min(dates),
        platform_level=level,
        qe_level=qe_level,
        tdx_module_level=module_level,
        launch_status=status,
        current_status=None,
    )


def evaluate_tdx_tcb(
    tcb_info: TcbInfo,
    *,
    cpu_svn_components: Sequence[int],
    pce_svn: int,
    tee_tcb_svn: bytes,
    qe_level: QeTcbLevel,
    tee_tcb_svn2: bytes | None = None,
) -> TcbEvaluation:
    """Evaluate a TDX platform's TCB status per Intel, with the TD relaunch rule.

    ``tee_tcb_svn2`` is the current TEE_TCB_SVN of a TD report 1.5; when given, the TCB is
    evaluated again with it and the launch status may become TDRelaunchAdvised. As in QVL
    (``TcbEvaluator``: "4.1.2.5.1.20"), a current TCB that no level covers is refused too; the
    result keeps the launch evaluation's advisory IDs and TCB date.

    Raises:
        EvidenceError: No TCB level covers the launch or the current TCB (``tcb.not_supported``).
    """
    _check_components(cpu_svn_components, tee_tcb_svn)
    launch = _evaluate_tdx_once(tcb_info, cpu_svn_components, pce_svn, tee_tcb_svn, qe_level)
    if tee_tcb_svn2 is None:
        return launch
    _check_components(cpu_svn_components, tee_tcb_svn2)
    current = _evaluate_tdx_once(
        tcb_info, cpu_svn_components, pce_svn, tee_tcb_svn2, qe_level
    ).status
    return TcbEvaluation(
        status=relaunch_status(launch.status, current),
        advisory_ids=launch.advisory_ids,
        tcb_date=launch.tcb_date,
        platform_level=launch.platform_level,
        qe_level=qe_level,
        tdx_module_level=launch.tdx_module_level,
        launch_status=launch.status,
        current_status=current,
    )


# The parsed models are frozen dataclasses of tuples, so equal texts may share one result.
_parse_tcb_info_memo: Final = memo(_parse_tcb_info)
_parse_qe_identity_memo: Final = memo(_parse_qe_identity)
