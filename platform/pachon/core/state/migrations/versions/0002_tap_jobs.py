"""TAP service state: UWS jobs (with their parameters) and the query history.

``tap_job`` holds one row per UWS job; parameters are a JSON object because UWS lets a
client send any parameter (unknown ones are kept and echoed in ``/parameters``).
``tap_query`` is the query history every sync and async query writes (user, time,
duration, rows, status, ADQL), which ``GET /tap/history`` and the notebook extension read.
Times are stored as timezone-aware UTC datetimes (portable between SQLite and PostgreSQL).

Revision ID: 0002_tap_jobs
Revises: 0001_base
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_tap_jobs"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tap_job",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("parameters", sa.Text, nullable=False, server_default="{}"),
        sa.Column("creation_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destruction", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_duration", sa.Integer, nullable=False),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("result_path", sa.Text, nullable=True),
        sa.Column("result_mime", sa.String(128), nullable=True),
        sa.Column("result_rows", sa.BigInteger, nullable=True),
        sa.Column("result_bytes", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_tap_job_owner_creation", "tap_job", ["owner", "creation_time"])
    op.create_index("ix_tap_job_destruction", "tap_job", ["destruction"])
    op.create_table(
        "tap_query",
        sa.Column("query_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("row_count", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("error_message", sa.Text, nullable=True),
    )
    op.create_index("ix_tap_query_owner_started", "tap_query", ["owner", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_tap_query_owner_started", table_name="tap_query")
    op.drop_table("tap_query")
    op.drop_index("ix_tap_job_destruction", table_name="tap_job")
    op.drop_index("ix_tap_job_owner_creation", table_name="tap_job")
    op.drop_table("tap_job")
