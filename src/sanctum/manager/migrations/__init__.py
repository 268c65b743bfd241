"""Alembic migrations of the manager database (``env.py`` and ``versions/``)."""
