"""The Enclave Manager: Sanctum's central service.

People and automation manage accounts, users, roles, API keys, approval tasks and the audit log
through its REST API (FastAPI under ``/v1``), and workloads attest to it. It is the only part of
Sanctum with a database (SQLAlchemy 2: SQLite embedded, PostgreSQL for production and HA).

Boundaries:

- Built by :func:`sanctum.manager.app.create_app` from explicit settings; nothing reads
  configuration at import time.
- Routes are thin; domain logic lives in ``services`` and raises :mod:`sanctum.errors` types,
  mapped to RFC 9457 problem documents in one handler.
- Every state that matters (sessions, rate-limit counters, tasks, audit chain heads) lives in the
  database, so several manager processes on one PostgreSQL behave as one.
- Secrets are stored only encrypted under data keys wrapped by a key-encryption key that never
  enters the database (:mod:`sanctum.manager.secretbox`).
- Pure parts (the CA builder, attestation result tokens, app attestation policy) live in their own
  modules and take the time and keys as arguments.
"""
