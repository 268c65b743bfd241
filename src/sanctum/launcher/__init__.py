"""The Sanctum launcher: the first code of every shielded workload.

It proves the workload to the Enclave Manager and sets up what the app needs, then gets out of
the way by ``exec``-ing the original entrypoint (same PID; signals and exit codes pass through):

1. load the signed enclave manifest and verify it (SIGSTRUCT signature, canonical form,
   measurement); on the simulated platform also check every trusted file on disk;
2. choose the evidence source (Gramine, configfs-tsm, or the host's simulated quoting service);
3. generate the workload key in memory, a CSR, and bind both to the manager's nonce in the
   quote's report data;
4. attest against the manager, whose TLS CA is pinned by the manifest; refusals print the
   manager's reason code and a hint; only retryable failures are retried, with bounded backoff;
5. write key, certificate, chain and CA (mode 0600, owned by the app's user), optionally install
   the CA in the system trust store, deliver the secrets as files or environment variables;
6. build the app's environment and arguments from the manifest and ``execve`` the entrypoint.

This package imports nothing from :mod:`sanctum.manager` (a test enforces it); it is frozen into
a self-contained executable (``make launcher``) that the converter ships as ``/sanctum/launcher``.
"""

from __future__ import annotations
