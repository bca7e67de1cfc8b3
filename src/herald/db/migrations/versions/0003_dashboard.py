"""dashboard: deliveries per minute, sessions and one-time sign-in links

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_minutes",
        sa.Column("store_id", sa.String(length=36), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("integration_id", sa.String(length=36), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "minute", "integration_id", "succeeded"),
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.String(length=36), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_table(
        "dashboard_links",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.String(length=36), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    # the last day of logs written before this table existed, so that the chart and health start full
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO log_minutes (store_id, minute, integration_id, succeeded, count)"
            " SELECT store_id, date_trunc('minute', created_at), integration_id, succeeded, count(*) FROM logs"
            " WHERE created_at >= now() - interval '1 day' GROUP BY 1, 2, 3, 4"
        )
    else:
        op.execute(
            "INSERT INTO log_minutes (store_id, minute, integration_id, succeeded, count)"
            " SELECT store_id, substr(created_at, 1, 16) || '\\:00.000000', integration_id, succeeded, count(*)"
            " FROM logs WHERE created_at >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day') GROUP BY 1, 2, 3, 4"
        )


def downgrade() -> None:
    op.drop_table("dashboard_links")
    op.drop_table("dashboard_sessions")
    op.drop_table("log_minutes")
