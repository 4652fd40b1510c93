"""jobs.deleted_entries: the zip positions of photos the user deleted from an ended job, so that a
retry neither waits for them nor reads them from the zip again

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("deleted_entries", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_column("deleted_entries")
