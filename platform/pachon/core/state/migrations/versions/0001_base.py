"""Base schema: installation facts and the quality-metrics store.

``platform_info`` records facts about the installation (created when, by which version)
so a support question can start from them. ``metric_run``/``metric_value`` are the
metrics store (the "SQuaSH" view): each pipeline run's code version and configuration,
and one row per metric measured in it.

Revision ID: 0001_base
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_base"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_info",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "metric_run",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("release", sa.String(64), nullable=True),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("config_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "metric_value",
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("metric_run.run_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("unit", sa.String(32), nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("metric_value")
    op.drop_table("metric_run")
    op.drop_table("platform_info")
