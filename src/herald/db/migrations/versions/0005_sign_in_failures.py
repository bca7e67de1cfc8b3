"""sign-in failures: counters shared by every API process

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_sign_in_failures_window", "sign_in_failures", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_failures_window", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
