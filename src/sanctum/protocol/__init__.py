"""The attestation protocol shared by the Enclave Manager and the launcher.

The launcher runs inside every shielded workload and imports nothing from
:mod:`sanctum.manager`; the manager must nevertheless compute exactly the same bytes as the
launcher. Everything both sides need therefore lives here, with no database, network or clock:

- :mod:`sanctum.protocol.binding`: how a nonce and the workload's public key are bound into the
  64 bytes of a quote's report data, and the check of that binding.
- :mod:`sanctum.protocol.sealing`: HPKE (RFC 9180) sealing of application secrets to the attested
  key, so that nothing between the manager and the enclave (a TLS-terminating ingress, a proxy,
  a log) can read them.
- :mod:`sanctum.protocol.messages`: the pydantic wire models of ``/v1/attest/challenge`` and
  ``/v1/attest``, so that both sides agree on field names and encodings.
- :mod:`sanctum.protocol.workload`: the workload's key, CSR and report data (launcher side).
- :mod:`sanctum.protocol.errors`: the typed errors of the above.

Keep this package small and free of heavy imports: it is frozen into the launcher executable.
"""
