"""Sanctum: shield container images, attest enclaves with Intel DCAP, provision what they need.

The package is split by part, each with its own job and boundaries (see
``docs/architecture.md``):

- :mod:`sanctum.errors`: the single error tree every part raises from.
- :mod:`sanctum.attestation`: pure evidence parsing and verification.
- :mod:`sanctum.platforms`: where evidence and collateral come from.
- :mod:`sanctum.manager`: the Enclave Manager service.
- :mod:`sanctum.converter`: turning an OCI image into a shielded image.
- :mod:`sanctum.launcher`: the first code inside a shielded workload.
- :mod:`sanctum.cli`: the ``sanctum`` command line.
"""

__version__ = "0.1.0"
