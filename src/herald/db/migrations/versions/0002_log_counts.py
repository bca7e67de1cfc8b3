"""log counts: running totals of logs per store, integration and outcome

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_counts",
        sa.Column("store_id", sa.String(length=36), nullable=False),
        sa.Column("integration_id", sa.String(length=36), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "integration_id", "succeeded"),
    )
    # totals for logs written before this table existed
    op.execute(
        "INSERT INTO log_counts (store_id, integration_id, succeeded, count) "
        "SELECT store_id, integration_id, succeeded, count(*) FROM logs GROUP BY store_id, integration_id, succeeded"
    )


def downgrade() -> None:
    op.drop_table("log_counts")
