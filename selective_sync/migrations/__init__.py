"""Alembic migrations of the district and state schemas (run by ``selective_sync.initdb``).

One Alembic environment, two branches: ``district`` and ``state``. Each side keeps its own
version table (``alembic_version_district`` / ``alembic_version_state``), so a district and
a state that share one database never read each other's version.
"""
