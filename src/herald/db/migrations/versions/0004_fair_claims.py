"""fair claims: a circuit breaker per integration, and indexes to claim per integration

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OPEN = "status IN ('pending', 'delivering')"


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("breaker_until", sa.DateTime(timezone=True), nullable=True))
    # the open jobs of one integration, oldest due first: what a claim takes from each integration
    op.create_index("ix_jobs_open_integration", "jobs", ["integration_id", "run_at"],
                    postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN))
    # the jobs held by workers (few): how many of an integration's jobs are claimed now
    op.create_index("ix_jobs_held", "jobs", ["integration_id", "run_at"],
                    postgresql_where=sa.text("status = 'delivering'"), sqlite_where=sa.text("status = 'delivering'"))


def downgrade() -> None:
    op.drop_index("ix_jobs_held", table_name="jobs")
    op.drop_index("ix_jobs_open_integration", table_name="jobs")
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("breaker_until")
        batch.drop_column("consecutive_failures")
