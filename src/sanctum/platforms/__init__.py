"""Where evidence and collateral come from.

Each source sits behind a small Protocol (:class:`~sanctum.platforms.evidence.EvidenceSource`
for quotes, ``CollateralSource`` for Intel's collateral) so that the manager, the launcher and
the tests use real hardware backends, the simulated platform and in-memory fakes the same way.
All I/O (device files, configfs, HTTP) lives here; :mod:`sanctum.attestation` stays pure.
"""
