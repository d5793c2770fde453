"""Alembic migrations of the platform state database (one file per revision in ``versions/``)."""
