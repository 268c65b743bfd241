"""Attestation evidence: pure parsing and verification of Intel DCAP quotes and their collateral.

Everything in this package takes bytes, certificates, trust anchors, policy and the time as
arguments and returns frozen dataclasses or raises a :class:`~sanctum.errors.SanctumError` with a
stable dotted code. Nothing here reads files or configuration, opens sockets or looks at the
clock: fetching collateral, caching it across processes and deciding what to do with a result
happen at the edges.

Parsing lives in :mod:`~sanctum.attestation.quote` (quote layout, ``parse_quote``),
:mod:`~sanctum.attestation.report` (SGX and TD report bodies), :mod:`~sanctum.attestation.pck`
(the PCK certificate's SGX extension) and :mod:`~sanctum.attestation.errors`; the Intel QVL
verification algorithm is built on top of them in :mod:`~sanctum.attestation.verify`.
"""
