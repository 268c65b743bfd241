"""The simulated SGX/TDX platform and the Sanctum simulation PKI.

For development, CI and demos on machines without TEE hardware: a software Quoting Enclave
emits quotes in Intel's genuine formats (SGX quote v3, TDX quote v4) under a *Sanctum
simulation root CA*, together with matching collateral (TCB info, QE identity, CRLs). The
verifier checks them exactly like real quotes; they verify only against the simulation root,
which is how every downstream component recognises them as simulated. The same module is the
test PKI for verifier tests that need cases the real data lacks.

Typical use::

    pki = load_or_create_simulation_pki(state_dir, now=now)       # or SimulationPki.create(now=now)
    platform = SimulatedPlatform(pki, tee="sgx", identity=SgxIdentity(mr_enclave=...), now=now)
    quote = platform.quote(report_data)                           # SGX quote v3
    bundle = platform.collateral_json()                           # QuoteCollateralV3 JSON
    anchor = pki.root_der()                                       # the only trust anchor

Dials: ``tcb=TcbDial.OUT_OF_DATE`` (and the other statuses), ``revoked_pck=True`` (also
``revoked_pck_ca``, ``revoked_tcb_signing``), ``debug=True``, ``qe_status="OutOfDate"``,
``quote_version=5`` (TDX), ``certification_data_type=1``, ``collateral_json(expired=True)``.
For anything else, build the parts yourself with :func:`build_tcb_info`,
:func:`build_qe_identity` and :func:`build_collateral_bundle`.
"""

from __future__ import annotations

from sanctum.platforms.simulated.collateral import (
    ADVISORY_IDS,
    CollateralDates,
    PlatformTcb,
    TcbDial,
    build_collateral_bundle,
    build_qe_identity,
    build_tcb_info,
)
from sanctum.platforms.simulated.errors import SimulationPkiError
from sanctum.platforms.simulated.identity import SgxIdentity, TdIdentity
from sanctum.platforms.simulated.pki import (
    PckCaKind,
    PckExtension,
    SimulationPki,
    load_or_create_simulation_pki,
    read_simulation_root,
)
from sanctum.platforms.simulated.platform import SimulatedPlatform
from sanctum.platforms.simulated.quote import QuotingEnclave

__all__ = [
    "ADVISORY_IDS",
    "CollateralDates",
    "PckCaKind",
    "PckExtension",
    "PlatformTcb",
    "QuotingEnclave",
    "SgxIdentity",
    "SimulatedPlatform",
    "SimulationPki",
    "SimulationPkiError",
    "TcbDial",
    "TdIdentity",
    "build_collateral_bundle",
    "build_qe_identity",
    "build_tcb_info",
    "load_or_create_simulation_pki",
    "read_simulation_root",
]
