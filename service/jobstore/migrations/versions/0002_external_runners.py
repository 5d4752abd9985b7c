"""Jobs run by an engine outside the explainer (a Ray audit), and each item's resume key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("runner", sa.String(32), nullable=False, server_default=""))
    op.add_column("job_items", sa.Column("row_key", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("job_items") as batch:
        batch.drop_column("row_key")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("runner")
