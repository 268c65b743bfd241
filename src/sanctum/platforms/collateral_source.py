"""The collateral-source Protocol and its offline and simulated implementations.

A :class:`CollateralSource` answers one question: "which Intel collateral applies to this quote
now?". The manager, the CLI and the tests ask it the same way whether the answer comes from
Intel's PCS or a PCCS (:class:`~sanctum.platforms.pcs.PcsCollateralSource`), from files an
operator copied onto an air-gapped machine (:class:`OfflineBundleSource`), or from the simulated
platform (:class:`SimulatedCollateralSource`). Sources only *obtain* collateral; the verifier in
:mod:`sanctum.attestation` decides whether it is genuine, current and applicable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from sanctum.attestation.collateral import Collateral, collateral_from_pcs, load_collateral_bundle
from sanctum.attestation.quote import Quote
from sanctum.errors import NotFoundError
from sanctum.platforms.errors import CollateralUnavailableError
from sanctum.platforms.pcs import PcsRequest, pcs_request_for_quote
from sanctum.platforms.simulated import SimulatedPlatform

__all__ = [
    "CollateralSource",
    "OfflineBundleSource",
    "SimulatedCollateralSource",
]


@runtime_checkable
class CollateralSource(Protocol):
    """Something that returns the collateral for a quote."""

    def for_quote(self, quote: Quote, *, now: datetime) -> Collateral:
        """Return the collateral that applies to ``quote`` at ``now`` (unverified).

        Raises:
            sanctum.errors.EvidenceError: The quote lacks what is needed to pick collateral
                (for example a PCK certificate), or the collateral found is malformed.
            sanctum.errors.UnavailableError: The collateral could not be obtained; retry.
            sanctum.errors.UsageError: The source is misconfigured (missing files).
        """
        ...


@dataclass(frozen=True, slots=True)
class OfflineBundleSource:
    """Collateral from local files: a JSON bundle, or a folder of PCS-format files.

    A bundle file (dcap-qvl ``QuoteCollateralV3`` JSON, as written by
    ``sanctum collateral fetch``) is returned for every quote; the verifier refuses it if it
    belongs to another platform. A folder holds PCS responses as served, named (the first
    existing name wins, so one folder can serve several platforms)::

        tcb-info-<tee>-<fmspc>.json | tcb-info.json          body of /<tee>/certification/v4/tcb
        qe-identity-<tee>.json      | qe-identity.json       body of /<tee>/.../qe/identity
        pck-crl-<ca>.{der,pem,hex}                           body of /sgx/.../pckcrl?ca=<ca>
        root-ca-crl.{der,pem,hex}                            the Intel SGX Root CA CRL
        tcb-signing-chain.pem                                TCB-Info-Issuer-Chain header
        pck-crl-issuer-chain-<ca>.pem | pck-crl-issuer-chain.pem   SGX-PCK-CRL-Issuer-Chain

    Attributes:
        path: The bundle file or the folder.
    """

    path: Path

    def for_quote(self, quote: Quote, *, now: datetime) -> Collateral:
        """Return the collateral for ``quote`` from the bundle or folder (``now`` is unused).

        Raises:
            NotFoundError: ``collateral.offline_missing`` when the path or a needed file is
                missing.
            EvidenceError: A file is malformed, or the quote has no PCK certificate (a folder
                is searched by FMSPC and CA type).
        """
        del now  # Files do not change with time; the verifier judges their validity.
        if self.path.is_file():
            return load_collateral_bundle(self._read(self.path))
        if not self.path.is_dir():
            raise NotFoundError(
                f"offline collateral {self.path} does not exist",
                code="collateral.offline_missing",
            )
        return self.for_request(pcs_request_for_quote(quote))

    def for_request(self, request: PcsRequest) -> Collateral:
        """Return the collateral for ``request`` from a folder of PCS-format files.

        Raises:
            NotFoundError: ``collateral.offline_missing`` when a needed file is missing.
            EvidenceError: A file is malformed.
        """
        signing = self._read(self._find(["tcb-signing-chain.pem"]))
        return collateral_from_pcs(
            tcb_info_body=self._read(
                self._find([f"tcb-info-{request.tee}-{request.fmspc}.json", "tcb-info.json"])
            ),
            tcb_info_issuer_chain=signing,
            qe_identity_body=self._read(
                self._find([f"qe-identity-{request.tee}.json", "qe-identity.json"])
            ),
            qe_identity_issuer_chain=signing,
            pck_crl=self._read(
                self._find([f"pck-crl-{request.ca}.{ext}" for ext in ("der", "pem", "hex")])
            ),
            pck_crl_issuer_chain=self._read(
                self._find([f"pck-crl-issuer-chain-{request.ca}.pem", "pck-crl-issuer-chain.pem"])
            ),
            root_ca_crl=self._read(
                self._find([f"root-ca-crl.{ext}" for ext in ("der", "pem", "hex")])
            ),
        )

    def _find(self, names: Sequence[str]) -> Path:
        """Return the first of ``names`` that exists in the folder.

        Raises:
            NotFoundError: ``collateral.offline_missing``.
        """
        for name in names:
            candidate = self.path / name
            if candidate.is_file():
                return candidate
        raise NotFoundError(
            f"offline collateral folder {self.path} has none of {', '.join(names)}",
            code="collateral.offline_missing",
            details={"folder": str(self.path), "names": list(names)},
        )

    @staticmethod
    def _read(path: Path) -> bytes:
        """Return the bytes of ``path``.

        Raises:
            NotFoundError: ``collateral.offline_missing`` when it cannot be read.
        """
        try:
            return path.read_bytes()
        except OSError as error:
            raise NotFoundError(
                f"cannot read offline collateral {path}: {error.strerror or error}",
                code="collateral.offline_missing",
            ) from error


@dataclass(frozen=True, slots=True)
class SimulatedCollateralSource:
    """The simulated platform's own collateral, issued at the time of the request.

    Attributes:
        platform: The simulated platform whose quotes the collateral is for.
    """

    platform: SimulatedPlatform

    def for_quote(self, quote: Quote, *, now: datetime) -> Collateral:
        """Return collateral for a quote of this simulated platform, issued at ``now``.

        Raises:
            EvidenceError: The quote has no readable PCK certificate.
            CollateralUnavailableError: ``collateral.not_found`` when the quote's TEE or FMSPC
                is not this platform's (the simulation publishes no collateral for it).
        """
        request = pcs_request_for_quote(quote)
        extension = self.platform.pck_extension
        if request.tee != self.platform.info.tee or request.fmspc != extension.fmspc.hex():
            raise CollateralUnavailableError(
                f"the simulated platform publishes no collateral for a {request.tee.upper()} "
                f"quote with FMSPC {request.fmspc}",
                code="collateral.not_found",
                details={"tee": request.tee, "fmspc": request.fmspc},
            )
        return self.platform.collateral(now=now)
