"""SQLAlchemy Core descriptions of the TAP tables (created by migration ``0002_tap_jobs``).

Core, not the ORM: the statements are few and must run unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata", "tap_job", "tap_query"]

metadata = sa.MetaData()

tap_job = sa.Table(
    "tap_job",
    metadata,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("creation_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("start_time", sa.DateTime(timezone=True)),
    sa.Column("end_time", sa.DateTime(timezone=True)),
    sa.Column("destruction", sa.DateTime(timezone=True), nullable=False),
    sa.Column("execution_duration", sa.Integer, nullable=False),
    sa.Column("error_message", sa.Text),
    sa.Column("result_path", sa.Text),
    sa.Column("result_mime", sa.String(128)),
    sa.Column("result_rows", sa.BigInteger),
    sa.Column("result_bytes", sa.BigInteger),
)

tap_query = sa.Table(
    "tap_query",
    metadata,
    sa.Column("query_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("job_id", sa.String(32)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("duration_s", sa.Float),
    sa.Column("row_count", sa.BigInteger),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("error_message", sa.Text),
)
