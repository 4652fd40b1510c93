"""exports: an export whose zip the sweeper deleted after WARDROBE_EXPORT_RETENTION is `expired`

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed')"
NEW_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'expired')"


def upgrade() -> None:
    with op.batch_alter_table("exports") as b:
        b.drop_constraint("ck_exports_status", type_="check")
        b.create_check_constraint("ck_exports_status", NEW_STATUSES)


def downgrade() -> None:
    op.execute("DELETE FROM exports WHERE status = 'expired'")
    with op.batch_alter_table("exports") as b:
        b.drop_constraint("ck_exports_status", type_="check")
        b.create_check_constraint("ck_exports_status", OLD_STATUSES)
