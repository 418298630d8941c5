"""Schema revisions, oldest first (alembic reads them by their `revision` ids)."""
