"""Alembic environment of the manager: runs on a connection handed over by the caller.

:class:`sanctum.manager.db.Database` opens the connection (SQLite or PostgreSQL) and passes it
in ``config.attributes["connection"]``; there is no ``alembic.ini`` and no URL in here.
"""

from __future__ import annotations

from alembic import context

# Importing the model modules registers their tables (attestation, encrypted dirs, jobs).
import sanctum.manager.models_attestation
import sanctum.manager.models_encfs
import sanctum.manager.models_jobs  # noqa: F401 (registers the job tables)
from sanctum.manager.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover (only reachable when misused from the alembic CLI)
    msg = "run migrations through sanctum.manager.db.Database.migrate()"
    raise RuntimeError(msg)

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=False,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
