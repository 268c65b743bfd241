"""The ``sanctum`` command line.

Commands are grouped by noun (``sanctum quote verify``, ``sanctum manager serve``), one module
per group, each a thin layer over the same library functions the API uses. Conventions every
command follows (enforced by :mod:`sanctum.cli._base`):

- ``--json`` on every command whose output is data; with it, stdout carries exactly one JSON
  document, and failures print ``{"error": {"code": ..., "message": ...}}``.
- Exit codes: 0 success; 1 refused or failed (any :class:`~sanctum.errors.SanctumError` that is
  not a usage error); 2 usage error (bad option, missing file, :class:`~sanctum.errors.UsageError`).
"""
